//! Contract suites for the storage seams: what every [`BlobStore`] and every
//! [`MetadataStore`] must do, written once and run against each implementation.
//!
//! Each suite is a function over a factory of fresh, empty stores; a new implementation
//! (object storage, PostgreSQL) runs the same suite with one test:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn s3_blob_store() {
//!     berth_registry::contract::blob_store_contract(async || s3_store_for_test().await).await;
//! }
//! ```
//!
//! They check the invariants of ARCHITECTURE.md that the stores carry: a blob is visible
//! only when whole; a manifest only when everything it references is; a blob is readable in
//! a repository only through a link; change-log order is commit order, and every content
//! change is in it; upload progress is updated only on the condition of its offset; and
//! concurrent writers (several tasks, standing in for several nodes) never break any of it.
//! A failure panics with the case's name. Behind the `contract-tests` feature.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_oci::{Digest, RepositoryName, Tag};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::UploadId;
use crate::blob::{AppendError, BlobStore, ByteStream};
use crate::change::{Change, ChangeAction, ChangeEvent, Origin};
use crate::metadata::{
    BlobClaim, BlobGeneration, BlobRecord, ContentTotals, Exclusive, LinkSource, MetadataStore,
    NewManifest, PutManifestError, RepositoryRemoval, Selection, Target,
};

// ----- helpers -----

fn body(chunks: &[&'static [u8]]) -> ByteStream<'static> {
    let chunks: Vec<io::Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
    futures_util::stream::iter(chunks).boxed()
}

async fn collect(stream: ByteStream<'static>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("a read of stored bytes succeeds"));
    }
    out
}

fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name, 255).expect("a valid test name")
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("a valid test tag")
}

/// A blob of `len` bytes that differs with `seed`.
fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ----- BlobStore -----

/// Runs every [`BlobStore`] case, each on a fresh store from `make`.
pub async fn blob_store_contract(make: impl AsyncFn() -> Arc<dyn BlobStore>) {
    blob_visible_only_when_whole(make().await).await;
    appends_start_where_the_data_ends(make().await).await;
    a_cut_body_keeps_what_arrived(make().await).await;
    an_abandoned_append_ends_before_the_next_begins(make().await).await;
    a_commit_publishes_the_bytes_it_names(make().await).await;
    ranges_read_what_they_name(make().await).await;
    committing_a_blob_held_already_keeps_it(make().await).await;
    upload_sessions_are_listed_and_dropped(make().await).await;
    deleting_a_blob(make().await).await;
    concurrent_writers_of_one_blob(make().await).await;
    readers_never_see_part_of_a_blob(make().await).await;
}

async fn blob_visible_only_when_whole(store: Arc<dyn BlobStore>) {
    let case = "blob_visible_only_when_whole";
    let whole = Digest::sha256(b"hello world");
    let id = UploadId::new();
    store.create_upload(&id).await.unwrap();
    assert_eq!(store.upload_len(&id).await.unwrap(), Some(0), "{case}");
    let len = store.append_upload(&id, 0, body(&[b"hello "])).await;
    assert_eq!(len.unwrap(), 6, "{case}");
    assert_eq!(store.stat(&whole).await.unwrap(), None, "{case}: part way");
    assert!(store.read(&whole, None).await.unwrap().is_none(), "{case}");
    let len = store.append_upload(&id, 6, body(&[b"wor", b"ld"])).await;
    assert_eq!(len.unwrap(), 11, "{case}");
    assert_eq!(
        collect(store.read_upload(&id).await.unwrap()).await,
        b"hello world",
        "{case}: the upload's data"
    );
    assert_eq!(
        store.stat(&whole).await.unwrap(),
        None,
        "{case}: uncommitted"
    );
    store.commit_upload(&id, &whole, 11).await.unwrap();
    assert_eq!(store.stat(&whole).await.unwrap(), Some(11), "{case}");
    assert_eq!(
        collect(store.read(&whole, None).await.unwrap().unwrap()).await,
        b"hello world",
        "{case}"
    );
    assert_eq!(
        store.upload_len(&id).await.unwrap(),
        None,
        "{case}: the session is gone after its commit"
    );

    let small = Digest::sha256(b"small");
    store
        .put(&small, Bytes::from_static(b"small"))
        .await
        .unwrap();
    assert_eq!(store.stat(&small).await.unwrap(), Some(5), "{case}: put");
}

async fn appends_start_where_the_data_ends(store: Arc<dyn BlobStore>) {
    let case = "appends_start_where_the_data_ends";
    let id = UploadId::new();
    store.create_upload(&id).await.unwrap();
    store.append_upload(&id, 0, body(&[b"abc"])).await.unwrap();
    for wrong in [0, 2, 4] {
        match store.append_upload(&id, wrong, body(&[b"x"])).await {
            Err(AppendError::OffsetMismatch { actual: 3 }) => {}
            other => panic!("{case}: an append at {wrong} of 3 bytes gave {other:?}"),
        }
    }
    assert_eq!(
        collect(store.read_upload(&id).await.unwrap()).await,
        b"abc",
        "{case}: refused appends change nothing"
    );
    match store
        .append_upload(&UploadId::new(), 0, body(&[b"x"]))
        .await
    {
        Err(AppendError::UnknownUpload) => {}
        other => panic!("{case}: an append to an unknown session gave {other:?}"),
    }
}

async fn a_cut_body_keeps_what_arrived(store: Arc<dyn BlobStore>) {
    let case = "a_cut_body_keeps_what_arrived";
    let id = UploadId::new();
    store.create_upload(&id).await.unwrap();
    store.append_upload(&id, 0, body(&[b"abc"])).await.unwrap();
    let big = Bytes::from(data(1, (3 << 20) + 5));
    let cut = futures_util::stream::iter(vec![
        Ok(big.clone()),
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client gone")),
    ])
    .boxed();
    match store.append_upload(&id, 3, cut).await {
        Err(AppendError::Interrupted { len, .. }) => {
            assert_eq!(len, 3 + big.len() as u64, "{case}")
        }
        other => panic!("{case}: a cut body gave {other:?}"),
    }
    let kept = collect(store.read_upload(&id).await.unwrap()).await;
    assert_eq!(kept.len(), 3 + big.len(), "{case}");
    assert!(kept[3..] == big[..], "{case}: exactly what arrived is kept");
    let len = store
        .append_upload(&id, kept.len() as u64, body(&[b"z"]))
        .await;
    assert_eq!(len.unwrap(), kept.len() as u64 + 1, "{case}: it resumes");
}

/// An append whose caller gives up part way (its future dropped: a client connection closed,
/// a sync task cancelled) may still have bytes on their way to storage; the next append on
/// the session must see where they ended, never write beside them.
async fn an_abandoned_append_ends_before_the_next_begins(store: Arc<dyn BlobStore>) {
    let case = "an_abandoned_append_ends_before_the_next_begins";
    const CHUNK: usize = 1 << 20;
    for round in 0..8u8 {
        let id = UploadId::new();
        store.create_upload(&id).await.unwrap();
        let sent = data(round, 6 * CHUNK);
        let (all_sent, sent_signal) = tokio::sync::oneshot::channel::<()>();
        let mut all_sent = Some(all_sent);
        let chunks: Vec<io::Result<Bytes>> = sent
            .chunks(CHUNK)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        // The chunks, then a body that never ends (a client that stalls), which says when
        // the append has taken every chunk.
        let stalled = futures_util::stream::iter(chunks)
            .chain(futures_util::stream::poll_fn(move |_| {
                if let Some(signal) = all_sent.take() {
                    let _ = signal.send(());
                }
                std::task::Poll::Pending
            }))
            .boxed();
        tokio::select! {
            biased;
            result = store.append_upload(&id, 0, stalled) => {
                panic!("{case}: a body that never ends gave {result:?}")
            }
            _ = sent_signal => {}
        }
        // The append is dropped: it is abandoned with its last chunks maybe still in flight.
        let mut at = store.upload_len(&id).await.unwrap().expect("the session");
        let end = loop {
            match store.append_upload(&id, at, body(&[b"tail"])).await {
                Ok(end) => break end,
                Err(AppendError::OffsetMismatch { actual }) => at = actual,
                other => panic!("{case}: an append at {at} gave {other:?}"),
            }
        };
        let kept = collect(store.read_upload(&id).await.unwrap()).await;
        assert_eq!(
            kept.len() as u64,
            end,
            "{case}: the length is what was written"
        );
        assert_eq!(end, at + 4, "{case}: the tail went where the data ended");
        assert!(
            kept[..at as usize] == sent[..at as usize] && &kept[at as usize..] == b"tail",
            "{case}: round {round}: the abandoned append's bytes, then the next append's \
             ({at} bytes kept of {})",
            sent.len()
        );
        store.abort_upload(&id).await.unwrap();
    }
}

/// A commit publishes the first `len` bytes of the session, those its caller hashed: bytes
/// past them (an abandoned append's) are not part of the blob, and fewer is an error.
async fn a_commit_publishes_the_bytes_it_names(store: Arc<dyn BlobStore>) {
    let case = "a_commit_publishes_the_bytes_it_names";
    let id = UploadId::new();
    store.create_upload(&id).await.unwrap();
    store.append_upload(&id, 0, body(&[b"abc"])).await.unwrap();
    store.append_upload(&id, 3, body(&[b"def"])).await.unwrap();
    let digest = Digest::sha256(b"abc");
    let short = store.commit_upload(&id, &digest, 7).await;
    assert!(
        matches!(&short, Err(e) if e.kind() == io::ErrorKind::InvalidData),
        "{case}: a commit of more than the session holds gave {short:?}"
    );
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        None,
        "{case}: nothing published"
    );
    store.commit_upload(&id, &digest, 3).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(3), "{case}");
    assert_eq!(
        collect(store.read(&digest, None).await.unwrap().unwrap()).await,
        b"abc",
        "{case}: the blob is the bytes its digest names"
    );
    assert_eq!(
        store.upload_len(&id).await.unwrap(),
        None,
        "{case}: the session is gone"
    );
}

async fn ranges_read_what_they_name(store: Arc<dyn BlobStore>) {
    let case = "ranges_read_what_they_name";
    let bytes = data(2, (1 << 20) + 333);
    let digest = Digest::sha256(&bytes);
    store
        .put(&digest, Bytes::from(bytes.clone()))
        .await
        .unwrap();
    for range in [0..1, 5..17, 1000..(1 << 20) + 300, 0..bytes.len() as u64] {
        let read = collect(
            store
                .read(&digest, Some(range.clone()))
                .await
                .unwrap()
                .unwrap(),
        )
        .await;
        assert!(
            read[..] == bytes[range.start as usize..range.end as usize],
            "{case}: {range:?}"
        );
    }
}

async fn committing_a_blob_held_already_keeps_it(store: Arc<dyn BlobStore>) {
    let case = "committing_a_blob_held_already_keeps_it";
    let digest = Digest::sha256(b"same");
    store
        .put(&digest, Bytes::from_static(b"same"))
        .await
        .unwrap();
    let id = UploadId::new();
    store.create_upload(&id).await.unwrap();
    store.append_upload(&id, 0, body(&[b"same"])).await.unwrap();
    store.commit_upload(&id, &digest, 4).await.unwrap();
    assert_eq!(store.upload_len(&id).await.unwrap(), None, "{case}");
    assert_eq!(
        collect(store.read(&digest, None).await.unwrap().unwrap()).await,
        b"same",
        "{case}"
    );
    store
        .put(&digest, Bytes::from_static(b"same"))
        .await
        .unwrap();
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        Some(4),
        "{case}: put again"
    );
}

async fn upload_sessions_are_listed_and_dropped(store: Arc<dyn BlobStore>) {
    let case = "upload_sessions_are_listed_and_dropped";
    let (a, b) = (UploadId::new(), UploadId::new());
    store.create_upload(&a).await.unwrap();
    store.create_upload(&b).await.unwrap();
    let listed: HashSet<UploadId> = store
        .list_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(listed, HashSet::from([a, b]), "{case}");
    store.abort_upload(&a).await.unwrap();
    store
        .abort_upload(&UploadId::new())
        .await
        .expect("dropping an unknown session is not an error");
    assert_eq!(store.upload_len(&a).await.unwrap(), None, "{case}");
    let listed: Vec<UploadId> = store
        .list_uploads()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(listed, [b], "{case}");
}

async fn deleting_a_blob(store: Arc<dyn BlobStore>) {
    let case = "deleting_a_blob";
    let digest = Digest::sha256(b"gone");
    store
        .put(&digest, Bytes::from_static(b"gone"))
        .await
        .unwrap();
    assert!(store.delete(&digest).await.unwrap(), "{case}");
    assert!(!store.delete(&digest).await.unwrap(), "{case}: twice");
    assert_eq!(store.stat(&digest).await.unwrap(), None, "{case}");
}

async fn concurrent_writers_of_one_blob(store: Arc<dyn BlobStore>) {
    let case = "concurrent_writers_of_one_blob";
    let bytes = Bytes::from(data(3, 2 << 20));
    let digest = Digest::sha256(&bytes);
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let (store, bytes, digest) = (Arc::clone(&store), bytes.clone(), digest.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    return store.put(&digest, bytes).await;
                }
                let id = UploadId::new();
                store.create_upload(&id).await?;
                let (head, tail) = (bytes.slice(..1000), bytes.slice(1000..));
                let chunks = futures_util::stream::iter([Ok(head), Ok(tail)]).boxed();
                store
                    .append_upload(&id, 0, chunks)
                    .await
                    .map_err(|e| io::Error::other(format!("{e:?}")))?;
                store.commit_upload(&id, &digest, bytes.len() as u64).await
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{case}: {e}"));
    }
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        Some(bytes.len() as u64),
        "{case}"
    );
    assert!(
        collect(store.read(&digest, None).await.unwrap().unwrap()).await == bytes,
        "{case}: the blob is whole"
    );
}

async fn readers_never_see_part_of_a_blob(store: Arc<dyn BlobStore>) {
    let case = "readers_never_see_part_of_a_blob";
    let bytes = Bytes::from(data(4, 4 << 20));
    let digest = Digest::sha256(&bytes);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, digest, done, len) = (
            Arc::clone(&store),
            digest.clone(),
            Arc::clone(&done),
            bytes.len(),
        );
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                if let Some(size) = store.stat(&digest).await.unwrap() {
                    assert_eq!(size, len as u64, "{case}: a blob's size is its whole size");
                }
                if let Some(stream) = store.read(&digest, None).await.unwrap() {
                    assert_eq!(collect(stream).await.len(), len, "{case}");
                    seen += 1;
                }
                if finished {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let id = UploadId::new();
    store.create_upload(&id).await.unwrap();
    let mut offset = 0;
    for part in bytes.chunks(512 << 10) {
        let part = Bytes::copy_from_slice(part);
        let chunks = futures_util::stream::iter([Ok(part)]).boxed();
        offset = store.append_upload(&id, offset, chunks).await.unwrap();
        tokio::task::yield_now().await;
    }
    store.commit_upload(&id, &digest, offset).await.unwrap();
    done.store(true, Ordering::SeqCst);
    assert!(
        reader.await.unwrap() >= 1,
        "{case}: the blob is read once whole"
    );
}

// ----- MetadataStore -----

/// Runs every [`MetadataStore`] case, each on a fresh store from `make`.
pub async fn metadata_store_contract(make: impl AsyncFn() -> Arc<dyn MetadataStore>) {
    a_manifest_only_when_its_references_are(make().await).await;
    a_blob_is_readable_only_through_a_link(make().await).await;
    tags_point_move_and_go_with_their_manifest(make().await).await;
    every_content_change_is_logged_in_commit_order(make().await).await;
    the_change_log_is_pruned_and_bounded(make().await).await;
    what_the_parent_last_set(make().await).await;
    repositories_are_described_and_deleted_whole(make().await).await;
    upload_progress_is_conditional(make().await).await;
    concurrent_writers_keep_the_log_in_commit_order(make().await).await;
    a_follower_never_skips_a_change(make().await).await;
    concurrent_pushes_of_one_manifest_log_it_once(make().await).await;
    concurrent_upload_updates_have_one_winner(make().await).await;
    a_collection_never_takes_what_a_writer_holds(make().await).await;
    a_collection_step_decides_each_blob_on_its_own(make().await).await;
    an_exclusive_task_has_one_holder(make().await).await;
    totals_count_what_the_store_holds(make().await).await;
    an_open_store_takes_writes(make().await).await;
}

/// A manifest whose content is `content`, referencing `references`, tagged `tags`.
fn manifest(
    repository: &RepositoryName,
    content: &str,
    references: Vec<Target>,
    tags: &[&str],
    origin: Origin,
) -> NewManifest {
    let content = Bytes::from(content.to_owned());
    NewManifest {
        repository: repository.clone(),
        digest: Digest::sha256(&content),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content,
        artifact_type: None,
        subject: None,
        annotations: None,
        references,
        tags: tags.iter().map(|t| tag(t)).collect(),
        origin,
    }
}

/// Links a blob the way an upload does: claimed, then linked in the claim's generation.
async fn link(
    store: &dyn MetadataStore,
    repository: &RepositoryName,
    digest: &Digest,
    size: u64,
    upload: Option<&UploadId>,
) {
    let claim = claim(store, digest, size).await;
    let source = LinkSource::Placed { claim, upload };
    assert!(
        store
            .link_blob(repository, digest, size, source)
            .await
            .unwrap(),
        "linking {digest} into {repository} right after its claim"
    );
}

/// Claims a blob no collection is deleting.
async fn claim(store: &dyn MetadataStore, digest: &Digest, size: u64) -> BlobGeneration {
    match store.claim_blob(digest, size, STALE_MS).await.unwrap() {
        BlobClaim::Claimed(generation) => generation,
        BlobClaim::Collecting => panic!("claiming {digest}: refused as being collected"),
    }
}

const STALE_MS: i64 = 600_000;

async fn all_changes(store: &dyn MetadataStore) -> Vec<Change> {
    store.changes(0, 10_000).await.unwrap()
}

fn summary(changes: &[Change]) -> Vec<(String, ChangeAction, Option<String>)> {
    changes
        .iter()
        .map(|c| {
            (
                c.repository.to_string(),
                c.event.action(),
                c.event.tag().map(Tag::to_string),
            )
        })
        .collect()
}

async fn a_manifest_only_when_its_references_are(store: Arc<dyn MetadataStore>) {
    let case = "a_manifest_only_when_its_references_are";
    let a = repo("a");
    let layer = Digest::sha256(b"layer");
    let image = manifest(
        &a,
        "image",
        vec![Target::Blob(layer.clone())],
        &["v1"],
        Origin::Local,
    );
    match store.put_manifest(image.clone()).await {
        Err(PutManifestError::UnknownTarget(Target::Blob(d))) if d == layer => {}
        other => panic!("{case}: a manifest over a missing blob gave {other:?}"),
    }
    assert!(
        store.manifest(&a, &image.digest).await.unwrap().is_none(),
        "{case}"
    );
    assert!(
        all_changes(&*store).await.is_empty(),
        "{case}: nothing logged"
    );
    // Linked in another repository is not enough.
    link(&*store, &repo("b"), &layer, 5, None).await;
    assert!(
        store.put_manifest(image.clone()).await.is_err(),
        "{case}: other repository"
    );
    link(&*store, &a, &layer, 5, None).await;
    store.put_manifest(image.clone()).await.unwrap();
    let stored = store.manifest(&a, &image.digest).await.unwrap().unwrap();
    assert_eq!(stored.content, image.content, "{case}: the exact bytes");
    assert_eq!(stored.media_type, image.media_type, "{case}");

    let child = manifest(&a, "child", vec![], &[], Origin::Local);
    let index = manifest(
        &a,
        "index",
        vec![Target::Manifest(child.digest.clone())],
        &[],
        Origin::Local,
    );
    match store.put_manifest(index.clone()).await {
        Err(PutManifestError::UnknownTarget(Target::Manifest(d))) if d == child.digest => {}
        other => panic!("{case}: an index over a missing child gave {other:?}"),
    }
    store.put_manifest(child).await.unwrap();
    store.put_manifest(index.clone()).await.unwrap();
    assert!(
        store.manifest(&a, &index.digest).await.unwrap().is_some(),
        "{case}"
    );
    assert_eq!(store.manifest_digests(&a).await.unwrap().len(), 3, "{case}");
}

async fn totals_count_what_the_store_holds(store: Arc<dyn MetadataStore>) {
    let case = "totals_count_what_the_store_holds";
    assert_eq!(
        store.content_totals().await.unwrap(),
        ContentTotals::default(),
        "{case}: empty"
    );
    let (a, b) = (repo("a"), repo("b"));
    let (small, large) = (Digest::sha256(b"small"), Digest::sha256(b"large"));
    link(&*store, &a, &small, 5, None).await;
    link(&*store, &b, &small, 5, None).await;
    link(&*store, &b, &large, 3_000_000_000, None).await;
    let image = manifest(
        &a,
        "image",
        vec![Target::Blob(small.clone())],
        &["v1"],
        Origin::Local,
    );
    store.put_manifest(image).await.unwrap();
    store.create_upload(&UploadId::new(), &b).await.unwrap();
    assert_eq!(
        store.content_totals().await.unwrap(),
        ContentTotals {
            repositories: 2,
            manifests: 1,
            blobs: 2,
            blob_bytes: 3_000_000_005,
            uploads: 1,
        },
        "{case}: a blob linked twice counts once, sizes past 32 bits add up"
    );
}

async fn an_open_store_takes_writes(store: Arc<dyn MetadataStore>) {
    store
        .check_writable()
        .await
        .expect("an_open_store_takes_writes");
}

async fn a_blob_is_readable_only_through_a_link(store: Arc<dyn MetadataStore>) {
    let case = "a_blob_is_readable_only_through_a_link";
    let (a, b) = (repo("a"), repo("b"));
    let blob = Digest::sha256(b"blob");
    assert!(!store.repository_exists(&a).await.unwrap(), "{case}");
    link(&*store, &a, &blob, 4, None).await;
    link(&*store, &a, &blob, 4, None).await;
    assert!(
        store.repository_exists(&a).await.unwrap(),
        "{case}: created by a link"
    );
    assert_eq!(store.blob_size(&a, &blob).await.unwrap(), Some(4), "{case}");
    assert_eq!(store.blob_size(&b, &blob).await.unwrap(), None, "{case}");
    assert!(store.blob_in_use(&blob).await.unwrap(), "{case}");
    assert!(store.unlink_blob(&a, &blob).await.unwrap(), "{case}");
    assert!(
        !store.unlink_blob(&a, &blob).await.unwrap(),
        "{case}: twice"
    );
    assert_eq!(store.blob_size(&a, &blob).await.unwrap(), None, "{case}");
    assert!(!store.blob_in_use(&blob).await.unwrap(), "{case}");

    // Linking the blob of an upload session ends the session, in the same step.
    let id = UploadId::new();
    store.create_upload(&id, &b).await.unwrap();
    link(&*store, &b, &blob, 4, Some(&id)).await;
    assert!(store.upload(&id).await.unwrap().is_none(), "{case}");
    assert_eq!(
        store.repositories(None, 10).await.unwrap(),
        ["a", "b"],
        "{case}"
    );
    assert_eq!(
        store.repositories(Some("a"), 10).await.unwrap(),
        ["b"],
        "{case}"
    );
}

async fn tags_point_move_and_go_with_their_manifest(store: Arc<dyn MetadataStore>) {
    let case = "tags_point_move_and_go_with_their_manifest";
    let a = repo("a");
    let one = manifest(&a, "one", vec![], &["v1", "latest"], Origin::Local);
    let two = manifest(&a, "two", vec![], &["latest"], Origin::Local);
    store.put_manifest(one.clone()).await.unwrap();
    store.put_manifest(two.clone()).await.unwrap();
    let latest = store.tagged_manifest(&a, &tag("latest")).await.unwrap();
    assert_eq!(latest.unwrap().digest, two.digest, "{case}: the tag moved");
    assert_eq!(
        store.tags(&a, None, 10).await.unwrap().unwrap(),
        ["latest", "v1"],
        "{case}"
    );
    assert_eq!(
        store.tags(&a, Some("latest"), 10).await.unwrap().unwrap(),
        ["v1"],
        "{case}"
    );
    assert!(
        store.tags(&repo("none"), None, 10).await.unwrap().is_none(),
        "{case}"
    );
    assert!(
        store
            .delete_manifest(&a, &one.digest, Origin::Local)
            .await
            .unwrap(),
        "{case}"
    );
    assert!(
        store
            .tagged_manifest(&a, &tag("v1"))
            .await
            .unwrap()
            .is_none(),
        "{case}: a tag goes with its manifest"
    );
    assert!(
        !store
            .delete_manifest(&a, &one.digest, Origin::Local)
            .await
            .unwrap(),
        "{case}: twice"
    );
    assert!(
        store
            .delete_tag(&a, &tag("latest"), Origin::Local)
            .await
            .unwrap(),
        "{case}"
    );
    assert!(
        !store
            .delete_tag(&a, &tag("latest"), Origin::Local)
            .await
            .unwrap(),
        "{case}"
    );
    assert!(
        store.manifest(&a, &two.digest).await.unwrap().is_some(),
        "{case}: deleting a tag keeps its manifest"
    );
}

async fn every_content_change_is_logged_in_commit_order(store: Arc<dyn MetadataStore>) {
    let case = "every_content_change_is_logged_in_commit_order";
    let a = repo("a");
    let one = manifest(&a, "one", vec![], &["v1", "v2"], Origin::Local);
    store.put_manifest(one.clone()).await.unwrap();
    // The same push again changes nothing, so logs nothing.
    store.put_manifest(one.clone()).await.unwrap();
    let two = manifest(&a, "two", vec![], &["v2"], Origin::Parent);
    store.put_manifest(two.clone()).await.unwrap();
    store
        .delete_tag(&a, &tag("v2"), Origin::Local)
        .await
        .unwrap();
    store
        .delete_manifest(&a, &one.digest, Origin::Local)
        .await
        .unwrap();
    let changes = all_changes(&*store).await;
    let s = |action, t: Option<&str>| ("a".to_owned(), action, t.map(str::to_owned));
    assert_eq!(
        summary(&changes),
        [
            s(ChangeAction::ManifestPut, None),
            s(ChangeAction::TagPut, Some("v1")),
            s(ChangeAction::TagPut, Some("v2")),
            s(ChangeAction::ManifestPut, None),
            s(ChangeAction::TagPut, Some("v2")),
            s(ChangeAction::TagDelete, Some("v2")),
            s(ChangeAction::TagDelete, Some("v1")),
            s(ChangeAction::ManifestDelete, None),
        ],
        "{case}"
    );
    assert!(
        changes.windows(2).all(|w| w[0].seq < w[1].seq),
        "{case}: sequence numbers strictly increase"
    );
    let origins: Vec<Origin> = changes.iter().map(|c| c.origin).collect();
    assert_eq!(origins[3..5], [Origin::Parent, Origin::Parent], "{case}");
    match &changes[4].event {
        ChangeEvent::TagPut {
            tag: t,
            digest,
            media_type,
        } => {
            assert_eq!((t.as_str(), digest), ("v2", &two.digest), "{case}");
            assert_eq!(media_type, &two.media_type, "{case}");
        }
        other => panic!("{case}: {other:?}"),
    }
    assert_eq!(
        changes[5].event.digest(),
        Some(&two.digest),
        "{case}: what the tag named"
    );
    // Paging.
    let page = store.changes(changes[2].seq, 2).await.unwrap();
    assert_eq!(page, changes[3..5], "{case}: a page after a position");
}

async fn the_change_log_is_pruned_and_bounded(store: Arc<dyn MetadataStore>) {
    let case = "the_change_log_is_pruned_and_bounded";
    assert_eq!(
        store.change_bounds().await.unwrap(),
        (0, 0),
        "{case}: empty"
    );
    let a = repo("a");
    for i in 0..3 {
        let m = manifest(&a, &format!("m{i}"), vec![], &[], Origin::Local);
        store.put_manifest(m).await.unwrap();
    }
    let changes = all_changes(&*store).await;
    let (first, last) = store.change_bounds().await.unwrap();
    assert_eq!((first, last), (changes[0].seq, changes[2].seq), "{case}");
    // Everything is older than the far future, but the last change stays.
    let removed = store.prune_changes(i64::MAX).await.unwrap();
    assert_eq!(removed, 2, "{case}");
    assert_eq!(store.change_bounds().await.unwrap(), (last, last), "{case}");
    assert_eq!(
        store.prune_changes(0).await.unwrap(),
        0,
        "{case}: nothing that old"
    );
    let m = manifest(&a, "after", vec![], &[], Origin::Local);
    store.put_manifest(m).await.unwrap();
    assert!(
        store.change_bounds().await.unwrap().1 > last,
        "{case}: sequence numbers never go back after a prune"
    );
}

async fn what_the_parent_last_set(store: Arc<dyn MetadataStore>) {
    let case = "what_the_parent_last_set";
    let a = repo("a");
    let from_parent = manifest(&a, "p", vec![], &["t"], Origin::Parent);
    store.put_manifest(from_parent.clone()).await.unwrap();
    let local = manifest(&a, "l", vec![], &["t"], Origin::Local);
    store.put_manifest(local).await.unwrap();
    let last = store.change_bounds().await.unwrap().1;
    assert_eq!(
        store
            .parent_tag_before(&a, &tag("t"), last + 1)
            .await
            .unwrap(),
        Some(from_parent.digest.clone()),
        "{case}"
    );
    let first = store.change_bounds().await.unwrap().0;
    assert_eq!(
        store.parent_tag_before(&a, &tag("t"), first).await.unwrap(),
        None,
        "{case}: nothing before the first change"
    );
    store
        .delete_tag(&a, &tag("t"), Origin::Parent)
        .await
        .unwrap();
    let last = store.change_bounds().await.unwrap().1;
    assert_eq!(
        store
            .parent_tag_before(&a, &tag("t"), last + 1)
            .await
            .unwrap(),
        None,
        "{case}: the parent deleted it"
    );
}

async fn upload_progress_is_conditional(store: Arc<dyn MetadataStore>) {
    let case = "upload_progress_is_conditional";
    let a = repo("a");
    let id = UploadId::new();
    store.create_upload(&id, &a).await.unwrap();
    let fresh = store.upload(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            fresh.repository.as_str(),
            fresh.received,
            fresh.hash_state.as_deref()
        ),
        ("a", 0, None),
        "{case}"
    );
    assert!(
        store.update_upload(&id, 0, 5, Some(b"five")).await.unwrap(),
        "{case}"
    );
    let now = store.upload(&id).await.unwrap().unwrap();
    assert_eq!(
        (now.received, now.hash_state.as_deref()),
        (5, Some(&b"five"[..])),
        "{case}"
    );
    assert!(
        !store.update_upload(&id, 0, 9, Some(b"nine")).await.unwrap(),
        "{case}: a stale offset is refused"
    );
    assert_eq!(
        store.upload(&id).await.unwrap().unwrap(),
        now,
        "{case}: and changes nothing"
    );
    assert!(
        store.update_upload(&id, 5, 5, None).await.unwrap(),
        "{case}: state forgotten"
    );
    assert_eq!(
        store.upload(&id).await.unwrap().unwrap().hash_state,
        None,
        "{case}"
    );
    assert!(
        !store
            .update_upload(&UploadId::new(), 0, 1, None)
            .await
            .unwrap(),
        "{case}: an unknown session"
    );
    let listed: Vec<UploadId> = store
        .uploads()
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(listed, [id], "{case}");
    store.delete_upload(&id).await.unwrap();
    assert!(store.upload(&id).await.unwrap().is_none(), "{case}");
    assert!(
        !store.update_upload(&id, 5, 6, None).await.unwrap(),
        "{case}: a deleted session"
    );
}

async fn concurrent_writers_keep_the_log_in_commit_order(store: Arc<dyn MetadataStore>) {
    let case = "concurrent_writers_keep_the_log_in_commit_order";
    const WRITERS: usize = 4;
    const PUSHES: usize = 8;
    // A logical clock: an operation that ended (`end`) before another began (`begin`) must
    // come first in the log.
    let clock = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, clock) = (Arc::clone(&store), Arc::clone(&clock));
            tokio::spawn(async move {
                let r = repo(&format!("w{w}"));
                let mut spans = Vec::new();
                for i in 0..PUSHES {
                    let m = manifest(&r, &format!("w{w}-{i}"), vec![], &["latest"], Origin::Local);
                    let begin = clock.fetch_add(1, Ordering::SeqCst);
                    if i % 3 == 2 {
                        store
                            .delete_tag(&r, &tag("latest"), Origin::Local)
                            .await
                            .unwrap();
                        let end = clock.fetch_add(1, Ordering::SeqCst);
                        spans.push((r.to_string(), None, begin, end));
                    } else {
                        let digest = m.digest.clone();
                        store.put_manifest(m).await.unwrap();
                        let end = clock.fetch_add(1, Ordering::SeqCst);
                        spans.push((r.to_string(), Some(digest), begin, end));
                    }
                }
                spans
            })
        })
        .collect();
    let mut spans = Vec::new();
    for writer in writers {
        spans.extend(writer.await.unwrap());
    }
    let changes = all_changes(&*store).await;
    assert!(
        changes.windows(2).all(|w| w[0].seq < w[1].seq),
        "{case}: sequence numbers strictly increase"
    );
    // The first change each operation logged.
    let mut first_seq: HashMap<(String, Option<Digest>, usize), i64> = HashMap::new();
    let mut per_repo: HashMap<String, Vec<&Change>> = HashMap::new();
    for c in &changes {
        per_repo
            .entry(c.repository.to_string())
            .or_default()
            .push(c);
    }
    let mut expected_changes = 0;
    for (w, ops) in spans.chunks(PUSHES).enumerate() {
        let log = &per_repo[&format!("w{w}")];
        let mut at = 0;
        for (n, (r, digest, _, _)) in ops.iter().enumerate() {
            // A put logs ManifestPut then TagPut; a tag delete logs TagDelete.
            let wanted: &[ChangeAction] = match digest {
                Some(_) => &[ChangeAction::ManifestPut, ChangeAction::TagPut],
                None => &[ChangeAction::TagDelete],
            };
            let got: Vec<ChangeAction> = log[at..at + wanted.len()]
                .iter()
                .map(|c| c.event.action())
                .collect();
            assert_eq!(got, wanted, "{case}: {r} operation {n}");
            if let Some(d) = digest {
                assert_eq!(log[at].event.digest(), Some(d), "{case}: {r} operation {n}");
            }
            first_seq.insert((r.clone(), digest.clone(), n), log[at].seq);
            at += wanted.len();
            expected_changes += wanted.len();
        }
        assert_eq!(at, log.len(), "{case}: {} logged nothing else", w);
    }
    assert_eq!(changes.len(), expected_changes, "{case}");
    let ordered: Vec<(i64, u64, u64)> = spans
        .chunks(PUSHES)
        .flat_map(|ops| {
            ops.iter().enumerate().map(|(n, (r, d, begin, end))| {
                (first_seq[&(r.clone(), d.clone(), n)], *begin, *end)
            })
        })
        .collect();
    for a in &ordered {
        for b in &ordered {
            if a.2 < b.1 {
                assert!(
                    a.0 < b.0,
                    "{case}: a change committed first is logged first"
                );
            }
        }
    }
}

/// Background work shared by several processes runs in one at a time: a second claim of a
/// task is refused while the first is held, other tasks are not affected, and the task is
/// free again once the guard is dropped (a store shared over the network may take a moment
/// to see the holder's connection go).
async fn an_exclusive_task_has_one_holder(store: Arc<dyn MetadataStore>) {
    let case = "an_exclusive_task_has_one_holder";
    let gc = store
        .try_exclusive(Exclusive::GarbageCollection)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{case}: a free task is granted"));
    assert!(
        store
            .try_exclusive(Exclusive::GarbageCollection)
            .await
            .unwrap()
            .is_none(),
        "{case}: a held task is refused"
    );
    let sweep = store.try_exclusive(Exclusive::UploadSweep).await.unwrap();
    assert!(sweep.is_some(), "{case}: another task is free");
    drop(gc);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if store
            .try_exclusive(Exclusive::GarbageCollection)
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{case}: a dropped guard frees its task"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Each task is its own: the others are granted while the sweep is held.
    let mut held = vec![sweep];
    for task in [
        Exclusive::ChangeLogPruning,
        Exclusive::WebhookDelivery,
        Exclusive::AuditPruning,
    ] {
        let guard = store.try_exclusive(task).await.unwrap();
        assert!(guard.is_some(), "{case}: {task:?} is a task of its own");
        held.push(guard);
    }
}

/// A follower (a connected registry, a webhook sender) reads the log after the last
/// sequence number it saw while writers commit; it must never see a change whose number is
/// above one that is committed later, or it would skip that one for ever.
async fn a_follower_never_skips_a_change(store: Arc<dyn MetadataStore>) {
    let case = "a_follower_never_skips_a_change";
    const WRITERS: usize = 6;
    const PUSHES: usize = 25;
    let done = Arc::new(AtomicU64::new(0));
    let follower = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        tokio::spawn(async move {
            let (mut seen, mut after) = (Vec::new(), 0);
            loop {
                let finished = done.load(Ordering::SeqCst) == WRITERS as u64;
                let page = store.changes(after, 7).await.unwrap();
                if page.is_empty() && finished {
                    return seen;
                }
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                seen.extend(page.into_iter().map(|c| c.seq));
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            tokio::spawn(async move {
                let r = repo(&format!("f{w}"));
                for i in 0..PUSHES {
                    let m = manifest(&r, &format!("f{w}-{i}"), vec![], &["t"], Origin::Local);
                    store.put_manifest(m).await.unwrap();
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = follower.await.unwrap();
    let all: Vec<i64> = all_changes(&*store).await.iter().map(|c| c.seq).collect();
    assert_eq!(
        all.len(),
        WRITERS * PUSHES * 2,
        "{case}: every change is logged"
    );
    assert_eq!(seen, all, "{case}: the follower saw every change, in order");
}

async fn concurrent_pushes_of_one_manifest_log_it_once(store: Arc<dyn MetadataStore>) {
    let case = "concurrent_pushes_of_one_manifest_log_it_once";
    let a = repo("a");
    let m = manifest(&a, "same", vec![], &["v1"], Origin::Local);
    let pushes: Vec<_> = (0..6)
        .map(|_| {
            let (store, m) = (Arc::clone(&store), m.clone());
            tokio::spawn(async move { store.put_manifest(m).await })
        })
        .collect();
    for push in pushes {
        push.await
            .unwrap()
            .unwrap_or_else(|e| panic!("{case}: {e}"));
    }
    let s = |action, t: Option<&str>| ("a".to_owned(), action, t.map(str::to_owned));
    assert_eq!(
        summary(&all_changes(&*store).await),
        [
            s(ChangeAction::ManifestPut, None),
            s(ChangeAction::TagPut, Some("v1"))
        ],
        "{case}"
    );
}

async fn concurrent_upload_updates_have_one_winner(store: Arc<dyn MetadataStore>) {
    let case = "concurrent_upload_updates_have_one_winner";
    let id = UploadId::new();
    store.create_upload(&id, &repo("a")).await.unwrap();
    let writers: Vec<_> = (1..=8u64)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let state = n.to_le_bytes();
                let won = store.update_upload(&id, 0, n, Some(&state)).await.unwrap();
                (n, won)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for writer in writers {
        let (n, won) = writer.await.unwrap();
        if won {
            winners.push(n);
        }
    }
    assert_eq!(winners.len(), 1, "{case}: exactly one writer wins");
    let row = store.upload(&id).await.unwrap().unwrap();
    assert_eq!(row.received, winners[0], "{case}");
    assert_eq!(
        row.hash_state.as_deref(),
        Some(&winners[0].to_le_bytes()[..]),
        "{case}: the winner's offset and state, together"
    );
}

/// The garbage-collection protocol (ARCHITECTURE.md, "Garbage collection"), step by step,
/// with every writer a collection can meet: a blob is marked only if unchanged since it was
/// listed and unreferenced; a mark takes its links; bytes vouched for by a claim of an
/// earlier generation, a link that went, or a mark are never linked.
async fn a_collection_never_takes_what_a_writer_holds(store: Arc<dyn MetadataStore>) {
    let case = "a_collection_never_takes_what_a_writer_holds";
    let (a, b) = (repo("a"), repo("b"));
    let blob = Digest::sha256(b"gc");
    let listed = async |store: &dyn MetadataStore| {
        let far = crate::gc::now_ms() + 60_000;
        store.unreferenced_blobs(far, None, 10).await.unwrap()
    };
    // Claimed and linked: unreferenced, so listed.
    let first = claim(&*store, &blob, 2).await;
    let source = LinkSource::Placed {
        claim: first,
        upload: None,
    };
    assert!(
        store.link_blob(&a, &blob, 2, source).await.unwrap(),
        "{case}"
    );
    let seen = listed(&*store).await;
    assert_eq!(seen.len(), 1, "{case}: {seen:?}");
    // A writer claims it again after it was listed (same generation: the bytes are there):
    // the collection, holding the older view, marks nothing, even within one millisecond.
    assert_eq!(claim(&*store, &blob, 2).await, first, "{case}");
    assert!(
        !marks(&*store, &seen[0], 0).await,
        "{case}: changed since listed"
    );
    assert_eq!(
        store.blob_size(&a, &blob).await.unwrap(),
        Some(2),
        "{case}: link kept"
    );

    // Referenced by a manifest: never marked.
    let image = manifest(
        &b,
        "gc image",
        vec![Target::Blob(blob.clone())],
        &[],
        Origin::Local,
    );
    let mount = LinkSource::Repository(&a);
    assert!(
        store.link_blob(&b, &blob, 2, mount).await.unwrap(),
        "{case}: mounted"
    );
    store.put_manifest(image.clone()).await.unwrap();
    assert!(listed(&*store).await.is_empty(), "{case}: referenced");
    let now = BlobRecord {
        updated_at: i64::MAX,
        ..seen[0].clone()
    };
    assert!(!marks(&*store, &now, 0).await, "{case}: referenced");
    assert!(
        store
            .delete_manifest(&b, &image.digest, Origin::Local)
            .await
            .unwrap(),
        "{case}"
    );

    // Listed afresh and marked: every link goes in the same step, and nothing vouches for
    // the bytes any more.
    let seen = listed(&*store).await;
    assert!(
        marks(&*store, &seen[0], crate::gc::now_ms()).await,
        "{case}"
    );
    assert_eq!(
        store.blob_size(&a, &blob).await.unwrap(),
        None,
        "{case}: links gone"
    );
    assert!(!store.blob_in_use(&blob).await.unwrap(), "{case}");
    for source in [
        LinkSource::Placed {
            claim: first,
            upload: None,
        },
        LinkSource::Repository(&a),
        LinkSource::AnyRepository,
    ] {
        assert!(
            !store.link_blob(&b, &blob, 2, source).await.unwrap(),
            "{case}: {source:?} during the deletion"
        );
    }
    assert_eq!(
        store.claim_blob(&blob, 2, STALE_MS).await.unwrap(),
        BlobClaim::Collecting,
        "{case}"
    );
    // Forgotten: a claim made before the mark still vouches for nothing (its bytes may have
    // been deleted under it); a new claim is a new generation.
    store
        .end_collect(std::slice::from_ref(&blob))
        .await
        .unwrap();
    assert!(listed(&*store).await.is_empty(), "{case}: forgotten");
    let source = LinkSource::Placed {
        claim: first,
        upload: None,
    };
    assert!(
        !store.link_blob(&b, &blob, 2, source).await.unwrap(),
        "{case}: old claim"
    );
    let second = claim(&*store, &blob, 2).await;
    assert_ne!(second, first, "{case}");
    assert!(
        !store.link_blob(&b, &blob, 2, source).await.unwrap(),
        "{case}: old claim, new record"
    );
    assert!(
        !store
            .link_blob(&b, &blob, 2, LinkSource::AnyRepository)
            .await
            .unwrap(),
        "{case}: claimed is not linked"
    );
    let source = LinkSource::Placed {
        claim: second,
        upload: None,
    };
    assert!(
        store.link_blob(&b, &blob, 2, source).await.unwrap(),
        "{case}"
    );
    assert!(
        store
            .link_blob(&a, &blob, 2, LinkSource::AnyRepository)
            .await
            .unwrap(),
        "{case}: adopted"
    );

    // A mark older than the staleness (a collection that crashed) is taken over by a claim,
    // in a new generation; finishing it is then refused.
    let seen = listed(&*store).await;
    assert!(marks(&*store, &seen[0], 0).await, "{case}");
    assert_eq!(store.stale_collections(1).await.unwrap().len(), 1, "{case}");
    let third = claim(&*store, &blob, 2).await;
    assert!(third != second && third != first, "{case}");
    assert!(
        store.stale_collections(i64::MAX).await.unwrap().is_empty(),
        "{case}"
    );
}

/// A step marks several blobs in one transaction, each on its own terms: one changed since
/// it was listed and one referenced in the meantime stay, the others go, links included.
async fn a_collection_step_decides_each_blob_on_its_own(store: Arc<dyn MetadataStore>) {
    let case = "a_collection_step_decides_each_blob_on_its_own";
    let a = repo("a");
    let blobs: Vec<Digest> = (0..4u8).map(|n| Digest::sha256(&[n])).collect();
    for blob in &blobs {
        let claim = claim(&*store, blob, 1).await;
        let source = LinkSource::Placed {
            claim,
            upload: None,
        };
        assert!(
            store.link_blob(&a, blob, 1, source).await.unwrap(),
            "{case}"
        );
    }
    let far = crate::gc::now_ms() + 60_000;
    let seen = store.unreferenced_blobs(far, None, 10).await.unwrap();
    assert_eq!(seen.len(), 4, "{case}: {seen:?}");
    // After the listing: one is claimed again, one is referenced by a manifest.
    let (touched, referenced) = (&seen[0].digest, &seen[1].digest);
    claim(&*store, touched, 1).await;
    let image = manifest(
        &a,
        "step image",
        vec![Target::Blob(referenced.clone())],
        &[],
        Origin::Local,
    );
    store.put_manifest(image).await.unwrap();

    let marked = store.begin_collect(&seen, 0).await.unwrap();
    assert_eq!(
        marked,
        [seen[2].digest.clone(), seen[3].digest.clone()],
        "{case}"
    );
    for blob in [touched, referenced] {
        assert_eq!(
            store.blob_size(&a, blob).await.unwrap(),
            Some(1),
            "{case}: kept"
        );
    }
    for blob in &marked {
        assert_eq!(
            store.blob_size(&a, blob).await.unwrap(),
            None,
            "{case}: link gone"
        );
    }
    store.end_collect(&marked).await.unwrap();
    let left = store.unreferenced_blobs(far, None, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|b| &b.digest).collect::<Vec<_>>(),
        [touched],
        "{case}: the marked ones are forgotten, the referenced one is not listed"
    );
    assert!(
        store.end_collect(&[]).await.is_ok(),
        "{case}: an empty step"
    );
}

/// Whether one collection step marks `blob`.
async fn marks(store: &dyn MetadataStore, blob: &BlobRecord, now_ms: i64) -> bool {
    let marked = store
        .begin_collect(std::slice::from_ref(blob), now_ms)
        .await
        .unwrap();
    marked == [blob.digest.clone()]
}

async fn repositories_are_described_and_deleted_whole(store: Arc<dyn MetadataStore>) {
    let case = "repositories_are_described_and_deleted_whole";
    let (a, b) = (repo("a"), repo("b"));
    let (config, amd, arm) = (
        Digest::sha256(b"config"),
        Digest::sha256(b"amd"),
        Digest::sha256(b"arm"),
    );
    for (digest, size) in [(&config, 10), (&amd, 100), (&arm, 50)] {
        link(&*store, &a, digest, size, None).await;
    }
    link(&*store, &b, &amd, 100, None).await;
    let one = manifest(
        &a,
        "image-amd",
        vec![Target::Blob(config.clone()), Target::Blob(amd.clone())],
        &["v1"],
        Origin::Local,
    );
    let two = manifest(
        &a,
        "image-arm",
        vec![Target::Blob(config.clone()), Target::Blob(arm.clone())],
        &[],
        Origin::Local,
    );
    let mut index = manifest(
        &a,
        "the-index",
        vec![
            Target::Manifest(one.digest.clone()),
            Target::Manifest(two.digest.clone()),
        ],
        &["latest", "multi"],
        Origin::Local,
    );
    index.media_type = "application/vnd.oci.image.index.v1+json".into();
    for m in [&one, &two, &index] {
        store.put_manifest(m.clone()).await.unwrap();
    }
    let len = |m: &NewManifest| m.content.len() as u64;
    let one_size = len(&one) + 10 + 100;
    // The config both platforms share counts once.
    let index_size = len(&index) + len(&one) + len(&two) + 10 + 100 + 50;

    let all = store
        .repository_summaries(Selection::Page { last: None, n: 10 })
        .await
        .unwrap();
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "{case}");
    let summary = &all[0];
    assert_eq!(
        (
            summary.manifest_count,
            summary.tag_count,
            summary.blob_count
        ),
        (3, 3, 3),
        "{case}"
    );
    assert_eq!(
        summary.size,
        160 + len(&one) + len(&two) + len(&index),
        "{case}: every blob once, and the manifests"
    );
    assert!(summary.updated_at >= summary.created_at, "{case}");
    let after_a = store
        .repository_summaries(Selection::Page {
            last: Some("a"),
            n: 10,
        })
        .await
        .unwrap();
    assert_eq!(after_a.len(), 1, "{case}");
    assert_eq!(after_a[0].name, b, "{case}");
    assert_eq!(
        (after_a[0].manifest_count, after_a[0].size),
        (0, 100),
        "{case}"
    );
    let only = store.repository_summaries(Selection::One("a")).await;
    assert_eq!(only.unwrap(), std::slice::from_ref(summary), "{case}");
    assert!(
        store
            .repository_summaries(Selection::One("c"))
            .await
            .unwrap()
            .is_empty(),
        "{case}"
    );

    let tags = store
        .tag_details(&a, Selection::Page { last: None, n: 10 })
        .await
        .unwrap()
        .unwrap();
    let listed: Vec<(&str, &Digest, u64)> = tags
        .iter()
        .map(|t| (t.tag.as_str(), &t.digest, t.size))
        .collect();
    assert_eq!(
        listed,
        [
            ("latest", &index.digest, index_size),
            ("multi", &index.digest, index_size),
            ("v1", &one.digest, one_size),
        ],
        "{case}"
    );
    assert_eq!(tags[0].media_type, index.media_type, "{case}");
    let page = store
        .tag_details(
            &a,
            Selection::Page {
                last: Some("latest"),
                n: 1,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        page,
        std::slice::from_ref(&tags[1]),
        "{case}: after `last`, `n` of them"
    );
    // By time: the tags were all set within the same second or two, so the order within a
    // second is the key's, and a page goes on after the (time, key) it ended with.
    fn by_time(newest_first: bool, last: Option<(i64, &str)>, n: u32) -> Selection<'_> {
        Selection::ByTime {
            newest_first,
            last,
            n,
        }
    }
    for newest_first in [true, false] {
        let all = store
            .tag_details(&a, by_time(newest_first, None, 10))
            .await
            .unwrap()
            .unwrap();
        let times: Vec<i64> = all.iter().map(|t| t.updated_at).collect();
        let mut sorted = times.clone();
        sorted.sort_unstable();
        if newest_first {
            sorted.reverse();
        }
        assert_eq!(
            times, sorted,
            "{case}: by time, newest first: {newest_first}"
        );
        let mut paged = Vec::new();
        let mut last: Option<(i64, String)> = None;
        loop {
            let page = store
                .tag_details(
                    &a,
                    by_time(
                        newest_first,
                        last.as_ref().map(|(t, k)| (*t, k.as_str())),
                        2,
                    ),
                )
                .await
                .unwrap()
                .unwrap();
            let Some(end) = page.last() else { break };
            last = Some((end.updated_at, end.tag.to_string()));
            paged.extend(page);
        }
        assert_eq!(
            paged, all,
            "{case}: pages by time, newest first: {newest_first}"
        );
    }
    let newest = store
        .manifest_details(&a, by_time(true, None, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(newest.len(), 1, "{case}");
    let v1 = store.tag_details(&a, Selection::One("v1")).await.unwrap();
    assert_eq!(v1.unwrap(), std::slice::from_ref(&tags[2]), "{case}");
    assert!(
        store
            .tag_details(&repo("c"), Selection::One("v1"))
            .await
            .unwrap()
            .is_none(),
        "{case}: an unknown repository"
    );

    let manifests = store
        .manifest_details(&a, Selection::Page { last: None, n: 10 })
        .await
        .unwrap()
        .unwrap();
    let mut digests = vec![&one.digest, &two.digest, &index.digest];
    digests.sort_by_key(|d| d.to_string());
    assert_eq!(
        manifests.iter().map(|m| &m.digest).collect::<Vec<_>>(),
        digests,
        "{case}: in lexical order of digest"
    );
    for m in &manifests {
        let (tags, size, content): (&[&str], u64, Option<&Bytes>) = if m.digest == index.digest {
            (&["latest", "multi"], index_size, Some(&index.content))
        } else if m.digest == one.digest {
            (&["v1"], one_size, None)
        } else {
            (&[], len(&two) + 10 + 50, None)
        };
        let names: Vec<&str> = m.tags.iter().map(Tag::as_str).collect();
        assert_eq!(names, tags, "{case}: tags of {}", m.digest);
        assert_eq!(m.size, size, "{case}: size of {}", m.digest);
        assert_eq!(m.index_content.as_ref(), content, "{case}: {}", m.digest);
    }
    let digest = one.digest.to_string();
    let just_one = store
        .manifest_details(&a, Selection::One(&digest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(just_one.len(), 1, "{case}");
    assert_eq!(just_one[0].digest, one.digest, "{case}");

    // A repository is removed only once it holds no manifest.
    let logged = all_changes(&*store).await.len();
    assert_eq!(
        store
            .delete_empty_repository(&a, Origin::Parent)
            .await
            .unwrap(),
        RepositoryRemoval::NotEmpty,
        "{case}"
    );
    assert_eq!(store.manifest_digests(&a).await.unwrap().len(), 3, "{case}");
    assert_eq!(
        all_changes(&*store).await.len(),
        logged,
        "{case}: nothing removed, nothing logged"
    );
    for m in [&index, &one, &two] {
        assert!(
            store
                .delete_manifest(&a, &m.digest, Origin::Local)
                .await
                .unwrap(),
            "{case}"
        );
    }
    let logged = all_changes(&*store).await.len();
    assert_eq!(
        store
            .delete_empty_repository(&a, Origin::Parent)
            .await
            .unwrap(),
        RepositoryRemoval::Removed { blob_links: 3 },
        "{case}"
    );
    assert!(!store.repository_exists(&a).await.unwrap(), "{case}");
    assert_eq!(store.repositories(None, 10).await.unwrap(), ["b"], "{case}");
    assert_eq!(store.blob_size(&a, &amd).await.unwrap(), None, "{case}");
    assert!(
        store.blob_in_use(&amd).await.unwrap(),
        "{case}: still linked in b"
    );
    assert!(!store.blob_in_use(&arm).await.unwrap(), "{case}");
    // The content's deletions were logged one by one; the name's removal is logged after
    // them, with its origin, for followers to remove theirs.
    let changes = all_changes(&*store).await;
    assert_eq!(changes.len(), logged + 1, "{case}");
    let removal = changes.last().unwrap();
    assert_eq!(removal.repository, a, "{case}");
    assert_eq!(removal.event, ChangeEvent::RepositoryDelete, "{case}");
    assert_eq!(removal.origin, Origin::Parent, "{case}");
    assert_eq!(
        store
            .delete_empty_repository(&a, Origin::Local)
            .await
            .unwrap(),
        RepositoryRemoval::Unknown,
        "{case}"
    );
    assert_eq!(
        all_changes(&*store).await.len(),
        logged + 1,
        "{case}: an unknown repository's removal logs nothing"
    );
}
