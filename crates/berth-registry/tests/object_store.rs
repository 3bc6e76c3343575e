//! The object-storage blob store beyond the contract suite, against real servers (s3s-fs and
//! Azurite, started by `berth_testkit`): several nodes on one store (separate
//! `ObjectBlobStore`s and `Registry`s over the same bucket, as separate processes would be),
//! two writers at one offset, blobs large enough for a multipart commit, and a commit that
//! refuses bytes that do not match the digest.

use std::io;
use std::sync::Arc;

use berth_oci::{Digest, RepositoryName};
use berth_registry::blob::{AppendError, ObjectBlobStore};
use berth_registry::{
    BlobStore, ByteStream, MetadataStore, Registry, RegistryConfig, RegistryError, SqliteMetadata,
    UploadId,
};
use berth_testkit::azurite::TestAzurite;
use berth_testkit::s3::TestS3;
use bytes::Bytes;
use futures_util::StreamExt;

fn body(chunks: Vec<Bytes>) -> ByteStream<'static> {
    futures_util::stream::iter(chunks.into_iter().map(Ok)).boxed()
}

async fn collect(stream: ByteStream<'static>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn data(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Nodes: stores built from one URL, sharing nothing but the bucket.
fn nodes(url: &str, n: usize) -> Vec<Arc<dyn BlobStore>> {
    (0..n)
        .map(|_| Arc::new(ObjectBlobStore::from_url(url).unwrap()) as Arc<dyn BlobStore>)
        .collect()
}

/// Appends in sizes far below S3's 5 MiB part minimum and a chunk larger than a segment,
/// spread over three nodes; the commit takes a multipart upload of several parts; ranges
/// across part boundaries read what they name.
async fn a_large_upload_over_three_nodes(url: &str) {
    let nodes = nodes(url, 3);
    let bytes = data((20 << 20) + 4321, 1);
    let id = UploadId::new();
    nodes[0].create_upload(&id).await.unwrap();
    let cuts = [0, 1, 4, 1000, 300_000, (9 << 20) + 7, bytes.len()];
    for (i, pair) in cuts.windows(2).enumerate() {
        let node = &nodes[i % 3];
        let part = bytes.slice(pair[0]..pair[1]);
        // The biggest piece arrives as many small chunks of a body, others in one.
        let chunks: Vec<Bytes> = if part.len() > 1 << 20 {
            part.chunks(64 << 10).map(|c| part.slice_ref(c)).collect()
        } else {
            vec![part]
        };
        let len = node
            .append_upload(&id, pair[0] as u64, body(chunks))
            .await
            .unwrap();
        assert_eq!(len, pair[1] as u64);
        assert_eq!(
            nodes[(i + 1) % 3].upload_len(&id).await.unwrap(),
            Some(len),
            "another node sees the length"
        );
    }
    assert!(
        collect(nodes[2].read_upload(&id).await.unwrap()).await == bytes,
        "the session's bytes read back whole, in order"
    );
    let digest = Digest::sha256(&bytes);
    nodes[1]
        .commit_upload(&id, &digest, bytes.len() as u64)
        .await
        .unwrap();
    assert_eq!(nodes[0].upload_len(&id).await.unwrap(), None);
    assert_eq!(
        nodes[2].stat(&digest).await.unwrap(),
        Some(bytes.len() as u64)
    );
    assert!(collect(nodes[0].read(&digest, None).await.unwrap().unwrap()).await == bytes);
    let part = 8u64 << 20;
    for range in [
        part - 3..part + 5,
        5..(2 * part + 1),
        (bytes.len() as u64 - 2)..bytes.len() as u64,
    ] {
        let read = collect(
            nodes[1]
                .read(&digest, Some(range.clone()))
                .await
                .unwrap()
                .unwrap(),
        )
        .await;
        assert!(
            read[..] == bytes[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
    assert!(
        nodes[0].list_uploads().await.unwrap().is_empty(),
        "nothing of the session is left"
    );
    let listed = nodes[0].list_blobs().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, digest);
    assert_eq!(listed[0].1, bytes.len() as u64);
}

/// Two nodes append at the same offset: both saw the same end of data, and exactly one
/// writes there; the other fails cleanly with the new end, having written nothing.
async fn two_nodes_at_one_offset(url: &str) {
    let nodes = nodes(url, 2);
    let id = UploadId::new();
    nodes[0].create_upload(&id).await.unwrap();
    nodes[0]
        .append_upload(&id, 0, body(vec![Bytes::from_static(b"abc")]))
        .await
        .unwrap();
    // B has checked the offset (3) and waits for its body while A appends at 3.
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let late = futures_util::stream::once(async move {
        wait.await.unwrap();
        Ok::<_, io::Error>(Bytes::from_static(b"BBBB"))
    })
    .boxed();
    let b = {
        let node = Arc::clone(&nodes[1]);
        tokio::spawn(async move { node.append_upload(&id, 3, late).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let a = nodes[0]
        .append_upload(&id, 3, body(vec![Bytes::from_static(b"AA")]))
        .await;
    // (B may have listed after A wrote, if this machine is slow: the same answer, sooner.)
    let _ = go.send(());
    let b = b.await.unwrap();
    assert_eq!(a.unwrap(), 5, "the first writer at offset 3");
    match b {
        Err(AppendError::OffsetMismatch { actual: 5 }) => {}
        other => panic!("the second writer at offset 3 gave {other:?}"),
    }
    assert_eq!(
        collect(nodes[1].read_upload(&id).await.unwrap()).await,
        b"abcAA",
        "only the winner's bytes are stored"
    );
}

/// Two nodes append at one offset at the same moment, again and again: exactly one wins each
/// time. Run on Azurite only: s3s-fs checks `If-None-Match` and then writes, without a lock,
/// so two writers racing within a few milliseconds both pass it there (AWS S3 and Azure
/// decide conditional writes atomically). What holds on s3s-fs even then: the registry's
/// conditional row update picks one request, and a commit publishes only bytes that hash to
/// its digest (`a_commit_checks_what_it_publishes`).
async fn racing_nodes_at_one_offset(url: &str) {
    let nodes = nodes(url, 2);
    for round in 0..20 {
        let id = UploadId::new();
        nodes[0].create_upload(&id).await.unwrap();
        let racers: Vec<_> = [(0, b"AAAA" as &'static [u8]), (1, b"BB")]
            .into_iter()
            .map(|(i, bytes)| {
                let node = Arc::clone(&nodes[i]);
                tokio::spawn(async move {
                    node.append_upload(&id, 0, body(vec![Bytes::from_static(bytes)]))
                        .await
                })
            })
            .collect();
        let mut won = Vec::new();
        for racer in racers {
            match racer.await.unwrap() {
                Ok(len) => won.push(len),
                Err(AppendError::OffsetMismatch { .. }) => {}
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: one winner");
        assert_eq!(nodes[1].upload_len(&id).await.unwrap(), Some(won[0]));
        nodes[1].abort_upload(&id).await.unwrap();
    }
}

/// A commit publishes only bytes that hash to the digest (another writer may have changed
/// the session since the caller hashed it).
async fn a_commit_checks_what_it_publishes(url: &str) {
    let store = &nodes(url, 1)[0];
    for len in [10, (9 << 20) + 1] {
        let id = UploadId::new();
        store.create_upload(&id).await.unwrap();
        let bytes = data(len, 2);
        store
            .append_upload(&id, 0, body(vec![bytes.clone()]))
            .await
            .unwrap();
        let claimed = Digest::sha256(b"something else");
        let e = store
            .commit_upload(&id, &claimed, len as u64)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("hash to"), "{e}");
        assert_eq!(
            store.stat(&claimed).await.unwrap(),
            None,
            "nothing published"
        );
        assert_eq!(store.upload_len(&id).await.unwrap(), Some(len as u64));
        store
            .commit_upload(&id, &Digest::sha256(&bytes), len as u64)
            .await
            .unwrap();
        store.abort_upload(&id).await.unwrap();
    }
    assert!(store.list_uploads().await.unwrap().is_empty());
}

/// A chunked push spread over three registries (three nodes: one metadata store, one
/// bucket, nothing else shared); then a node that died between storing a chunk and
/// recording it: the next node rebuilds the hash from the stored bytes.
async fn a_push_over_three_registries(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let metadata: Arc<dyn MetadataStore> = Arc::new(
        SqliteMetadata::open(&dir.path().join("m.db"))
            .await
            .unwrap(),
    );
    let blob_stores = nodes(url, 3);
    let registries: Vec<Registry> = blob_stores
        .iter()
        .map(|b| {
            Registry::new(
                Arc::clone(b),
                Arc::clone(&metadata),
                RegistryConfig::default(),
            )
        })
        .collect();
    let repo = RepositoryName::parse("scale/out", 255).unwrap();
    let bytes = data((6 << 20) + 99, 3);
    let digest = Digest::sha256(&bytes);

    let id = registries[0].uploads().start(&repo).await.unwrap();
    let mut offset = 0;
    for (i, piece) in bytes.chunks(1 << 20).take(3).enumerate() {
        offset = registries[i % 3]
            .uploads()
            .append(&repo, &id, Some(offset), body(vec![bytes.slice_ref(piece)]))
            .await
            .unwrap();
    }
    match registries[1]
        .uploads()
        .append(&repo, &id, Some(0), body(vec![Bytes::from_static(b"x")]))
        .await
    {
        Err(RegistryError::UploadRangeInvalid { offset: o }) => assert_eq!(o, offset),
        other => panic!("a stale chunk gave {other:?}"),
    }
    // A node stores the next chunk and dies before recording it.
    let stored = blob_stores[2]
        .append_upload(
            &id,
            offset,
            body(vec![bytes.slice(offset as usize..(4 << 20))]),
        )
        .await
        .unwrap();
    assert_eq!(
        registries[0].uploads().offset(&repo, &id).await.unwrap(),
        stored,
        "the stored bytes are the truth"
    );
    // Node 0's last state (1 MiB) is older than the row (3 MiB), which is behind the bytes
    // (4 MiB): it rebuilds the hash from the stored bytes (`read_upload`) and goes on.
    let rest = bytes.slice(stored as usize..);
    registries[0]
        .uploads()
        .finish(&repo, &id, &digest, Some((Some(stored), body(vec![rest]))))
        .await
        .unwrap();
    let blob = registries[2].blob(&repo, &digest).await.unwrap();
    assert_eq!(blob.size, bytes.len() as u64);
    assert!(collect(blob.read(None).await.unwrap()).await == bytes);
}

/// A signed URL reads the blob from the service itself, whole or a range, with no other
/// credentials; an altered one is refused.
async fn signed_urls_read_the_blob(url: &str) {
    let store = &nodes(url, 1)[0];
    let bytes = data(100_000, 5);
    let digest = Digest::sha256(&bytes);
    store.put(&digest, bytes.clone()).await.unwrap();
    let signed = store
        .signed_read_url(&digest, std::time::Duration::from_secs(1200))
        .await
        .unwrap()
        .expect("object storage signs URLs");
    let client = reqwest::Client::new();
    let whole = client.get(&signed).send().await.unwrap();
    assert_eq!(whole.status(), 200, "{signed}");
    assert!(whole.bytes().await.unwrap() == bytes);
    let part = client
        .get(&signed)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert!(part.bytes().await.unwrap() == bytes[10..20]);
    let other = Digest::sha256(b"other");
    let altered = signed.replace(digest.hex(), other.hex());
    let refused = client.get(&altered).send().await.unwrap();
    assert!(refused.status() == 403, "{}", refused.status());
}

/// `check` answers for a good store and names the store when the bucket or the secret is
/// wrong (the servers check signatures).
async fn checks(good: &str, no_bucket: &str, bad_secret: &str) {
    ObjectBlobStore::from_url(good)
        .unwrap()
        .check()
        .await
        .unwrap();
    for url in [no_bucket, bad_secret] {
        let e = ObjectBlobStore::from_url(url)
            .unwrap()
            .check()
            .await
            .expect_err(url);
        assert!(e.to_string().starts_with("storage `"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3() {
    let server = TestS3::start();
    let url = server.url();
    checks(
        &url,
        &url.replacen("s3://bucket-", "s3://no-such-bucket-", 1),
        &url.replace(berth_testkit::s3::SECRET_KEY, "wrong"),
    )
    .await;
    a_large_upload_over_three_nodes(&server.url()).await;
    two_nodes_at_one_offset(&server.url()).await;
    a_commit_checks_what_it_publishes(&server.url()).await;
    a_push_over_three_registries(&server.url()).await;
    signed_urls_read_the_blob(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_azure() {
    let server = TestAzurite::start();
    let url = server.url();
    checks(
        &url,
        &url.replacen("azblob://container-", "azblob://no-such-container-", 1),
        &format!(
            "{}?account={}&access_key=d3Jvbmcga2V5&endpoint={}",
            url.split('?').next().unwrap(),
            berth_testkit::azurite::ACCOUNT,
            server.endpoint()
        ),
    )
    .await;
    a_large_upload_over_three_nodes(&server.url()).await;
    two_nodes_at_one_offset(&server.url()).await;
    racing_nodes_at_one_offset(&server.url()).await;
    a_commit_checks_what_it_publishes(&server.url()).await;
    a_push_over_three_registries(&server.url()).await;
    signed_urls_read_the_blob(&server.url()).await;
}
