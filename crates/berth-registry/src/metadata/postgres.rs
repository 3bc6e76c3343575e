//! [`MetadataStore`] in PostgreSQL, shared by every node of a cluster.
//!
//! The SQL is the embedded store's (`sqlite.rs`) where the dialects agree. What differs is
//! how writers are ordered. SQLite has one writer at a time (`BEGIN IMMEDIATE`), and every
//! invariant of the store leans on it: a manifest's references are checked and the manifest
//! inserted with no collection in between, and change-log sequence numbers are committed in
//! the order they are taken. Here every write transaction takes the same transaction-level
//! advisory lock first ([`WRITERS`]), held until it commits or rolls back, so writers on any
//! node commit one after another, exactly as there; readers never wait. The cost is one
//! round trip per write and no parallel commits, which is what SQLite gives too; finer locks
//! (per repository, per digest) can come when a measure asks for them.
//!
//! Migrations (`migrations/postgres`) run under sqlx's own advisory lock, so nodes starting
//! together migrate once.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::time::{unix_now, unix_now_ms as now_ms};
use berth_oci::{Digest, RepositoryName, Tag};
use bytes::Bytes;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Row};

use super::sql::{self, Clause, listing};
use super::{
    BlobClaim, BlobGeneration, BlobRecord, Change, ChangeAction, ChangeEvent, Exclusive,
    ExclusiveGuard, GcRun, LinkSource, ManifestDetail, MetadataError, MetadataStore, NewManifest,
    Origin, PutManifestError, Referrer, RepositoryRemoval, RepositorySummary, Result, Selection,
    StoredManifest, TagDetail, Target, UploadRecord,
};
use crate::UploadId;
use crate::change::{ChangeError, FlatChange};

/// The advisory lock every write transaction holds: writers commit one at a time.
/// (`b"berthmd1"` as a number, so it does not collide with another application's lock.)
pub const WRITERS: i64 = i64::from_be_bytes(*b"berthmd1");

/// The schema the metadata live in (its own migrations table included), so the metadata
/// and the identities can share one database, and sit beside other applications' tables.
pub const SCHEMA: &str = "berth_registry";

/// The advisory lock of an [`Exclusive`] task (`b"berthex"` and the task's number).
fn exclusive_key(task: Exclusive) -> i64 {
    let number = match task {
        Exclusive::GarbageCollection => 1,
        Exclusive::UploadSweep => 2,
        Exclusive::ChangeLogPruning => 3,
        Exclusive::WebhookDelivery => 4,
        Exclusive::AuditPruning => 5,
    };
    i64::from_be_bytes([b'b', b'e', b'r', b't', b'h', b'e', b'x', number])
}

/// Metadata in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresMetadata {
    pool: PgPool,
    /// Connections with `synchronous_commit = off`, for upload progress only: a `PATCH`
    /// waits for no WAL flush; a crash may leave the row behind its stored bytes, which the
    /// registry repairs from the bytes.
    progress: PgPool,
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> MetadataError {
    MetadataError(Box::new(e))
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse().map_err(err)
}

impl PostgresMetadata {
    /// Connects to the database at `url` (`postgres://…`) and migrates it if needed.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(err)?
            .options([("search_path", SCHEMA)]);
        // One connection first, so that an unreachable server or a refused login is said
        // at once and as it is, not as a pool timing out 30 s later.
        options
            .connect()
            .await
            .map_err(err)?
            .close()
            .await
            .map_err(err)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(err)?;
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        migrator.create_schema(SCHEMA);
        migrator.dangerous_set_table_name("berth_registry._sqlx_migrations");
        migrator.run(&pool).await.map_err(err)?;
        let progress = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.options([("synchronous_commit", "off")]))
            .await
            .map_err(err)?;
        Ok(PostgresMetadata { pool, progress })
    }

    /// Records this node (`id`, keeping its blobs in `storage`) among those sharing the
    /// database, as alive now, and returns the other live nodes (seen within `alive`) that
    /// keep their blobs somewhere else: `(id, storage)`. Their clients and this node's would
    /// see manifests whose blobs they cannot read, so the caller refuses to start.
    pub async fn join_cluster(
        &self,
        id: &str,
        storage: &str,
        alive: Duration,
    ) -> Result<Vec<(String, String)>> {
        let mut tx = self.begin_write().await?;
        let others = sqlx::query(
            "SELECT id, storage FROM nodes WHERE id <> $1 AND storage <> $2 \
             AND seen_at > now() - make_interval(secs => $3) ORDER BY id",
        )
        .bind(id)
        .bind(storage)
        .bind(alive.as_secs_f64())
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
        sqlx::query(
            "INSERT INTO nodes (id, storage, started_at, seen_at) VALUES ($1, $2, now(), now()) \
             ON CONFLICT (id) DO UPDATE SET storage = excluded.storage, started_at = now(), seen_at = now()",
        )
        .bind(id)
        .bind(storage)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(others)
    }

    /// Marks this node as alive now; forgets nodes not seen for a day.
    pub async fn heartbeat(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE nodes SET seen_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        sqlx::query("DELETE FROM nodes WHERE seen_at < now() - interval '1 day'")
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// The last migration applied to the database.
    pub async fn schema_version(&self) -> Result<i64> {
        sqlx::query(
            "SELECT COALESCE(MAX(version), 0) FROM berth_registry._sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await
        .map(|row| row.get(0))
        .map_err(err)
    }

    /// A read-only transaction that sees one snapshot for all its statements.
    async fn read_snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(err)
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITERS)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        Ok(tx)
    }
}

/// Whether `source` still vouches for the bytes of `digest`.
async fn link_vouched(
    conn: &mut PgConnection,
    digest: &Digest,
    source: LinkSource<'_>,
) -> Result<bool> {
    let row = match source {
        LinkSource::Placed { claim, .. } => sqlx::query(
            "SELECT 1 FROM blobs WHERE digest = $1 AND state = 'present' AND generation = $2",
        )
        .bind(digest.to_string())
        .bind(claim.0),
        LinkSource::Repository(from) => sqlx::query(
            "SELECT 1 FROM repository_blobs WHERE digest = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(digest.to_string())
        .bind(from.as_str()),
        LinkSource::AnyRepository => {
            sqlx::query("SELECT 1 FROM repository_blobs WHERE digest = $1 LIMIT 1")
                .bind(digest.to_string())
        }
    };
    row.fetch_optional(&mut *conn)
        .await
        .map(|r| r.is_some())
        .map_err(err)
}

/// Records a blob as present as of now: its collection clock restarts, and always moves
/// forward (a collection that saw the record before, even within the same millisecond or
/// across a clock step back, sees it changed). A new record, or one taken over from a
/// collection, gets a new generation. Returns the generation.
async fn touch_blob(conn: &mut PgConnection, digest: &Digest, size: u64) -> Result<BlobGeneration> {
    sqlx::query(
        "INSERT INTO blobs (digest, size, state, updated_at, generation) VALUES ($1, $2, 'present', $3, $4) \
         ON CONFLICT (digest) DO UPDATE SET updated_at = GREATEST(blobs.updated_at + 1, excluded.updated_at), \
             generation = CASE WHEN blobs.state = 'present' THEN blobs.generation ELSE excluded.generation END, \
             state = 'present' \
         RETURNING generation",
    )
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(now_ms())
    .bind(BlobGeneration::fresh().0)
    .fetch_one(&mut *conn)
    .await
    .map(|row| BlobGeneration(row.get(0)))
    .map_err(err)
}

/// Whether any manifest, in any repository, references the blob.
async fn blob_referenced(conn: &mut PgConnection, digest: &Digest) -> Result<bool> {
    sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM manifest_references WHERE target_digest = $1 AND target_kind = 'blob')",
    )
    .bind(digest.to_string())
    .fetch_one(&mut *conn)
    .await
    .map(|row| row.get::<bool, _>(0))
    .map_err(err)
}

fn blob_record(row: &PgRow) -> Result<BlobRecord> {
    Ok(BlobRecord {
        digest: parse_digest(row.get::<&str, _>(0))?,
        size: row.get::<i64, _>(1).max(0) as u64,
        updated_at: row.get(2),
    })
}

fn gc_run(row: &PgRow) -> GcRun {
    let count = |i: usize| row.get::<i64, _>(i).max(0) as u64;
    GcRun {
        id: row.get(0),
        started_at: row.get(1),
        finished_at: row.get(2),
        dry_run: row.get(3),
        outcome: row.get(4),
        blobs_removed: count(5),
        bytes_freed: count(6),
        manifests_removed: count(7),
        tags_removed: count(8),
        uploads_removed: count(9),
    }
}

/// Returns the repository's id, creating the repository if needed.
async fn ensure_repository(conn: &mut PgConnection, name: &RepositoryName) -> Result<i64> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
    )
    .bind(name.as_str())
    .bind(unix_now())
    .fetch_one(&mut *conn)
    .await
    .map(|row| row.get(0))
    .map_err(err)
}

async fn repository_id(conn: &mut PgConnection, name: &RepositoryName) -> Result<Option<i64>> {
    sqlx::query("SELECT id FROM repositories WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map(|row| row.map(|r| r.get(0)))
        .map_err(err)
}

async fn log_change(
    conn: &mut PgConnection,
    repository: &RepositoryName,
    event: &ChangeEvent,
    origin: Origin,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO changes (repository, action, digest, tag, media_type, at, origin) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(repository.as_str())
    .bind(event.action().as_str())
    .bind(event.digest().map(Digest::to_string))
    .bind(event.tag().map(Tag::as_str))
    .bind(event.media_type())
    .bind(unix_now())
    .bind(origin.as_str())
    .execute(&mut *conn)
    .await
    .map(drop)
    .map_err(err)
}

/// Parses a change log row: a row that does not parse is corrupt, an error.
fn change(row: PgRow) -> Result<Change> {
    let seq: i64 = row.get(0);
    let corrupt = |reason: String| err(ChangeError { seq, reason });
    let action: &str = row.get(2);
    let origin: &str = row.get(7);
    let flat = FlatChange {
        seq,
        repository: row.get(1),
        action: ChangeAction::parse(action)
            .ok_or_else(|| corrupt(format!("unknown action `{action}`")))?,
        digest: row.get(3),
        tag: row.get(4),
        media_type: row.get(5),
        at: row.get(6),
        origin: Origin::parse(origin)
            .ok_or_else(|| corrupt(format!("unknown origin `{origin}`")))?,
    };
    Change::try_from(flat).map_err(err)
}

async fn target_exists(conn: &mut PgConnection, repo_id: i64, target: &Target) -> Result<bool> {
    let (sql, digest) = match target {
        Target::Blob(d) => (
            "SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2",
            d,
        ),
        Target::Manifest(d) => (
            "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2",
            d,
        ),
    };
    sqlx::query(sql)
        .bind(repo_id)
        .bind(digest.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map(|r| r.is_some())
        .map_err(err)
}

fn stored_manifest(row: PgRow) -> Result<StoredManifest> {
    Ok(StoredManifest {
        digest: parse_digest(row.get::<&str, _>(0))?,
        media_type: row.get(1),
        content: Bytes::from(row.get::<Vec<u8>, _>(2)),
    })
}

#[async_trait]
impl MetadataStore for PostgresMetadata {
    fn shared(&self) -> bool {
        true
    }

    async fn try_exclusive(&self, task: Exclusive) -> Result<Option<ExclusiveGuard>> {
        // A session-level advisory lock: it lasts as long as the session. A connection that
        // took it leaves the pool for good (dropping the guard closes it, which releases the
        // lock, as a crash of this process does); one that did not take it holds nothing and
        // goes back, so nodes that find the task taken every tick do not open a connection
        // each time. One whose answer was lost may hold it: it is closed.
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let taken = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(exclusive_key(task))
            .fetch_one(&mut *conn)
            .await;
        match taken {
            Ok(true) => Ok(Some(ExclusiveGuard::new(conn.detach()))),
            Ok(false) => Ok(None),
            Err(e) => {
                drop(conn.detach());
                Err(err(e))
            }
        }
    }

    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        Ok(repository_id(&mut conn, repository).await?.is_some())
    }

    async fn repositories(&self, last: Option<&str>, n: u32) -> Result<Vec<String>> {
        sqlx::query("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
            .bind(last.unwrap_or(""))
            .bind(n as i64)
            .fetch_all(&self.pool)
            .await
            .map(|rows| rows.into_iter().map(|r| r.get(0)).collect())
            .map_err(err)
    }

    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        source: LinkSource<'_>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // Bytes a collection is deleting, or deleted since they were claimed, cannot be
        // linked.
        if !link_vouched(&mut tx, digest, source).await? {
            return Ok(false);
        }
        let repo_id = ensure_repository(&mut tx, repository).await?;
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, size, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(unix_now())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        touch_blob(&mut tx, digest, size).await?;
        if let LinkSource::Placed {
            upload: Some(id), ..
        } = source
        {
            sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn blob_size(&self, repository: &RepositoryName, digest: &Digest) -> Result<Option<u64>> {
        sqlx::query(
            "SELECT b.size FROM repository_blobs b JOIN repositories r ON r.id = b.repository_id \
             WHERE r.name = $1 AND b.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await
        .map(|row| row.map(|r| r.get::<i64, _>(0) as u64))
        .map_err(err)
    }

    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let unlinked = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = $2 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected()
            > 0;
        tx.commit().await.map_err(err)?;
        Ok(unlinked)
    }

    async fn blob_in_use(&self, digest: &Digest) -> Result<bool> {
        sqlx::query("SELECT 1 FROM repository_blobs WHERE digest = $1 LIMIT 1")
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await
            .map(|r| r.is_some())
            .map_err(err)
    }

    async fn put_manifest(&self, m: NewManifest) -> Result<(), PutManifestError> {
        let mut tx = self.begin_write().await?;
        let repo_id = ensure_repository(&mut tx, &m.repository).await?;
        for target in &m.references {
            if !target_exists(&mut tx, repo_id, target).await? {
                return Err(PutManifestError::UnknownTarget(target.clone()));
            }
        }
        let digest = m.digest.to_string();
        let inserted = sqlx::query(
            "INSERT INTO manifests (repository_id, digest, media_type, size, content, artifact_type, subject, annotations, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(repo_id)
        .bind(&digest)
        .bind(&m.media_type)
        .bind(m.content.len() as i64)
        .bind(m.content.as_ref())
        .bind(m.artifact_type.as_deref())
        .bind(m.subject.as_ref().map(|s| s.to_string()))
        .bind(m.annotations.as_ref().map(|a| a.to_string()))
        .bind(unix_now())
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected()
            > 0;
        if inserted {
            for target in &m.references {
                let (kind, target_digest) = match target {
                    Target::Blob(d) => ("blob", d),
                    Target::Manifest(d) => ("manifest", d),
                };
                sqlx::query(
                    "INSERT INTO manifest_references (repository_id, manifest_digest, target_digest, target_kind) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(repo_id)
                .bind(&digest)
                .bind(target_digest.to_string())
                .bind(kind)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            }
            let event = ChangeEvent::ManifestPut {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
            };
            log_change(&mut tx, &m.repository, &event, m.origin).await?;
        }
        for tag in &m.tags {
            let moved = sqlx::query(
                "INSERT INTO tags (repository_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at \
                 WHERE tags.digest <> excluded.digest",
            )
            .bind(repo_id)
            .bind(tag.as_str())
            .bind(&digest)
            .bind(unix_now())
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected()
                > 0;
            if moved {
                let event = ChangeEvent::TagPut {
                    tag: tag.clone(),
                    digest: m.digest.clone(),
                    media_type: m.media_type.clone(),
                };
                log_change(&mut tx, &m.repository, &event, m.origin).await?;
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(())
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>> {
        sqlx::query(
            "SELECT m.digest, m.media_type, m.content FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .map(stored_manifest)
        .transpose()
    }

    async fn tagged_manifest(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<StoredManifest>> {
        sqlx::query(
            "SELECT m.digest, m.media_type, m.content FROM tags t \
             JOIN repositories r ON r.id = t.repository_id \
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest \
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .map(stored_manifest)
        .transpose()
    }

    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        origin: Origin,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(false);
        };
        let tags = sqlx::query(
            "SELECT name FROM tags WHERE repository_id = $1 AND digest = $2 ORDER BY name",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?
        .into_iter()
        .map(|r| Tag::parse(r.get::<&str, _>(0)).map_err(err))
        .collect::<Result<Vec<Tag>>>()?;
        let deleted = sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected()
            > 0;
        if !deleted {
            return Ok(false);
        }
        // The tags went with the manifest (ON DELETE CASCADE); the log says so explicitly.
        for tag in tags {
            let event = ChangeEvent::TagDelete {
                tag,
                digest: digest.clone(),
            };
            log_change(&mut tx, repository, &event, origin).await?;
        }
        let event = ChangeEvent::ManifestDelete {
            digest: digest.clone(),
        };
        log_change(&mut tx, repository, &event, origin).await?;
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        origin: Origin,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(false);
        };
        let row =
            sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND name = $2 RETURNING digest")
                .bind(repo_id)
                .bind(tag.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
        let Some(row) = row else { return Ok(false) };
        let event = ChangeEvent::TagDelete {
            tag: tag.clone(),
            digest: parse_digest(row.get::<&str, _>(0))?,
        };
        log_change(&mut tx, repository, &event, origin).await?;
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        n: u32,
    ) -> Result<Option<Vec<String>>> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let Some(repo_id) = repository_id(&mut conn, repository).await? else {
            return Ok(None);
        };
        sqlx::query(
            "SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(repo_id)
        .bind(last.unwrap_or(""))
        .bind(n as i64)
        .fetch_all(&mut *conn)
        .await
        .map(|rows| Some(rows.into_iter().map(|r| r.get(0)).collect()))
        .map_err(err)
    }

    async fn manifest_digests(&self, repository: &RepositoryName) -> Result<Vec<Digest>> {
        let rows = sqlx::query(
            "SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 ORDER BY m.digest",
        )
        .bind(repository.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|row| parse_digest(row.get::<&str, _>(0)))
            .collect()
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.subject = $2 ORDER BY m.digest",
        )
        .bind(repository.as_str())
        .bind(subject.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter()
            .map(|row| {
                let annotations: Option<String> = row.get(4);
                Ok(Referrer {
                    digest: parse_digest(row.get::<&str, _>(0))?,
                    media_type: row.get(1),
                    size: row.get::<i64, _>(2) as u64,
                    artifact_type: row.get(3),
                    annotations: annotations
                        .map(|a| serde_json::from_str(&a))
                        .transpose()
                        .map_err(err)?,
                })
            })
            .collect()
    }

    async fn changes(&self, after: i64, limit: u32) -> Result<Vec<Change>> {
        let rows = sqlx::query(
            "SELECT seq, repository, action, digest, tag, media_type, at, origin FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter().map(change).collect()
    }

    async fn parent_tag_before(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        before: i64,
    ) -> Result<Option<Digest>> {
        let row = sqlx::query(
            "SELECT action, digest FROM changes WHERE repository = $1 AND tag = $2 AND seq < $3 AND origin = 'parent' \
             AND action IN ('tag_put', 'tag_delete') ORDER BY seq DESC LIMIT 1",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .bind(before)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        match row {
            Some(r) if r.get::<&str, _>(0) == "tag_put" => {
                parse_digest(r.get::<&str, _>(1)).map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn change_bounds(&self) -> Result<(i64, i64)> {
        let row = sqlx::query("SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok((row.get(0), row.get(1)))
    }

    async fn prune_changes(&self, before: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let pruned = sqlx::query(
            "DELETE FROM changes WHERE at < $1 AND seq < (SELECT MAX(seq) FROM changes)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        tx.commit().await.map_err(err)?;
        Ok(pruned)
    }

    async fn create_upload(&self, id: &UploadId, repository: &RepositoryName) -> Result<()> {
        sqlx::query("INSERT INTO uploads (id, repository, created_at) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind(repository.as_str())
            .bind(unix_now())
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(err)
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        sqlx::query(
            "SELECT id, repository, created_at, received, hash_state, updated_at FROM uploads WHERE id = $1",
        )
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .map(upload_record)
            .transpose()
    }

    async fn update_upload(
        &self,
        id: &UploadId,
        expected: u64,
        received: u64,
        hash_state: Option<&[u8]>,
    ) -> Result<bool> {
        sqlx::query(
            "UPDATE uploads SET received = $3, hash_state = $4, updated_at = $5 WHERE id = $1 AND received = $2",
        )
        .bind(id.to_string())
        .bind(expected as i64)
        .bind(received as i64)
        .bind(hash_state)
        .bind(unix_now())
        .execute(&self.progress)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(err)
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(err)
    }

    async fn uploads(&self) -> Result<Vec<UploadRecord>> {
        sqlx::query(
            "SELECT id, repository, created_at, received, hash_state, updated_at FROM uploads ORDER BY created_at",
        )
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .into_iter()
            .map(upload_record)
            .collect()
    }

    async fn claim_blob(&self, digest: &Digest, size: u64, stale_ms: i64) -> Result<BlobClaim> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT state, updated_at FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        if let Some(row) = row
            && row.get::<&str, _>(0) == "deleting"
            && row.get::<i64, _>(1) > now_ms() - stale_ms
        {
            return Ok(BlobClaim::Collecting);
        }
        let generation = touch_blob(&mut tx, digest, size).await?;
        tx.commit().await.map_err(err)?;
        Ok(BlobClaim::Claimed(generation))
    }

    async fn record_blob_files(&self, files: &[(Digest, u64, i64)]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (digest, size, changed_ms) in files {
            sqlx::query(
                "INSERT INTO blobs (digest, size, state, updated_at, generation) VALUES ($1, $2, 'present', $3, $4) \
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest.to_string())
            .bind(*size as i64)
            .bind(*changed_ms)
            .bind(BlobGeneration::fresh().0)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn unreferenced_blobs(
        &self,
        before_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<BlobRecord>> {
        sqlx::query(
            "SELECT b.digest, b.size, b.updated_at FROM blobs b \
             WHERE b.state = 'present' AND b.updated_at < $1 AND b.digest > $2 \
             AND NOT EXISTS (SELECT 1 FROM manifest_references m WHERE m.target_digest = b.digest AND m.target_kind = 'blob') \
             ORDER BY b.digest LIMIT $3",
        )
        .bind(before_ms)
        .bind(after.map(ToString::to_string).unwrap_or_default())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?
        .iter()
        .map(blob_record)
        .collect()
    }

    async fn begin_collect(&self, blobs: &[BlobRecord], now_ms: i64) -> Result<Vec<Digest>> {
        let mut tx = self.begin_write().await?;
        let mut marked = Vec::with_capacity(blobs.len());
        for blob in blobs {
            if blob_referenced(&mut tx, &blob.digest).await? {
                continue;
            }
            let digest = blob.digest.to_string();
            let updated = sqlx::query(
                "UPDATE blobs SET state = 'deleting', updated_at = $1 \
                 WHERE digest = $2 AND updated_at = $3",
            )
            .bind(now_ms)
            .bind(&digest)
            .bind(blob.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
            if updated == 1 {
                // Its links go with it, in the same step: a manifest put after this refers to
                // a blob the repository no longer has, and is refused (the client pushes it
                // again).
                sqlx::query("DELETE FROM repository_blobs WHERE digest = $1")
                    .bind(&digest)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                marked.push(blob.digest.clone());
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(marked)
    }

    async fn end_collect(&self, digests: &[Digest]) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for digest in digests {
            sqlx::query("DELETE FROM blobs WHERE digest = $1 AND state = 'deleting'")
                .bind(digest.to_string())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn stale_collections(&self, before_ms: i64) -> Result<Vec<BlobRecord>> {
        sqlx::query(
            "SELECT digest, size, updated_at FROM blobs WHERE state = 'deleting' AND updated_at < $1 ORDER BY digest",
        )
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?
        .iter()
        .map(blob_record)
        .collect()
    }

    async fn start_gc_run(&self, started_at: i64, dry_run: bool) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO gc_runs (started_at, dry_run, outcome, blobs_removed, bytes_freed, manifests_removed, \
             tags_removed, uploads_removed) VALUES ($1, $2, 'running', 0, 0, 0, 0, 0) RETURNING id",
        )
        .bind(started_at)
        .bind(dry_run)
        .fetch_one(&mut *tx)
        .await
        .map_err(err)?
        .get(0);
        sqlx::query("DELETE FROM gc_runs WHERE id <= $1 - 50")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(id)
    }

    async fn update_gc_run(&self, run: &GcRun) -> Result<()> {
        sqlx::query(
            "UPDATE gc_runs SET finished_at = $1, outcome = $2, blobs_removed = $3, bytes_freed = $4, \
             manifests_removed = $5, tags_removed = $6, uploads_removed = $7 WHERE id = $8",
        )
        .bind(run.finished_at)
        .bind(&run.outcome)
        .bind(run.blobs_removed as i64)
        .bind(run.bytes_freed as i64)
        .bind(run.manifests_removed as i64)
        .bind(run.tags_removed as i64)
        .bind(run.uploads_removed as i64)
        .bind(run.id)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(err)
    }

    async fn tag_history(&self, repository: &RepositoryName) -> Result<Vec<(Tag, Digest, i64)>> {
        sqlx::query(
            "SELECT t.name, t.digest, t.updated_at FROM tags t JOIN repositories r ON r.id = t.repository_id \
             WHERE r.name = $1",
        )
        .bind(repository.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?
        .iter()
        .map(|row| {
            Ok((
                Tag::parse(row.get::<&str, _>(0)).map_err(err)?,
                parse_digest(row.get::<&str, _>(1))?,
                row.get(2),
            ))
        })
        .collect()
    }

    async fn dangling_manifests(&self, repository: &RepositoryName) -> Result<Vec<Digest>> {
        sqlx::query(
            "SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 \
             AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifest_references x WHERE x.repository_id = m.repository_id \
                             AND x.target_digest = m.digest AND x.target_kind = 'manifest') \
             AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s \
                             WHERE s.repository_id = m.repository_id AND s.digest = m.subject)) \
             ORDER BY m.digest",
        )
        .bind(repository.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?
        .iter()
        .map(|row| parse_digest(row.get::<&str, _>(0)))
        .collect()
    }

    async fn content_totals(&self) -> Result<super::ContentTotals> {
        let row = sqlx::query(sql::CONTENT_TOTALS)
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok(sql::content_totals(&row))
    }

    async fn check_writable(&self) -> Result<()> {
        // Not the writers' lock: a readiness probe must not queue behind every push on
        // every node. A server that answers and whose sessions may write is ready; a hot
        // standby (or `default_transaction_read_only`) is not.
        let read_only: String =
            sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
                .fetch_one(&self.pool)
                .await
                .map_err(err)?;
        if read_only == "on" {
            return Err(err(std::io::Error::other(
                "the database takes no writes (transaction_read_only is on: a standby?)",
            )));
        }
        Ok(())
    }

    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>> {
        Ok(sqlx::query(
            "SELECT id, started_at, finished_at, dry_run, outcome, blobs_removed, bytes_freed, manifests_removed, \
             tags_removed, uploads_removed FROM gc_runs ORDER BY id DESC LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?
        .iter()
        .map(gc_run)
        .collect())
    }

    // ----- repository management (`berth repository …`) -----

    async fn repository_summaries(&self, select: Selection<'_>) -> Result<Vec<RepositorySummary>> {
        let page = Clause::of(select, "r.name", "r.created_at", 1);
        // Times are read apart and their latest taken here, as on SQLite. The last change
        // is found by the log's index, not a scan.
        let sql = format!(
            "SELECT r.name, r.created_at, \
             (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id), \
             (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id), \
             (SELECT COUNT(*) FROM repository_blobs b WHERE b.repository_id = r.id), \
             (SELECT COALESCE(SUM(b.size), 0)::BIGINT FROM repository_blobs b WHERE b.repository_id = r.id), \
             (SELECT COALESCE(SUM(m.size), 0)::BIGINT FROM manifests m WHERE m.repository_id = r.id), \
             (SELECT MAX(m.created_at) FROM manifests m WHERE m.repository_id = r.id), \
             (SELECT MAX(t.updated_at) FROM tags t WHERE t.repository_id = r.id), \
             (SELECT MAX(b.created_at) FROM repository_blobs b WHERE b.repository_id = r.id), \
             (SELECT c.at FROM changes c WHERE c.repository = r.name ORDER BY c.seq DESC LIMIT 1) \
             FROM repositories r WHERE {} ORDER BY {} LIMIT {}",
            page.filter, page.order, page.limit
        );
        let rows = page
            .bind(sqlx::query(listing(sql)))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.into_iter()
            .map(|row| {
                let created_at: i64 = row.get(1);
                let updated_at = (7..=10)
                    .filter_map(|i| row.get::<Option<i64>, _>(i))
                    .fold(created_at, i64::max);
                Ok(RepositorySummary {
                    name: RepositoryName::parse(row.get::<&str, _>(0), usize::MAX).map_err(err)?,
                    created_at,
                    updated_at,
                    manifest_count: row.get::<i64, _>(2) as u64,
                    tag_count: row.get::<i64, _>(3) as u64,
                    blob_count: row.get::<i64, _>(4) as u64,
                    size: (row.get::<i64, _>(5) + row.get::<i64, _>(6)) as u64,
                })
            })
            .collect()
    }

    async fn tag_details(
        &self,
        repository: &RepositoryName,
        select: Selection<'_>,
    ) -> Result<Option<Vec<TagDetail>>> {
        let page = Clause::of(select, "t.name", "t.updated_at", 2);
        // One snapshot for the page and the sizes of what it names.
        let mut tx = self.read_snapshot().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        let (filter, order, limit) = (&page.filter, &page.order, &page.limit);
        let roots = format!(
            "SELECT t.digest FROM tags t WHERE t.repository_id = $1 AND {filter} ORDER BY {order} LIMIT {limit}"
        );
        let rows = page
            .bind(
                sqlx::query(listing(format!(
                    "SELECT t.name, t.digest, m.media_type, t.updated_at FROM tags t \
                 JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest \
                 WHERE t.repository_id = $1 AND {filter} ORDER BY {order} LIMIT {limit}"
                )))
                .bind(repo_id),
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        let sizes = manifest_sizes(&mut tx, repo_id, &roots, &page).await?;
        let details = rows
            .into_iter()
            .map(|row| {
                let digest: String = row.get(1);
                Ok(TagDetail {
                    tag: Tag::parse(row.get::<&str, _>(0)).map_err(err)?,
                    size: sizes.get(&digest).copied().unwrap_or(0),
                    digest: parse_digest(&digest)?,
                    media_type: row.get(2),
                    updated_at: row.get(3),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await.map_err(err)?;
        Ok(Some(details))
    }

    async fn manifest_details(
        &self,
        repository: &RepositoryName,
        select: Selection<'_>,
    ) -> Result<Option<Vec<ManifestDetail>>> {
        let page = Clause::of(select, "m.digest", "m.created_at", 2);
        let mut tx = self.read_snapshot().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(None);
        };
        let (filter, order, limit) = (&page.filter, &page.order, &page.limit);
        let roots = format!(
            "SELECT m.digest FROM manifests m WHERE m.repository_id = $1 AND {filter} ORDER BY {order} LIMIT {limit}"
        );
        // An index's bytes come along to list its children; other manifests' stay put.
        let rows = page
            .bind(sqlx::query(listing(format!(
                "SELECT m.digest, m.media_type, m.artifact_type, m.subject, m.created_at, \
                 CASE WHEN EXISTS (SELECT 1 FROM manifest_references r WHERE r.repository_id = m.repository_id \
                   AND r.manifest_digest = m.digest AND r.target_kind = 'manifest') THEN m.content END \
                 FROM manifests m WHERE m.repository_id = $1 AND {filter} ORDER BY {order} LIMIT {limit}"
            )))
            .bind(repo_id))
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        let sizes = manifest_sizes(&mut tx, repo_id, &roots, &page).await?;
        let mut tags: HashMap<String, Vec<Tag>> = HashMap::new();
        let tag_rows = page
            .bind(sqlx::query(listing(format!(
                "SELECT t.digest, t.name FROM tags t WHERE t.repository_id = $1 AND t.digest IN ({roots}) ORDER BY t.name"
            )))
            .bind(repo_id))
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        for row in tag_rows {
            let tag = Tag::parse(row.get::<&str, _>(1)).map_err(err)?;
            tags.entry(row.get(0)).or_default().push(tag);
        }
        let details = rows
            .into_iter()
            .map(|row| {
                let digest: String = row.get(0);
                let subject: Option<String> = row.get(3);
                Ok(ManifestDetail {
                    size: sizes.get(&digest).copied().unwrap_or(0),
                    tags: tags.remove(&digest).unwrap_or_default(),
                    digest: parse_digest(&digest)?,
                    media_type: row.get(1),
                    artifact_type: row.get(2),
                    subject: subject.as_deref().map(parse_digest).transpose()?,
                    created_at: row.get(4),
                    index_content: row.get::<Option<Vec<u8>>, _>(5).map(Bytes::from),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await.map_err(err)?;
        Ok(Some(details))
    }

    async fn delete_empty_repository(
        &self,
        repository: &RepositoryName,
        origin: Origin,
    ) -> Result<RepositoryRemoval> {
        let mut tx = self.begin_write().await?;
        let Some(repo_id) = repository_id(&mut tx, repository).await? else {
            return Ok(RepositoryRemoval::Unknown);
        };
        let holds_manifests =
            sqlx::query("SELECT 1 FROM manifests WHERE repository_id = $1 LIMIT 1")
                .bind(repo_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?
                .is_some();
        if holds_manifests {
            return Ok(RepositoryRemoval::NotEmpty);
        }
        let blob_links = sqlx::query("DELETE FROM repository_blobs WHERE repository_id = $1")
            .bind(repo_id)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        sqlx::query("DELETE FROM repositories WHERE id = $1")
            .bind(repo_id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        log_change(&mut tx, repository, &ChangeEvent::RepositoryDelete, origin).await?;
        tx.commit().await.map_err(err)?;
        Ok(RepositoryRemoval::Removed { blob_links })
    }
}

fn upload_record(row: PgRow) -> Result<UploadRecord> {
    Ok(UploadRecord {
        id: UploadId::from_str(row.get::<&str, _>(0)).map_err(err)?,
        repository: row.get(1),
        created_at: row.get(2),
        received: row.get::<i64, _>(3) as u64,
        hash_state: row.get(4),
        updated_at: row.get(5),
    })
}

/// The size of each manifest that `roots` (a query over `$1`, the repository id, and the
/// placeholders of `page`) selects, by digest: its own bytes, its child manifests' (recursively) and those
/// of every blob they reference, each blob counted once even when several platforms of an
/// index share it. Blobs unlinked since (a blob `DELETE`) count for nothing.
async fn manifest_sizes(
    conn: &mut PgConnection,
    repo_id: i64,
    roots: &str,
    page: &Clause,
) -> Result<HashMap<String, u64>> {
    let sql = format!(
        "WITH RECURSIVE roots(digest) AS ({roots}), \
         reach(root, digest) AS ( \
           SELECT digest, digest FROM roots \
           UNION \
           SELECT reach.root, r.target_digest FROM reach JOIN manifest_references r \
             ON r.repository_id = $1 AND r.manifest_digest = reach.digest AND r.target_kind = 'manifest'), \
         blobs(root, digest) AS ( \
           SELECT DISTINCT reach.root, r.target_digest FROM reach JOIN manifest_references r \
             ON r.repository_id = $1 AND r.manifest_digest = reach.digest AND r.target_kind = 'blob') \
         SELECT parts.root, SUM(parts.size)::BIGINT FROM ( \
           SELECT reach.root AS root, m.size AS size FROM reach JOIN manifests m \
             ON m.repository_id = $1 AND m.digest = reach.digest \
           UNION ALL \
           SELECT blobs.root, b.size FROM blobs JOIN repository_blobs b \
             ON b.repository_id = $1 AND b.digest = blobs.digest \
         ) AS parts GROUP BY parts.root"
    );
    let rows = page
        .bind(sqlx::query(listing(sql)).bind(repo_id))
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get::<i64, _>(1) as u64))
        .collect())
}
