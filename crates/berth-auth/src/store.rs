//! Where identities are kept: the [`IdentityStore`] seam and its SQLite implementation.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::error::IdentityError;
use crate::scope_map::ScopeMap;
use crate::token::Token;

type Result<T> = std::result::Result<T, IdentityError>;

/// The admin account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRecord {
    /// User name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// Everything the store holds, loaded at once (identities are few and small).
#[derive(Debug, Clone, Default)]
pub struct StoredIdentities {
    /// User scope maps (built-ins are not stored).
    pub scope_maps: Vec<ScopeMap>,
    /// Tokens.
    pub tokens: Vec<Token>,
    /// Settings as `(key, JSON value)`.
    pub settings: Vec<(String, serde_json::Value)>,
    /// The admin account, once created.
    pub admin: Option<AdminRecord>,
}

/// Storage for identities. Every write also appends to the identity change log.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// Everything.
    async fn load(&self) -> Result<StoredIdentities>;
    /// Creates or replaces a scope map.
    async fn put_scope_map(&self, map: &ScopeMap) -> Result<()>;
    /// Deletes a scope map.
    async fn delete_scope_map(&self, name: &str) -> Result<()>;
    /// Creates or replaces a token.
    async fn put_token(&self, token: &Token) -> Result<()>;
    /// Deletes a token.
    async fn delete_token(&self, name: &str) -> Result<()>;
    /// Sets a setting.
    async fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<()>;
    /// Creates or replaces the admin account.
    async fn put_admin(&self, admin: &AdminRecord) -> Result<()>;
}

/// Identities in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteIdentityStore {
    pool: SqlitePool,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SqliteIdentityStore {
    /// Opens (creating with owner-only permissions, and migrating) the database at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            crate::private_file(path).map_err(IdentityError::store)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(IdentityError::store)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(IdentityError::store)?;
        Ok(SqliteIdentityStore { pool })
    }

    /// Runs one write and appends it to the identity change log, in one transaction.
    async fn write(
        &self,
        query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
        kind: &str,
        name: &str,
    ) -> Result<()> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(IdentityError::store)?;
        query
            .execute(&mut *tx)
            .await
            .map_err(IdentityError::store)?;
        sqlx::query("INSERT INTO identity_changes (kind, name, at) VALUES ($1, $2, $3)")
            .bind(kind)
            .bind(name)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(IdentityError::store)?;
        tx.commit().await.map_err(IdentityError::store)
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("identities serialise")
}

#[async_trait]
impl IdentityStore for SqliteIdentityStore {
    async fn load(&self) -> Result<StoredIdentities> {
        let mut out = StoredIdentities::default();
        for row in sqlx::query("SELECT body FROM scope_maps ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(IdentityError::store)?
        {
            out.scope_maps
                .push(serde_json::from_str(row.get::<&str, _>(0)).map_err(IdentityError::store)?);
        }
        for row in sqlx::query("SELECT body FROM tokens ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(IdentityError::store)?
        {
            out.tokens
                .push(serde_json::from_str(row.get::<&str, _>(0)).map_err(IdentityError::store)?);
        }
        for row in sqlx::query("SELECT key, value FROM settings")
            .fetch_all(&self.pool)
            .await
            .map_err(IdentityError::store)?
        {
            out.settings.push((
                row.get(0),
                serde_json::from_str(row.get::<&str, _>(1)).map_err(IdentityError::store)?,
            ));
        }
        out.admin = sqlx::query("SELECT username, password_hash FROM admin WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(IdentityError::store)?
            .map(|row| AdminRecord {
                username: row.get(0),
                password_hash: row.get(1),
            });
        Ok(out)
    }

    async fn put_scope_map(&self, map: &ScopeMap) -> Result<()> {
        let query = sqlx::query(
            "INSERT INTO scope_maps (name, body, created_at, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(&map.name)
        .bind(json(map))
        .bind(map.created_at)
        .bind(now());
        self.write(query, "scope_map", &map.name).await
    }

    async fn delete_scope_map(&self, name: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM scope_maps WHERE name = $1").bind(name),
            "scope_map",
            name,
        )
        .await
    }

    async fn put_token(&self, token: &Token) -> Result<()> {
        let query = sqlx::query(
            "INSERT INTO tokens (name, scope_map, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET scope_map = excluded.scope_map, body = excluded.body, \
             updated_at = excluded.updated_at",
        )
        .bind(&token.name)
        .bind(&token.scope_map)
        .bind(json(token))
        .bind(token.created_at)
        .bind(now());
        self.write(query, "token", &token.name).await
    }

    async fn delete_token(&self, name: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM tokens WHERE name = $1").bind(name),
            "token",
            name,
        )
        .await
    }

    async fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        let query = sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value.to_string());
        self.write(query, "settings", key).await
    }

    async fn put_admin(&self, admin: &AdminRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin (id, username, password_hash, updated_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET username = excluded.username, password_hash = excluded.password_hash, updated_at = excluded.updated_at",
        )
        .bind(&admin.username)
        .bind(&admin.password_hash)
        .bind(now())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(IdentityError::store)
    }
}
