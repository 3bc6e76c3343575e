//! [`IdentityStore`] in PostgreSQL, shared by every node of a cluster.
//!
//! The SQL is the embedded store's (`store.rs`). Writers are ordered the way SQLite's single
//! writer orders them there: every write transaction takes one transaction-level advisory lock
//! ([`WRITERS`]) first, so `apply`'s check of the change log's head and its appends cannot
//! interleave with another node's, and sequence numbers are committed in order (a node
//! following the log never skips a change). Reads take one snapshot (`REPEATABLE READ`).
//! Migrations (`migrations/postgres`) run under sqlx's own advisory lock.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::time::unix_now;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Row};

use crate::audit::AuditEntry;
use crate::connected::{InstanceStatus, PAST_DETAILS_KEPT, StatusDetail};
use crate::error::{Corruption, IdentityError};
use crate::store::{
    AdminRecord, Applied, DELIVERIES_KEPT, DELIVERIES_TRIM, IdentityStore, StoredIdentities, Write,
};
use crate::webhook::{Delivery, SiteEvent, Webhook};

type Result<T> = std::result::Result<T, IdentityError>;

/// The advisory lock every identity write holds (`b"berthid1"` as a number).
pub const WRITERS: i64 = i64::from_be_bytes(*b"berthid1");

/// The schema the identities live in (its own migrations table included), so the metadata
/// and the identities can share one database, and sit beside other applications' tables.
pub const SCHEMA: &str = "berth_identity";

/// Identities in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresIdentityStore {
    pool: PgPool,
}

impl PostgresIdentityStore {
    /// Connects to the database at `url` (`postgres://…`) and migrates it if needed.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(IdentityError::store)?
            .options([("search_path", SCHEMA)]);
        // One connection first, so that an unreachable server or a refused login is said
        // at once and as it is, not as a pool timing out 30 s later.
        options
            .connect()
            .await
            .map_err(IdentityError::store)?
            .close()
            .await
            .map_err(IdentityError::store)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(IdentityError::store)?;
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        migrator.create_schema(SCHEMA);
        migrator.dangerous_set_table_name("berth_identity._sqlx_migrations");
        migrator.run(&pool).await.map_err(IdentityError::store)?;
        Ok(PostgresIdentityStore { pool })
    }

    /// The last migration applied to the database.
    pub async fn schema_version(&self) -> Result<i64> {
        sqlx::query(
            "SELECT COALESCE(MAX(version), 0) FROM berth_identity._sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await
        .map(|row| row.get(0))
        .map_err(IdentityError::store)
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.map_err(IdentityError::store)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITERS)
            .execute(&mut *tx)
            .await
            .map_err(IdentityError::store)?;
        Ok(tx)
    }

    async fn read_snapshot(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(IdentityError::store)
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("identities serialise")
}

/// The last change in the identity change log (0 before the first).
async fn head(tx: &mut sqlx::PgConnection) -> Result<i64> {
    sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM identity_changes")
        .fetch_one(&mut *tx)
        .await
        .map(|row| row.get(0))
        .map_err(IdentityError::store)
}

/// The write that makes a copy of object `name` of `kind` current: its value now, or its
/// deletion.
async fn current(tx: &mut sqlx::PgConnection, kind: &str, name: String) -> Result<Write> {
    let query = match kind {
        "scope_map" => "SELECT body FROM scope_maps WHERE name = $1",
        "token" => "SELECT body FROM tokens WHERE name = $1",
        "connected_registry" => "SELECT body FROM connected_registries WHERE name = $1",
        "settings" => "SELECT value FROM settings WHERE key = $1",
        "key" => "SELECT body FROM keys WHERE id = $1",
        other => return Err(Corruption::UnknownChangeKind(other.to_owned()).into()),
    };
    let body: Option<String> = sqlx::query(query)
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(IdentityError::store)?
        .map(|row| row.get(0));
    let parse = |text: &str| -> Result<serde_json::Value> {
        serde_json::from_str(text).map_err(IdentityError::store)
    };
    Ok(match (kind, body) {
        ("scope_map", Some(b)) => {
            Write::PutScopeMap(serde_json::from_value(parse(&b)?).map_err(IdentityError::store)?)
        }
        ("scope_map", None) => Write::DeleteScopeMap(name),
        ("token", Some(b)) => {
            Write::PutToken(serde_json::from_value(parse(&b)?).map_err(IdentityError::store)?)
        }
        ("token", None) => Write::DeleteToken(name),
        ("connected_registry", Some(b)) => Write::PutConnectedRegistry(Box::new(
            serde_json::from_value(parse(&b)?).map_err(IdentityError::store)?,
        )),
        ("connected_registry", None) => Write::DeleteConnectedRegistry(name),
        ("key", Some(b)) => {
            Write::PutKey(serde_json::from_value(parse(&b)?).map_err(IdentityError::store)?)
        }
        ("key", None) => Write::DeleteKey(name),
        // Settings are never deleted.
        (_, b) => Write::PutSetting(
            name,
            b.as_deref().map(parse).transpose()?.unwrap_or_default(),
        ),
    })
}

#[async_trait]
impl IdentityStore for PostgresIdentityStore {
    fn shared(&self) -> bool {
        true
    }

    async fn load(&self) -> Result<StoredIdentities> {
        // One read transaction, so the objects and the head agree.
        let mut tx = self.read_snapshot().await?;
        let mut out = StoredIdentities {
            head: head(&mut tx).await?,
            ..StoredIdentities::default()
        };
        for row in sqlx::query("SELECT body FROM scope_maps ORDER BY name")
            .fetch_all(&mut *tx)
            .await
            .map_err(IdentityError::store)?
        {
            out.scope_maps
                .push(serde_json::from_str(row.get::<&str, _>(0)).map_err(IdentityError::store)?);
        }
        for row in sqlx::query("SELECT body FROM tokens ORDER BY name")
            .fetch_all(&mut *tx)
            .await
            .map_err(IdentityError::store)?
        {
            out.tokens
                .push(serde_json::from_str(row.get::<&str, _>(0)).map_err(IdentityError::store)?);
        }
        for row in sqlx::query("SELECT key, value FROM settings")
            .fetch_all(&mut *tx)
            .await
            .map_err(IdentityError::store)?
        {
            out.settings.push((
                row.get(0),
                serde_json::from_str(row.get::<&str, _>(1)).map_err(IdentityError::store)?,
            ));
        }
        for row in sqlx::query("SELECT body FROM connected_registries ORDER BY name")
            .fetch_all(&mut *tx)
            .await
            .map_err(IdentityError::store)?
        {
            out.connected_registries
                .push(serde_json::from_str(row.get::<&str, _>(0)).map_err(IdentityError::store)?);
        }
        for row in sqlx::query("SELECT body FROM keys ORDER BY created_at, id")
            .fetch_all(&mut *tx)
            .await
            .map_err(IdentityError::store)?
        {
            out.keys
                .push(serde_json::from_str(row.get::<&str, _>(0)).map_err(IdentityError::store)?);
        }
        out.admin = sqlx::query("SELECT username, password_hash FROM admin WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(IdentityError::store)?
            .map(|row| AdminRecord {
                username: row.get(0),
                password_hash: row.get(1),
            });
        Ok(out)
    }

    async fn apply(&self, expected: i64, writes: &[Write]) -> Result<Applied> {
        // The writers' lock first: the head read here cannot move before this transaction
        // commits.
        let mut tx = self.begin_write().await?;
        if head(&mut tx).await? != expected {
            return Ok(Applied::Stale);
        }
        for write in writes {
            let (query, kind, name) = match write {
                Write::PutScopeMap(map) => (
                    sqlx::query(
                        "INSERT INTO scope_maps (name, body, created_at, updated_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                    )
                    .bind(map.name.clone())
                    .bind(json(map))
                    .bind(map.created_at)
                    .bind(unix_now()),
                    "scope_map",
                    &map.name,
                ),
                Write::DeleteScopeMap(name) => {
                    (sqlx::query("DELETE FROM scope_maps WHERE name = $1").bind(name.clone()), "scope_map", name)
                }
                Write::PutToken(token) => (
                    sqlx::query(
                        "INSERT INTO tokens (name, scope_map, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (name) DO UPDATE SET scope_map = excluded.scope_map, body = excluded.body, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(token.name.clone())
                    .bind(token.scope_map.clone())
                    .bind(json(token))
                    .bind(token.created_at)
                    .bind(unix_now()),
                    "token",
                    &token.name,
                ),
                Write::DeleteToken(name) => (sqlx::query("DELETE FROM tokens WHERE name = $1").bind(name.clone()), "token", name),
                Write::PutSetting(key, value) => (
                    sqlx::query(
                        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(key.clone())
                    .bind(value.to_string()),
                    "settings",
                    key,
                ),
                Write::PutConnectedRegistry(registry) => (
                    sqlx::query(
                        "INSERT INTO connected_registries (name, parent, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (name) DO UPDATE SET parent = excluded.parent, body = excluded.body, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(registry.name.clone())
                    .bind(registry.parent.clone())
                    .bind(json(registry))
                    .bind(registry.created_at)
                    .bind(unix_now()),
                    "connected_registry",
                    &registry.name,
                ),
                Write::DeleteConnectedRegistry(name) => (
                    sqlx::query("DELETE FROM connected_registries WHERE name = $1").bind(name.clone()),
                    "connected_registry",
                    name,
                ),
                Write::PutKey(key) => (
                    sqlx::query(
                        "INSERT INTO keys (id, body, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                    )
                    .bind(key.id.clone())
                    .bind(json(key))
                    .bind(key.created_at),
                    "key",
                    &key.id,
                ),
                Write::DeleteKey(id) => (sqlx::query("DELETE FROM keys WHERE id = $1").bind(id.clone()), "key", id),
            };
            query
                .execute(&mut *tx)
                .await
                .map_err(IdentityError::store)?;
            sqlx::query("INSERT INTO identity_changes (kind, name, at) VALUES ($1, $2, $3)")
                .bind(kind)
                .bind(name.as_str())
                .bind(unix_now())
                .execute(&mut *tx)
                .await
                .map_err(IdentityError::store)?;
        }
        let head = head(&mut tx).await?;
        tx.commit().await.map_err(IdentityError::store)?;
        Ok(Applied::At(head))
    }

    async fn changes_since(&self, seq: i64) -> Result<(i64, Vec<Write>)> {
        // Every authenticated request on a shared store asks: usually nothing is new, which
        // one statement tells, without a snapshot's BEGIN and ROLLBACK around it.
        let mut conn = self.pool.acquire().await.map_err(IdentityError::store)?;
        let head_now = head(&mut conn).await?;
        if head_now <= seq {
            return Ok((head_now, Vec::new()));
        }
        drop(conn);
        let mut tx = self.read_snapshot().await?;
        let head = head(&mut tx).await?;
        let changed = sqlx::query(
            "SELECT kind, name, MAX(seq) AS last FROM identity_changes WHERE seq > $1 \
             GROUP BY kind, name ORDER BY last",
        )
        .bind(seq)
        .fetch_all(&mut *tx)
        .await
        .map_err(IdentityError::store)?;
        let mut writes = Vec::with_capacity(changed.len());
        for row in changed {
            let (kind, name): (String, String) = (row.get(0), row.get(1));
            writes.push(current(&mut tx, &kind, name).await?);
        }
        Ok((head, writes))
    }

    async fn put_admin(&self, admin: &AdminRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin (id, username, password_hash, updated_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET username = excluded.username, password_hash = excluded.password_hash, updated_at = excluded.updated_at",
        )
        .bind(&admin.username)
        .bind(&admin.password_hash)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(IdentityError::store)
    }

    async fn put_status(&self, registry: &str, status: &InstanceStatus) -> Result<()> {
        sqlx::query(
            "INSERT INTO connected_status (name, body, reported_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET body = excluded.body, reported_at = excluded.reported_at",
        )
        .bind(registry)
        .bind(json(status))
        .bind(status.reported_at)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(IdentityError::store)
    }

    async fn status(&self, registry: &str) -> Result<Option<InstanceStatus>> {
        sqlx::query("SELECT body FROM connected_status WHERE name = $1")
            .bind(registry)
            .fetch_optional(&self.pool)
            .await
            .map_err(IdentityError::store)?
            .map(|row| serde_json::from_str(row.get::<&str, _>(0)).map_err(IdentityError::store))
            .transpose()
    }

    async fn statuses(&self) -> Result<Vec<(String, InstanceStatus)>> {
        sqlx::query("SELECT name, body FROM connected_status")
            .fetch_all(&self.pool)
            .await
            .map_err(IdentityError::store)?
            .into_iter()
            .map(|row| {
                let status =
                    serde_json::from_str(row.get::<&str, _>(1)).map_err(IdentityError::store)?;
                Ok((row.get(0), status))
            })
            .collect()
    }

    async fn delete_status(&self, registry: &str) -> Result<()> {
        sqlx::query("DELETE FROM connected_status WHERE name = $1")
            .bind(registry)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(IdentityError::store)
    }

    async fn put_event(
        &self,
        registry: &str,
        code: &str,
        description: &str,
        at: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE connected_events SET description = $1 WHERE registry = $2 AND code = $3 AND resolved_at IS NULL",
        )
        .bind(description)
        .bind(registry)
        .bind(code)
        .execute(&mut *tx)
        .await
        .map_err(IdentityError::store)?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO connected_events (registry, code, description, at) VALUES ($1, $2, $3, $4)",
            )
            .bind(registry)
            .bind(code)
            .bind(description)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(IdentityError::store)?;
        }
        tx.commit().await.map_err(IdentityError::store)
    }

    async fn resolve_events(&self, registry: &str, at: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let resolved = sqlx::query(
            "UPDATE connected_events SET resolved_at = $1 WHERE registry = $2 AND resolved_at IS NULL",
        )
        .bind(at)
        .bind(registry)
        .execute(&mut *tx)
        .await
        .map_err(IdentityError::store)?;
        if resolved.rows_affected() > 0 {
            sqlx::query(
                "DELETE FROM connected_events WHERE registry = $1 AND resolved_at IS NOT NULL AND id NOT IN \
                 (SELECT id FROM connected_events WHERE registry = $1 AND resolved_at IS NOT NULL \
                  ORDER BY resolved_at DESC, id DESC LIMIT $2)",
            )
            .bind(registry)
            .bind(PAST_DETAILS_KEPT as i64)
            .execute(&mut *tx)
            .await
            .map_err(IdentityError::store)?;
        }
        tx.commit().await.map_err(IdentityError::store)
    }

    async fn events(&self, registry: &str) -> Result<Vec<StatusDetail>> {
        Ok(sqlx::query(
            "SELECT code, description, at, resolved_at FROM connected_events WHERE registry = $1 ORDER BY id",
        )
        .bind(registry)
        .fetch_all(&self.pool)
        .await
        .map_err(IdentityError::store)?
        .into_iter()
        .map(|row| StatusDetail {
            code: row.get(0),
            description: row.get(1),
            at: row.get(2),
            resolved_at: row.get(3),
        })
        .collect())
    }

    async fn delete_events(&self, registry: &str) -> Result<()> {
        sqlx::query("DELETE FROM connected_events WHERE registry = $1")
            .bind(registry)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(IdentityError::store)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64> {
        let json_of = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        // Under the writers' lock, so ids are committed in order (a reader paging by id
        // never skips one).
        let mut tx = self.begin_write().await?;
        let id = sqlx::query(
            "INSERT INTO audit (at, actor, client, action, resource, status, before, after) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(entry.at)
        .bind(&entry.actor)
        .bind(&entry.client)
        .bind(&entry.action)
        .bind(&entry.resource)
        .bind(i64::from(entry.status))
        .bind(json_of(&entry.before))
        .bind(json_of(&entry.after))
        .fetch_one(&mut *tx)
        .await
        .map(|row| row.get(0))
        .map_err(IdentityError::store)?;
        tx.commit().await.map_err(IdentityError::store)?;
        Ok(id)
    }

    async fn audit(&self, since: i64, after: i64, limit: u32) -> Result<Vec<AuditEntry>> {
        let parse = |text: Option<String>| -> Result<Option<serde_json::Value>> {
            text.map(|t| serde_json::from_str(&t).map_err(IdentityError::store))
                .transpose()
        };
        sqlx::query(
            "SELECT id, at, actor, client, action, resource, status, before, after FROM audit \
             WHERE at >= $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(since)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(IdentityError::store)?
        .into_iter()
        .map(|row| {
            Ok(AuditEntry {
                id: row.get(0),
                at: row.get(1),
                actor: row.get(2),
                client: row.get(3),
                action: row.get(4),
                resource: row.get(5),
                status: u16::try_from(row.get::<i64, _>(6)).unwrap_or(0),
                before: parse(row.get(7))?,
                after: parse(row.get(8))?,
            })
        })
        .collect()
    }

    async fn prune_audit(&self, before: i64) -> Result<u64> {
        sqlx::query("DELETE FROM audit WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(IdentityError::store)
    }

    async fn create_webhook(&self, webhook: &Webhook, positions: &[(&str, i64)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO webhooks (name, body, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&webhook.name)
        .bind(json(webhook))
        .bind(webhook.created_at)
        .execute(&mut *tx)
        .await
        .map_err(IdentityError::store)?;
        if inserted.rows_affected() == 0 {
            return Err(IdentityError::AlreadyExists {
                kind: "webhook",
                name: webhook.name.clone(),
                hint: "; use `berth webhook update` to change it",
            });
        }
        // Positions a deleted webhook of the same name left cannot exist (deleted with it),
        // but replace rather than fail if they do.
        for (log, seq) in positions {
            sqlx::query(
                "INSERT INTO webhook_positions (webhook, log, seq) VALUES ($1, $2, $3) \
                 ON CONFLICT (webhook, log) DO UPDATE SET seq = excluded.seq",
            )
            .bind(&webhook.name)
            .bind(*log)
            .bind(*seq)
            .execute(&mut *tx)
            .await
            .map_err(IdentityError::store)?;
        }
        tx.commit().await.map_err(IdentityError::store)
    }

    async fn update_webhook(&self, webhook: &Webhook) -> Result<()> {
        let updated = sqlx::query("UPDATE webhooks SET body = $1, updated_at = $2 WHERE name = $3")
            .bind(json(webhook))
            .bind(unix_now())
            .bind(&webhook.name)
            .execute(&self.pool)
            .await
            .map_err(IdentityError::store)?;
        if updated.rows_affected() == 0 {
            return Err(IdentityError::NotFound {
                kind: "webhook",
                name: webhook.name.clone(),
            });
        }
        Ok(())
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        sqlx::query("SELECT body FROM webhooks ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(IdentityError::store)?
            .into_iter()
            .map(|row| serde_json::from_str(row.get::<&str, _>(0)).map_err(IdentityError::store))
            .collect()
    }

    async fn delete_webhook(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM webhooks WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(IdentityError::store)?
            .rows_affected();
        for query in [
            "DELETE FROM webhook_positions WHERE webhook = $1",
            "DELETE FROM webhook_deliveries WHERE webhook = $1",
        ] {
            sqlx::query(query)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(IdentityError::store)?;
        }
        tx.commit().await.map_err(IdentityError::store)?;
        Ok(deleted > 0)
    }

    async fn webhook_position(&self, name: &str, log: &str) -> Result<Option<i64>> {
        sqlx::query("SELECT seq FROM webhook_positions WHERE webhook = $1 AND log = $2")
            .bind(name)
            .bind(log)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.map(|row| row.get(0)))
            .map_err(IdentityError::store)
    }

    async fn set_webhook_position(&self, name: &str, log: &str, seq: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_positions (webhook, log, seq) VALUES ($1, $2, $3) \
             ON CONFLICT (webhook, log) DO UPDATE SET seq = excluded.seq",
        )
        .bind(name)
        .bind(log)
        .bind(seq)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(IdentityError::store)
    }

    async fn put_delivery(&self, name: &str, delivery: &Delivery) -> Result<()> {
        // Delivery records are no identity: the writers' lock is not needed.
        let mut tx = self.pool.begin().await.map_err(IdentityError::store)?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_deliveries (webhook, event_id, body, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (webhook, event_id) DO UPDATE SET body = excluded.body, at = excluded.at \
             RETURNING seq",
        )
        .bind(name)
        .bind(&delivery.id)
        .bind(json(delivery))
        .bind(delivery.at)
        .fetch_one(&mut *tx)
        .await
        .map_err(IdentityError::store)?;
        // Not at every attempt: every DELIVERIES_TRIM records (a retry keeps its row's).
        if seq % DELIVERIES_TRIM == 0 {
            sqlx::query(
                "DELETE FROM webhook_deliveries WHERE webhook = $1 AND seq NOT IN \
                 (SELECT seq FROM webhook_deliveries WHERE webhook = $1 ORDER BY seq DESC LIMIT $2)",
            )
            .bind(name)
            .bind(DELIVERIES_KEPT)
            .execute(&mut *tx)
            .await
            .map_err(IdentityError::store)?;
        }
        tx.commit().await.map_err(IdentityError::store)
    }

    async fn deliveries(&self, name: &str, limit: u32) -> Result<Vec<Delivery>> {
        sqlx::query(
            "SELECT body FROM webhook_deliveries WHERE webhook = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(IdentityError::store)?
        .into_iter()
        .map(|row| serde_json::from_str(row.get::<&str, _>(0)).map_err(IdentityError::store))
        .collect()
    }

    async fn append_site_events(&self, events: &[SiteEvent]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for event in events {
            sqlx::query(
                "INSERT INTO site_events (registry, event_id, body, at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&event.registry)
            .bind(&event.id)
            .bind(json(event))
            .bind(unix_now())
            .execute(&mut *tx)
            .await
            .map_err(IdentityError::store)?;
        }
        tx.commit().await.map_err(IdentityError::store)
    }

    async fn site_events(&self, after: i64, limit: u32) -> Result<Vec<SiteEvent>> {
        sqlx::query("SELECT seq, body FROM site_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(IdentityError::store)?
            .into_iter()
            .map(|row| {
                let mut event: SiteEvent =
                    serde_json::from_str(row.get::<&str, _>(1)).map_err(IdentityError::store)?;
                event.seq = row.get(0);
                Ok(event)
            })
            .collect()
    }

    async fn site_events_head(&self) -> Result<i64> {
        // The sequence, not MAX(seq): pruning every row must not rewind it.
        sqlx::query(
            "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('site_events', 'seq')), 0)",
        )
        .fetch_one(&self.pool)
        .await
        .map(|row| row.get(0))
        .map_err(IdentityError::store)
    }

    async fn prune_site_events(&self, before: i64) -> Result<u64> {
        sqlx::query("DELETE FROM site_events WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(IdentityError::store)
    }
}
