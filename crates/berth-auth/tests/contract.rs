//! The identity store contract (`berth_auth::contract`) run against every implementation this
//! crate has. A new one (PostgreSQL) adds one test here, or in its own crate with the
//! `contract-tests` feature.

use std::sync::{Arc, Mutex};

use berth_auth::contract::identity_store_contract;
use berth_auth::{IdentityStore, SqliteIdentityStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_identity_store() {
    let dirs = Mutex::new(Vec::new());
    identity_store_contract(async || {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteIdentityStore::open(&dir.path().join("identity.db"))
            .await
            .unwrap();
        dirs.lock().unwrap().push(dir);
        Arc::new(store) as Arc<dyn IdentityStore>
    })
    .await;
}
