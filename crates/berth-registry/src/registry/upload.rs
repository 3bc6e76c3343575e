//! [`Uploads`]: upload sessions, for chunked and monolithic blob pushes and content sync's
//! blob transfers. [`Registry`](super::Registry) owns one and hands it out
//! ([`Registry::uploads`](super::Registry::uploads)).
//!
//! A session's progress lives in its metadata row ([`UploadRecord`]): the bytes received and
//! the SHA-256 state of exactly those bytes ([`Hasher::save`]), so any process sharing the
//! stores can continue it. Each append records its progress on the condition that the row
//! still holds the offset the append started from ([`MetadataStore::update_upload`]): a
//! second writer (another node continuing the same session at the same moment) gets `416`
//! instead of corrupting the session. That is one small `UPDATE` per request, not per MiB.
//!
//! Within a process, requests on one session are serialised by a per-session lock, which
//! also keeps the state the last request left: a cache of the row, used while the row still
//! holds the same offset (so nothing is deserialised on the next `PATCH`).
//!
//! Invariants:
//! - **one hash pass**: bytes are hashed as they stream into the blob store. The state is
//!   rebuilt from the stored bytes only when the row has none (a session older than stored
//!   states, or one whose bytes turned out to differ from the row) or when the stored bytes
//!   are not as long as the row says (a crash between an append and its row update, or a
//!   power loss that took the row's last update or the bytes' last writes: the stored bytes
//!   are the truth of what a session holds, as they always were). Equal lengths mean equal
//!   bytes because file systems that order data before metadata (ext4 `data=ordered`, XFS,
//!   btrfs) never show a file longer than the data that reached the disk;
//! - **the stored bytes and the hash state agree**: a body cut part way keeps what arrived
//!   and records exactly that state; a failed write keeps nothing (the store truncates back)
//!   and records nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_oci::{Algorithm, Digest, Hasher, RepositoryName};
use futures_util::StreamExt;
use tokio::sync::OwnedMutexGuard;

use super::Result;
use crate::UploadId;
use crate::blob::{AppendError, BlobStore, ByteStream};
use crate::error::RegistryError;
use crate::metadata::{BlobClaim, BlobGeneration, LinkSource, MetadataStore, UploadRecord};

/// A session's hash state: SHA-256 of its first `offset` bytes.
#[derive(Clone)]
struct State {
    hasher: Hasher,
    offset: u64,
}

/// The sessions this process has touched: each one's lock, and the state its last request
/// here left (if that request knew it).
#[derive(Default)]
struct Sessions(Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<Option<State>>>>>);

impl Sessions {
    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<UploadId, Arc<tokio::sync::Mutex<Option<State>>>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<Option<State>>> {
        Arc::clone(self.map().entry(*id).or_default())
    }

    fn remove(&self, id: &UploadId) {
        self.map().remove(id);
    }

    /// Forgets the sessions that have no row any more (ended by another process) and that
    /// no request here holds or waits for. (Cloning a slot happens under the map's lock, so
    /// a count of one cannot grow while it is looked at.)
    fn retain_recorded(&self, recorded: &HashSet<UploadId>) {
        self.map()
            .retain(|id, slot| recorded.contains(id) || Arc::strong_count(slot) > 1);
    }
}

/// A session whose lock this request holds, with its row as read under the lock.
struct Locked {
    id: UploadId,
    record: UploadRecord,
    cached: OwnedMutexGuard<Option<State>>,
}

/// Whether an I/O error means the storage has no space (or quota) left.
fn is_storage_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// The upload sessions of a registry: each one's bytes in the blob store and progress in
/// its metadata row, and, in this process, each one's lock and last state. Also what blob
/// writes tell of the storage: since when it has been full.
pub struct Uploads {
    blobs: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    /// Sessions idle for longer than this are removed ([`Uploads::sweep`]).
    max_age: Duration,
    /// Upload sessions this process touched: their locks and last states.
    sessions: Sessions,
    /// Since when blob writes have failed for lack of space, until one succeeds.
    storage_full: Mutex<Option<SystemTime>>,
}

impl Uploads {
    /// Upload sessions over the given stores, removed when idle for longer than `max_age`.
    pub(super) fn new(
        blobs: Arc<dyn BlobStore>,
        metadata: Arc<dyn MetadataStore>,
        max_age: Duration,
    ) -> Self {
        Uploads {
            blobs,
            metadata,
            max_age,
            sessions: Sessions::default(),
            storage_full: Mutex::new(None),
        }
    }

    /// Since when blob writes have been failing because the storage is full
    /// ([`Registry::storage_full_since`](super::Registry::storage_full_since)).
    pub(super) fn storage_full_since(&self) -> Option<SystemTime> {
        *self.storage_full.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the outcome of a blob write of `bytes` bytes: a full storage is logged once, at
    /// error level, when it starts (and once when it ends: at the first write that stores
    /// data again), however many writes fail in between; it becomes
    /// [`RegistryError::StorageFull`]. Other failures stay [`RegistryError::Io`].
    fn blob_write<T>(&self, result: std::io::Result<T>, bytes: u64) -> Result<T> {
        let mut full = self.storage_full.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(value) => {
                if bytes > 0 && full.take().is_some() {
                    tracing::info!("blob storage accepts writes again");
                }
                Ok(value)
            }
            Err(e) if is_storage_full(&e) => {
                if full.is_none() {
                    tracing::error!(error = %e, "blob storage is full: uploads fail with 507 until space is freed");
                    *full = Some(SystemTime::now());
                }
                Err(RegistryError::StorageFull(e))
            }
            Err(e) => Err(RegistryError::Io(e)),
        }
    }

    /// Opens an upload session for `repository`.
    pub async fn start(&self, repository: &RepositoryName) -> Result<UploadId> {
        let id = UploadId::new();
        self.start_as(repository, id).await?;
        Ok(id)
    }

    /// Opens upload session `id` (a fresh [`UploadId::new`]) for `repository`: for a caller
    /// that records the id before the session exists, so that a crash in between leaves a
    /// record of a session that never was, never a session no record names.
    pub async fn start_as(&self, repository: &RepositoryName, id: UploadId) -> Result<()> {
        self.blob_write(self.blobs.create_upload(&id).await, 0)?;
        self.metadata.create_upload(&id, repository).await?;
        // Known here without reading anything: empty. (Elsewhere, an empty session's state is
        // rebuilt from its empty data, which costs nothing.)
        *self.sessions.slot(&id).lock().await = Some(State {
            hasher: Hasher::new(Algorithm::Sha256),
            offset: 0,
        });
        Ok(())
    }

    /// Takes the session's lock and reads its row, after checking that it exists and belongs
    /// to `repository`.
    async fn lock(&self, repository: &RepositoryName, id: &UploadId) -> Result<Locked> {
        let cached = self.sessions.slot(id).lock_owned().await;
        match self.metadata.upload(id).await? {
            Some(record) if record.repository == repository.as_str() => Ok(Locked {
                id: *id,
                record,
                cached,
            }),
            Some(_) => Err(RegistryError::UploadUnknown(*id)),
            None => {
                drop(cached);
                // No such session: keep no lock for it (ids are guessable, memory is not free).
                self.sessions.remove(id);
                Err(RegistryError::UploadUnknown(*id))
            }
        }
    }

    /// The session's state: the one this process left, if the row still agrees; else the
    /// row's, if the stored bytes agree; else rebuilt from the stored bytes, and recorded.
    async fn state(&self, session: &mut Locked) -> Result<State> {
        if let Some(state) = session
            .cached
            .as_ref()
            .filter(|s| s.offset == session.record.received)
        {
            return Ok(state.clone());
        }
        let id = session.id;
        let stored = self
            .blobs
            .upload_len(&id)
            .await?
            .ok_or(RegistryError::UploadUnknown(id))?;
        let restored = session
            .record
            .hash_state
            .as_deref()
            .filter(|_| stored == session.record.received)
            .and_then(Hasher::restore);
        let state = match restored {
            Some(hasher) => State {
                hasher,
                offset: stored,
            },
            None => {
                let (hasher, offset) = self.hash(&id, Algorithm::Sha256).await?;
                let state = State { hasher, offset };
                self.record_progress(session, &state).await?;
                state
            }
        };
        *session.cached = Some(state.clone());
        Ok(state)
    }

    /// Records `state` in the session's row, if the row still holds what this request read.
    async fn record_progress(&self, session: &mut Locked, state: &State) -> Result<()> {
        let saved = state.hasher.save();
        let recorded = self
            .metadata
            .update_upload(
                &session.id,
                session.record.received,
                state.offset,
                Some(&saved),
            )
            .await?;
        if !recorded {
            // Another writer moved the session on (or ended it) since this request read it.
            *session.cached = None;
            return Err(match self.metadata.upload(&session.id).await? {
                Some(now) => RegistryError::UploadRangeInvalid {
                    offset: now.received,
                },
                None => RegistryError::UploadUnknown(session.id),
            });
        }
        session.record.received = state.offset;
        session.record.hash_state = Some(saved);
        Ok(())
    }

    async fn hash(&self, id: &UploadId, algorithm: Algorithm) -> Result<(Hasher, u64)> {
        if self.blobs.upload_len(id).await?.is_none() {
            return Err(RegistryError::UploadUnknown(*id));
        }
        let mut hasher = Hasher::new(algorithm);
        let mut len = 0u64;
        let mut data = self.blobs.read_upload(id).await?;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            len += chunk.len() as u64;
        }
        Ok((hasher, len))
    }

    /// Bytes received so far by a session.
    pub async fn offset(&self, repository: &RepositoryName, id: &UploadId) -> Result<u64> {
        let session = self.lock(repository, id).await?;
        if session
            .cached
            .as_ref()
            .is_some_and(|s| s.offset == session.record.received)
        {
            return Ok(session.record.received);
        }
        // The stored bytes are the truth (the row may lag them after a crash).
        self.blobs
            .upload_len(id)
            .await?
            .ok_or(RegistryError::UploadUnknown(*id))
    }

    /// Appends a chunk. `start`, from `Content-Range`, must equal the bytes received so far.
    /// Returns the new total.
    pub async fn append(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
        start: Option<u64>,
        body: ByteStream<'_>,
    ) -> Result<u64> {
        let mut session = self.lock(repository, id).await?;
        let state = self.append_locked(&mut session, start, body, true).await?;
        Ok(state.offset)
    }

    /// Appends `body` to a locked session and returns its new state. With `record`, the new
    /// state goes to the row; without (the last chunk of a completion, which removes the row
    /// when it succeeds), only a body cut part way is recorded, and the caller records the
    /// state if the completion fails.
    async fn append_locked(
        &self,
        session: &mut Locked,
        start: Option<u64>,
        body: ByteStream<'_>,
        record: bool,
    ) -> Result<State> {
        let state = self.state(session).await?;
        if let Some(start) = start
            && start != state.offset
        {
            return Err(RegistryError::UploadRangeInvalid {
                offset: state.offset,
            });
        }
        let id = session.id;
        let mut hasher = state.hasher;
        let hashed = body.inspect(|chunk| {
            if let Ok(bytes) = chunk {
                hasher.update(bytes);
            }
        });
        match self
            .blobs
            .append_upload(&id, state.offset, hashed.boxed())
            .await
        {
            Ok(len) => {
                let written = len.saturating_sub(state.offset);
                let next = self.blob_write(
                    Ok(State {
                        hasher,
                        offset: len,
                    }),
                    written,
                )?;
                if record {
                    self.record_progress(session, &next).await?;
                }
                *session.cached = Some(next.clone());
                Ok(next)
            }
            Err(AppendError::OffsetMismatch { actual }) => {
                // The stored data is not what the row says (a crash mid-append, or another
                // writer): the next request rebuilds the state from it.
                *session.cached = None;
                self.metadata
                    .update_upload(&id, state.offset, actual, None)
                    .await?;
                Err(RegistryError::UploadRangeInvalid { offset: actual })
            }
            Err(AppendError::UnknownUpload) => Err(RegistryError::UploadUnknown(id)),
            Err(AppendError::Interrupted { len, error }) => {
                // The hasher saw exactly the chunks the store kept: the session resumes at `len`.
                let next = State {
                    hasher,
                    offset: len,
                };
                self.record_progress(session, &next).await?;
                *session.cached = Some(next);
                Err(RegistryError::UploadInvalid(format!(
                    "the upload body was cut after byte {len}; resume from there: {error}"
                )))
            }
            // Writing failed (the body did not): the storage's problem, a 5xx, never the
            // client's. Nothing of this append was kept.
            Err(AppendError::Io(e)) => self.blob_write(Err(e), 0),
        }
    }

    /// Completes an upload: appends the optional last chunk, checks the digest, and publishes
    /// the blob in `repository`. A digest mismatch cancels the session.
    pub async fn finish(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, ByteStream<'_>)>,
    ) -> Result<()> {
        let mut session = self.lock(repository, id).await?;
        let (state, unrecorded) = match last_chunk {
            Some((start, body)) => {
                let state = self.append_locked(&mut session, start, body, false).await?;
                let unrecorded = state.offset != session.record.received;
                (state, unrecorded)
            }
            None => (self.state(&mut session).await?, false),
        };
        let actual = match digest.algorithm() {
            Algorithm::Sha256 => state.hasher.peek(),
            // Bytes are hashed with SHA-256 as they arrive; other algorithms are rare
            // enough to afford a second read.
            other => self.hash(id, other).await?.0.finish(),
        };
        if &actual != digest {
            drop(session);
            self.cancel(repository, id).await?;
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // Claimed before the bytes are placed, so no collection removes them before (and
        // for the grace after) the link.
        // Linked only in the claim's generation: if a collection took the blob meanwhile (only
        // possible with a grace shorter than this step), the bytes may be gone, and the push
        // fails cleanly instead (503, the client retries).
        let published = match self.claim(digest, state.offset).await {
            Ok(claim) => {
                match self.blob_write(self.blobs.commit_upload(id, digest, state.offset).await, 0) {
                    Ok(()) => {
                        let source = LinkSource::Placed {
                            claim,
                            upload: Some(id),
                        };
                        match self
                            .metadata
                            .link_blob(repository, digest, state.offset, source)
                            .await
                        {
                            Ok(true) => Ok(()),
                            Ok(false) => Err(RegistryError::BlobCollecting(digest.clone())),
                            Err(e) => Err(e.into()),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = published {
            if unrecorded {
                // So that a retry, here or elsewhere, starts from what was stored.
                if let Err(record) = self.record_progress(&mut session, &state).await {
                    tracing::warn!(upload = %id, error = %record, "could not record an upload's progress");
                }
            }
            return Err(e);
        }
        drop(session);
        self.sessions.remove(id);
        Ok(())
    }

    /// Claims `digest` before its bytes are placed: waits (a few seconds at most) while a
    /// collection is deleting it, which takes milliseconds unless that collection crashed.
    async fn claim(&self, digest: &Digest, size: u64) -> Result<BlobGeneration> {
        for _ in 0..50 {
            match self
                .metadata
                .claim_blob(digest, size, crate::gc::STALE_COLLECTION.as_millis() as i64)
                .await?
            {
                BlobClaim::Claimed(generation) => return Ok(generation),
                BlobClaim::Collecting => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Err(RegistryError::BlobCollecting(digest.clone()))
    }

    /// Cancels an upload session and drops its data.
    pub async fn cancel(&self, repository: &RepositoryName, id: &UploadId) -> Result<()> {
        let _session = self.lock(repository, id).await?;
        self.forget(id).await
    }

    async fn forget(&self, id: &UploadId) -> Result<()> {
        self.metadata.delete_upload(id).await?;
        self.blobs.abort_upload(id).await?;
        self.sessions.remove(id);
        Ok(())
    }

    /// Removes upload sessions idle for longer than the configured age (`upload_max_age`), and upload data that
    /// no session refers to. Returns how many were removed.
    pub async fn sweep(&self) -> Result<usize> {
        self.sweep_with(false, self.max_age).await
    }

    /// [`Uploads::sweep`], also removing the upload files no session owns (left by a crash)
    /// once they are `orphan_age` old; with `dry_run`, only counts what it would remove.
    pub async fn sweep_with(&self, dry_run: bool, orphan_age: Duration) -> Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(self.max_age)
            .unwrap_or(UNIX_EPOCH);
        let orphan_cutoff = SystemTime::now()
            .checked_sub(orphan_age)
            .unwrap_or(UNIX_EPOCH);
        let stored: HashMap<UploadId, SystemTime> =
            self.blobs.list_uploads().await?.into_iter().collect();
        let records = self.metadata.uploads().await?;
        let at = |unix: i64| UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
        let mut removed = 0;
        for record in &records {
            let recorded = at(record.created_at.max(record.updated_at.unwrap_or(0)));
            let last_active = stored
                .get(&record.id)
                .copied()
                .unwrap_or(recorded)
                .max(recorded);
            if last_active < cutoff {
                if !dry_run {
                    self.forget(&record.id).await?;
                }
                removed += 1;
            }
        }
        let recorded: HashSet<UploadId> = records.iter().map(|r| r.id).collect();
        // A session started since the rows were read may lose its cached state here, which
        // costs it one rebuild of an empty state.
        self.sessions.retain_recorded(&recorded);
        for (id, modified) in stored {
            if !recorded.contains(&id) && modified < orphan_cutoff {
                if !dry_run {
                    self.blobs.abort_upload(&id).await?;
                }
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::*;
    use crate::blob::{BlobStore, FsBlobStore};
    use crate::metadata::{MetadataStore, SqliteMetadata};
    use crate::{Registry, RegistryConfig, UploadId};

    /// The file system store, counting how often an upload's data is read back (hashed
    /// again).
    struct Counting {
        inner: FsBlobStore,
        reads: AtomicUsize,
        /// Fail the next commit, as a full disk would.
        fail_commit: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl BlobStore for Counting {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        async fn stat(&self, digest: &Digest) -> std::io::Result<Option<u64>> {
            self.inner.stat(digest).await
        }
        async fn read(
            &self,
            digest: &Digest,
            range: Option<Range<u64>>,
        ) -> std::io::Result<Option<ByteStream<'static>>> {
            self.inner.read(digest, range).await
        }
        async fn delete(&self, digest: &Digest) -> std::io::Result<bool> {
            self.inner.delete(digest).await
        }
        async fn create_upload(&self, id: &UploadId) -> std::io::Result<()> {
            self.inner.create_upload(id).await
        }
        async fn append_upload(
            &self,
            id: &UploadId,
            offset: u64,
            body: ByteStream<'_>,
        ) -> Result<u64, AppendError> {
            self.inner.append_upload(id, offset, body).await
        }
        async fn upload_len(&self, id: &UploadId) -> std::io::Result<Option<u64>> {
            self.inner.upload_len(id).await
        }
        async fn read_upload(&self, id: &UploadId) -> std::io::Result<ByteStream<'static>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.read_upload(id).await
        }
        async fn commit_upload(
            &self,
            id: &UploadId,
            digest: &Digest,
            len: u64,
        ) -> std::io::Result<()> {
            if self.fail_commit.swap(false, Ordering::SeqCst) {
                return Err(std::io::ErrorKind::StorageFull.into());
            }
            self.inner.commit_upload(id, digest, len).await
        }
        async fn put(&self, digest: &Digest, bytes: Bytes) -> std::io::Result<()> {
            self.inner.put(digest, bytes).await
        }
        async fn abort_upload(&self, id: &UploadId) -> std::io::Result<()> {
            self.inner.abort_upload(id).await
        }
        async fn list_uploads(&self) -> std::io::Result<Vec<(UploadId, SystemTime)>> {
            self.inner.list_uploads().await
        }
        async fn list_blobs(&self) -> std::io::Result<Vec<(Digest, u64, SystemTime)>> {
            self.inner.list_blobs().await
        }
    }

    /// Two "nodes" (registries with their own memory) over the same stores.
    struct Shared {
        _dir: tempfile::TempDir,
        blobs: Arc<Counting>,
        metadata: Arc<SqliteMetadata>,
    }

    impl Shared {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let blobs = Arc::new(Counting {
                inner: FsBlobStore::open(dir.path()).unwrap(),
                reads: AtomicUsize::new(0),
                fail_commit: false.into(),
            });
            let metadata = Arc::new(
                SqliteMetadata::open(&dir.path().join("metadata.db"))
                    .await
                    .unwrap(),
            );
            Shared {
                _dir: dir,
                blobs,
                metadata,
            }
        }

        fn node(&self) -> Registry {
            Registry::new(
                Arc::clone(&self.blobs) as Arc<dyn BlobStore>,
                Arc::clone(&self.metadata) as Arc<dyn MetadataStore>,
                RegistryConfig::default(),
            )
        }

        fn rehashes(&self) -> usize {
            self.blobs.reads.load(Ordering::SeqCst)
        }
    }

    fn body(bytes: &'static [u8]) -> ByteStream<'static> {
        futures_util::stream::iter([Ok(Bytes::from_static(bytes))]).boxed()
    }

    fn repo() -> RepositoryName {
        RepositoryName::parse("a", 255).unwrap()
    }

    /// A session started on `node`, holding `first`.
    async fn session(node: &Registry, first: &'static [u8]) -> UploadId {
        let id = node.uploads().start(&repo()).await.unwrap();
        let len = node
            .uploads()
            .append(&repo(), &id, Some(0), body(first))
            .await;
        assert_eq!(len.unwrap(), first.len() as u64);
        id
    }

    #[tokio::test]
    async fn another_node_continues_a_session_without_hashing_again() {
        let shared = Shared::new().await;
        let (one, two) = (shared.node(), shared.node());
        let id = one.uploads().start(&repo()).await.unwrap();
        assert_eq!(
            one.uploads()
                .append(&repo(), &id, Some(0), body(b"hello "))
                .await
                .unwrap(),
            6
        );
        assert_eq!(two.uploads().offset(&repo(), &id).await.unwrap(), 6);
        assert_eq!(
            two.uploads()
                .append(&repo(), &id, Some(6), body(b"world"))
                .await
                .unwrap(),
            11
        );
        one.uploads()
            .finish(&repo(), &id, &Digest::sha256(b"hello world"), None)
            .await
            .unwrap();
        assert_eq!(shared.rehashes(), 0, "the state came from the row");
        assert_eq!(
            one.blob(&repo(), &Digest::sha256(b"hello world"))
                .await
                .unwrap()
                .size,
            11
        );
    }

    #[tokio::test]
    async fn a_session_ended_elsewhere_is_forgotten_here_at_the_next_sweep() {
        let shared = Shared::new().await;
        let (one, two) = (shared.node(), shared.node());
        let id = session(&one, b"abc").await;
        two.uploads()
            .finish(&repo(), &id, &Digest::sha256(b"abc"), None)
            .await
            .unwrap();
        assert!(one.uploads.sessions.map().contains_key(&id));
        let open = one.uploads().start(&repo()).await.unwrap();
        one.uploads().sweep().await.unwrap();
        assert!(!one.uploads.sessions.map().contains_key(&id));
        assert!(
            one.uploads.sessions.map().contains_key(&open),
            "a live session stays"
        );
    }

    #[tokio::test]
    async fn a_writer_behind_the_row_gets_416_and_corrupts_nothing() {
        let shared = Shared::new().await;
        let (one, two) = (shared.node(), shared.node());
        let id = session(&one, b"abc").await;
        two.uploads()
            .append(&repo(), &id, Some(3), body(b"def"))
            .await
            .unwrap();
        // `one` still believes the session holds 3 bytes.
        let err = one
            .uploads()
            .append(&repo(), &id, Some(3), body(b"xyz"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::UploadRangeInvalid { offset: 6 }),
            "{err:?}"
        );
        one.uploads()
            .append(&repo(), &id, None, body(b"ghi"))
            .await
            .unwrap();
        two.uploads()
            .finish(&repo(), &id, &Digest::sha256(b"abcdefghi"), None)
            .await
            .unwrap();
        assert_eq!(shared.rehashes(), 0);
    }

    #[tokio::test]
    async fn the_conditional_update_refuses_a_stale_offset() {
        let shared = Shared::new().await;
        let one = shared.node();
        let id = session(&one, b"abc").await;
        let before = shared.metadata.upload(&id).await.unwrap().unwrap();
        assert!(
            !shared
                .metadata
                .update_upload(&id, 0, 10, Some(b"x"))
                .await
                .unwrap()
        );
        let after = shared.metadata.upload(&id).await.unwrap().unwrap();
        assert_eq!(after, before, "a refused update changes nothing");
    }

    #[tokio::test]
    async fn a_row_without_state_is_rebuilt_once_from_the_bytes() {
        let shared = Shared::new().await;
        let one = shared.node();
        let id = session(&one, b"abc").await;
        // A session from before states were stored.
        assert!(
            shared
                .metadata
                .update_upload(&id, 3, 3, None)
                .await
                .unwrap()
        );
        let two = shared.node();
        two.uploads()
            .append(&repo(), &id, Some(3), body(b"def"))
            .await
            .unwrap();
        two.uploads()
            .append(&repo(), &id, Some(6), body(b"ghi"))
            .await
            .unwrap();
        two.uploads()
            .finish(&repo(), &id, &Digest::sha256(b"abcdefghi"), None)
            .await
            .unwrap();
        assert_eq!(shared.rehashes(), 1);
    }

    #[tokio::test]
    async fn bytes_stored_past_the_row_after_a_crash_are_the_truth() {
        let shared = Shared::new().await;
        let one = shared.node();
        let id = session(&one, b"abc").await;
        // The process died after storing an append and before recording it.
        shared
            .blobs
            .append_upload(&id, 3, body(b"def"))
            .await
            .unwrap();
        let two = shared.node();
        assert_eq!(two.uploads().offset(&repo(), &id).await.unwrap(), 6);
        two.uploads()
            .finish(&repo(), &id, &Digest::sha256(b"abcdef"), None)
            .await
            .unwrap();
        assert_eq!(shared.rehashes(), 1);
    }

    /// Bytes an abandoned append (its request gone) left past what this node hashed are
    /// not published under the digest of the bytes before them.
    #[tokio::test]
    async fn a_blob_holds_exactly_the_bytes_its_digest_was_checked_over() {
        let shared = Shared::new().await;
        let one = shared.node();
        let id = session(&one, b"abc").await;
        // An append whose request was dropped: its bytes landed, its progress was never
        // recorded, and this node's state still says 3 bytes.
        shared
            .blobs
            .append_upload(&id, 3, body(b"def"))
            .await
            .unwrap();
        let digest = Digest::sha256(b"abc");
        one.uploads()
            .finish(&repo(), &id, &digest, None)
            .await
            .unwrap();
        assert_eq!(one.blob(&repo(), &digest).await.unwrap().size, 3);
        let stored = shared.blobs.read(&digest, None).await.unwrap().unwrap();
        let bytes: Vec<u8> = stored
            .map(|c| c.unwrap())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(bytes, b"abc", "the blob is the bytes its digest names");
    }

    #[tokio::test]
    async fn a_failed_completion_keeps_the_last_chunk_for_a_retry() {
        let shared = Shared::new().await;
        let one = shared.node();
        let id = session(&one, b"abc").await;
        shared.blobs.fail_commit.store(true, Ordering::SeqCst);
        let digest = Digest::sha256(b"abcdef");
        let full = one
            .uploads()
            .finish(&repo(), &id, &digest, Some((Some(3), body(b"def"))))
            .await
            .unwrap_err();
        assert!(matches!(full, RegistryError::StorageFull(_)), "{full:?}");
        // The retry may reach another node: the row knows the last chunk.
        let two = shared.node();
        assert_eq!(two.uploads().offset(&repo(), &id).await.unwrap(), 6);
        two.uploads()
            .finish(&repo(), &id, &digest, None)
            .await
            .unwrap();
        assert_eq!(shared.rehashes(), 0);
    }

    #[tokio::test]
    async fn a_digest_mismatch_cancels_the_session() {
        let shared = Shared::new().await;
        let one = shared.node();
        let id = session(&one, b"abc").await;
        let wrong = one
            .uploads()
            .finish(
                &repo(),
                &id,
                &Digest::sha256(b"nope"),
                Some((Some(3), body(b"d"))),
            )
            .await
            .unwrap_err();
        assert!(matches!(wrong, RegistryError::DigestMismatch { .. }));
        assert!(
            matches!(
                one.uploads().offset(&repo(), &id).await,
                Err(RegistryError::UploadUnknown(_))
            ),
            "a digest mismatch cancels the session"
        );
    }
}
