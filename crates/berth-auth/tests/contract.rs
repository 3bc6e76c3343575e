//! The identity store contract (`berth_auth::contract`) run against every implementation this
//! crate has: SQLite, and PostgreSQL on a real server (`berth_testkit`).

use std::sync::{Arc, Mutex};

use berth_auth::IdentityStore;
use berth_auth::contract::identity_store_contract;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_identity_store() {
    let dirs = Mutex::new(Vec::new());
    identity_store_contract(async || {
        let dir = tempfile::tempdir().unwrap();
        let store = support::store(dir.path()).await;
        dirs.lock().unwrap().push(dir);
        Arc::new(store) as Arc<dyn IdentityStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_identity_store() {
    let server = berth_testkit::postgres::TestPostgres::start();
    identity_store_contract(async || {
        let store = berth_auth::PostgresIdentityStore::connect(&server.database())
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        Arc::new(store) as Arc<dyn IdentityStore>
    })
    .await;
}
