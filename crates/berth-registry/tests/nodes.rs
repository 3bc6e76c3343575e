//! Several registries (standing for nodes) on one PostgreSQL database: background work that
//! must run once across the cluster runs on one node at a time.

use std::sync::Arc;

use berth_registry::gc::GcStartError;
use berth_registry::{
    Exclusive, FsBlobStore, MetadataStore, PostgresMetadata, Registry, RegistryConfig,
};
use berth_testkit::postgres::TestPostgres;

async fn node(url: &str, dir: &std::path::Path) -> Registry {
    let metadata = PostgresMetadata::connect(url).await.unwrap();
    Registry::new(
        Arc::new(FsBlobStore::open(dir).unwrap()),
        Arc::new(metadata) as Arc<dyn MetadataStore>,
        RegistryConfig::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_runs_on_one_node_at_a_time() {
    let server = TestPostgres::start();
    let url = server.database();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&url, dirs.0.path()).await;
    let b = node(&url, dirs.1.path()).await;

    let on_a = a.gc().start(true).await.expect("A starts a collection");
    match b.gc().start(true).await {
        Err(GcStartError::RunningElsewhere) => {}
        other => panic!("B must not collect while A does: {other:?}"),
    }
    // A's collection ends: B may collect now (once PostgreSQL has seen A's lock go).
    a.gc().collect(&on_a, &Default::default()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match b.gc().start(true).await {
            Ok(handle) => {
                let run = b.gc().collect(&handle, &Default::default()).await;
                assert_eq!(run.outcome, "finished");
                break;
            }
            Err(GcStartError::RunningElsewhere) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("B collects once A is done: {e}"),
        }
    }

    // The periodic tasks: one holder across the nodes.
    let sweeping = a.try_exclusive(Exclusive::UploadSweep).await.unwrap();
    assert!(sweeping.is_some());
    assert!(
        b.try_exclusive(Exclusive::UploadSweep)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        b.try_exclusive(Exclusive::ChangeLogPruning)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_keep_blobs_elsewhere_are_named_to_a_joining_node() {
    let server = TestPostgres::start();
    let store = PostgresMetadata::connect(&server.database()).await.unwrap();
    let alive = std::time::Duration::from_secs(30);
    let shared = "s3://bucket/berth";
    assert!(
        store
            .join_cluster("a", shared, alive)
            .await
            .unwrap()
            .is_empty()
    );
    // Same store: fine. The same node restarting: fine.
    assert!(
        store
            .join_cluster("b", shared, alive)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .join_cluster("a", shared, alive)
            .await
            .unwrap()
            .is_empty()
    );
    // Its own disk: both others are named.
    let others = store
        .join_cluster("c", "file://host-c/var/lib/berth", alive)
        .await
        .unwrap();
    assert_eq!(
        others,
        vec![
            ("a".to_owned(), shared.to_owned()),
            ("b".to_owned(), shared.to_owned())
        ]
    );
    store.heartbeat("c").await.unwrap();
    // Nodes not seen within `alive` do not count.
    assert!(
        store
            .join_cluster("d", "file://host-d/srv", std::time::Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}
