//! Opening identities the way each node of a registry does, for the tests that run several
//! `Identity`s over one store (`shared_store.rs`, `keys.rs`).

#![allow(dead_code)] // each test binary uses a part

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_auth::{Identity, IdentityConfig, SigningKey, SqliteIdentityStore};

/// The admin's password of every node.
pub const ADMIN_PASSWORD: &str = "pw";

/// The SQLite identity store of the data directory `dir` (`identity.db`).
pub async fn store(dir: &Path) -> SqliteIdentityStore {
    SqliteIdentityStore::open(&dir.join("identity.db"))
        .await
        .unwrap()
}

/// A node over the identity store in `dir`, with a fresh signing key and the default
/// settings.
pub async fn node(dir: &Path) -> Identity {
    node_with(
        dir,
        SigningKey::generate(),
        IdentityConfig::default().refresh_token_ttl,
    )
    .await
}

/// A node over the identity store in `dir`, given `key` (which signs only if the store has no
/// key yet) and refresh tokens that live `refresh`.
pub async fn node_with(dir: &Path, key: SigningKey, refresh: Duration) -> Identity {
    let config = IdentityConfig {
        admin_password: Some(ADMIN_PASSWORD.into()),
        refresh_token_ttl: refresh,
        ..IdentityConfig::default()
    };
    Identity::open(Arc::new(store(dir).await), key, config)
        .await
        .unwrap()
        .0
}
