//! The storage contract suites (`berth_registry::contract`) run against every implementation
//! this crate has. A new one adds one test here, or in its own crate with the
//! `contract-tests` feature. The PostgreSQL, S3 (s3s-fs) and Azure Blob (Azurite) runs start
//! real servers (`berth_testkit`).

use std::sync::{Arc, Mutex};

use berth_registry::blob::ObjectBlobStore;
use berth_registry::contract::{blob_store_contract, metadata_store_contract};
use berth_registry::{BlobStore, FsBlobStore, MetadataStore, PostgresMetadata, SqliteMetadata};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_blob_store() {
    let dirs = Mutex::new(Vec::new());
    blob_store_contract(async || {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        dirs.lock().unwrap().push(dir);
        Arc::new(store) as Arc<dyn BlobStore>
    })
    .await;
}

/// Every case on a new bucket of a real, signature-checking S3 server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_blob_store() {
    let server = berth_testkit::s3::TestS3::start();
    blob_store_contract(async || {
        let store = ObjectBlobStore::from_url(&server.url())
            .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        Arc::new(store) as Arc<dyn BlobStore>
    })
    .await;
}

/// Every case on a new container of Azurite, under a prefix (as a deployment may use one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_store() {
    let server = berth_testkit::azurite::TestAzurite::start();
    blob_store_contract(async || {
        let url = server.url().replacen('?', "/berth/blobs?", 1);
        let store =
            ObjectBlobStore::from_url(&url).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        Arc::new(store) as Arc<dyn BlobStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_metadata() {
    let dirs = Mutex::new(Vec::new());
    metadata_store_contract(async || {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetadata::open(&dir.path().join("metadata.db"))
            .await
            .unwrap();
        dirs.lock().unwrap().push(dir);
        Arc::new(store) as Arc<dyn MetadataStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_metadata() {
    let server = berth_testkit::postgres::TestPostgres::start();
    metadata_store_contract(async || {
        let url = server.database();
        let store = PostgresMetadata::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        Arc::new(store) as Arc<dyn MetadataStore>
    })
    .await;
}
