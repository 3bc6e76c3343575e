//! One import's work: the image (or index, with every child, and optionally its
//! referrers) copied from the source into one repository of the local registry, through the
//! registry's own push path so that every check of a push applies.
//!
//! In three phases, so that nothing is transferred for an image that cannot be imported
//! whole, and totals are known before the bytes move:
//!
//! 1. **Manifests.** The root, by tag or digest, then depth first every child of an index,
//!    then (when asked) the referrers of each manifest so far, and theirs, through the
//!    referrers API. Each is digest-checked and parsed as a push would be. A child the
//!    repository holds already is not fetched: it is whole, children included.
//! 2. **Blobs.** Every blob the manifests reference, once: linked when the repository holds
//!    it, adopted when another repository does (`Registry::adopt_blob`, no bytes move), else
//!    streamed from the source into an upload session (a few at a time), never buffered,
//!    checked against the descriptor's size as it arrives and against its digest at the end
//!    (`Uploads::finish`). A transfer cut part way resumes from the bytes received, with
//!    `Range`, when the source allows it.
//! 3. **Store.** Every blob linked again first (garbage collection keeps a blob no manifest
//!    references for its grace after its last link: so the first blobs of a long import are
//!    not collected while the last arrive; one collected all the same is fetched again).
//!    Then children and referrers by digest, depth first, then the root by digest with the
//!    tags, in one transaction: a tag appears only once everything under it is stored, and
//!    `put_manifest` checks that it is. A manifest refused because a collection took what
//!    it references in between (a retention rule deleting a child not yet in its index)
//!    makes this phase run once more.
//!
//! What the import stores is a local push: it goes into the change log with origin `local`,
//! so a ReadWrite connected registry sends it up like any push.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use berth_oci::manifest::Manifest;
use berth_oci::{Digest, Reference, RepositoryName, Tag};
use berth_registry::{Origin, Registry, RegistryError, UploadId};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;

use tokio_util::sync::CancellationToken;

use crate::client::{FetchedManifest, RETRIES, SourceClient, backoff, content_length};
use crate::error::ImportError;
use crate::job::{Progress, Resolved};

/// What to copy where, and how.
pub(crate) struct Plan {
    /// The local repository.
    pub repository: RepositoryName,
    /// The tags to point at the root.
    pub tags: Vec<Tag>,
    /// Copy the referrers too.
    pub include_referrers: bool,
    /// Move tags that point at other manifests.
    pub force: bool,
    /// Blob transfers at once.
    pub concurrency: usize,
    /// The most manifest bytes held at once (all of an import's manifests are).
    pub max_manifest_bytes: usize,
}

/// Upload sessions this import has open, cancelled if it fails or is cancelled, so that
/// no upload file waits for the sweeper.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<Vec<UploadId>>);

impl Sessions {
    fn add(&self, id: UploadId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(id);
    }

    fn remove(&self, id: &UploadId) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s != id);
    }

    /// Cancels every session still open.
    pub(crate) async fn cancel_all(&self, registry: &Registry, repository: &RepositoryName) {
        let open = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for id in open {
            if let Err(e) = registry.uploads().cancel(repository, &id).await {
                tracing::debug!(upload = %id, error = %e, "could not cancel an import's upload session");
            }
        }
    }
}

/// A manifest fetched and parsed.
struct Node {
    fetched: FetchedManifest,
    manifest: Manifest,
}

/// One import's copy.
pub(crate) struct Copy<'a> {
    pub registry: &'a Registry,
    pub client: &'a SourceClient,
    pub plan: &'a Plan,
    pub progress: &'a Progress,
    pub sessions: &'a Sessions,
    /// Cancelled when the import is (by the admin, or by the registry stopping).
    pub stop: &'a CancellationToken,
}

impl Copy<'_> {
    /// Runs the three phases; returns the root's digest and media type.
    ///
    /// A cancellation stops it at the next await. Reading the source and storing manifests
    /// may stop anywhere (a manifest is stored in one transaction); a blob transfer stops
    /// only around the registry's upload calls, never inside one, and cancels its session
    /// itself, so that no upload is left to the sweeper.
    pub(crate) async fn run(&self) -> Result<Resolved, ImportError> {
        let (resolved, mut order) = self.stoppable(self.manifests()).await?;

        // 2. Blobs, each once.
        let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
        for node in &order {
            for blob in node.manifest.required_blobs() {
                blobs.entry(blob.digest.clone()).or_insert(blob.size);
            }
        }
        self.progress
            .blobs
            .store(blobs.len() as u64, Ordering::Relaxed);
        let repository = &self.plan.repository;
        let mut to_fetch = Vec::new();
        for (digest, size) in &blobs {
            self.stopped()?;
            // Linked here already, or stored for another repository: no byte moves.
            if self.registry.adopt_blob(repository, digest).await? {
                self.progress.blobs_done.fetch_add(1, Ordering::Relaxed);
                self.progress.blobs_reused.fetch_add(1, Ordering::Relaxed);
            } else {
                self.progress.bytes.fetch_add(*size, Ordering::Relaxed);
                to_fetch.push((digest.clone(), *size));
            }
        }
        self.fetch_all(to_fetch).await?;

        // 3. Manifests, children first; the root last, with its tags. Once more if a
        //    garbage collection took something from under the import meanwhile.
        let root = order.pop().expect("the root is last");
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.refresh(&blobs).await?;
            match self
                .stoppable(self.store_all(&order, &root, &resolved.digest))
                .await
            {
                Err(ImportError::Local(RegistryError::ManifestReferenceUnknown(missing)))
                    if attempt == 1 =>
                {
                    tracing::info!(repository = %repository, missing = %missing, "content an import stored was collected before its manifest; storing it again");
                }
                result => return result.map(|()| resolved),
            }
        }
    }

    /// `work`, unless the import is cancelled first (`work` is dropped then).
    async fn stoppable<T>(
        &self,
        work: impl Future<Output = Result<T, ImportError>>,
    ) -> Result<T, ImportError> {
        until(self.stop, work).await
    }

    fn stopped(&self) -> Result<(), ImportError> {
        if self.stop.is_cancelled() {
            Err(ImportError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// 1. Every manifest: the root, its tree post-order, the referrers (when asked for),
    ///    then the root again, last. Reads only.
    async fn manifests(&self) -> Result<(Resolved, Vec<Node>), ImportError> {
        let max = self.registry.config().max_manifest_size;
        let reference = self.client.source().reference();
        let root = self.node(self.client.manifest(&reference, max).await?)?;
        let resolved = Resolved {
            digest: root.fetched.digest.clone(),
            media_type: root.manifest.media_type.clone(),
        };
        self.progress.resolved(resolved.clone());
        self.check_tags(&resolved.digest).await?;

        let repository = &self.plan.repository;
        let mut seen = HashSet::new();
        let mut held = 0usize;
        let mut order = Vec::new();
        let mut present = Vec::new();
        self.collect(root, &mut order, &mut present, &mut seen, &mut held)
            .await?;
        let root = order.pop().expect("the root was collected");
        if self.plan.include_referrers {
            let mut subjects: Vec<Digest> = order
                .iter()
                .map(|n| n.fetched.digest.clone())
                .chain(present.iter().cloned())
                .chain(std::iter::once(root.fetched.digest.clone()))
                .collect();
            while let Some(subject) = subjects.pop() {
                for referrer in self.client.referrers(&subject, max).await? {
                    if seen.contains(&referrer.digest) {
                        continue;
                    }
                    let reference = Reference::Digest(referrer.digest.clone());
                    if self.registry.manifest(repository, &reference).await.is_ok() {
                        // Here already, whole; its own referrers may not be.
                        seen.insert(referrer.digest.clone());
                        self.progress.referrers.fetch_add(1, Ordering::Relaxed);
                        subjects.push(referrer.digest);
                        continue;
                    }
                    let before = (order.len(), present.len());
                    let fetched = self.client.manifest(&reference, max).await?;
                    let node = self.node(fetched)?;
                    self.collect(node, &mut order, &mut present, &mut seen, &mut held)
                        .await?;
                    self.progress.referrers.fetch_add(1, Ordering::Relaxed);
                    subjects.extend(order[before.0..].iter().map(|n| n.fetched.digest.clone()));
                    subjects.extend(present[before.1..].iter().cloned());
                }
            }
        }
        order.push(root);
        Ok((resolved, order))
    }

    /// Fetches blobs, a few at a time. The first failure stops the others at their next
    /// safe point (between the registry's upload calls), and they are waited for, so that
    /// every session they opened is cancelled before this returns.
    async fn fetch_all(&self, blobs: Vec<(Digest, u64)>) -> Result<(), ImportError> {
        let failed = self.stop.child_token();
        let failed = &failed;
        let results: Vec<Result<(), ImportError>> = futures_util::stream::iter(blobs)
            .map(|(digest, size)| async move {
                if failed.is_cancelled() {
                    return Err(ImportError::Cancelled);
                }
                let result = self.fetch_blob(&digest, size, failed).await;
                if result.is_err() {
                    failed.cancel();
                }
                result
            })
            .buffer_unordered(self.plan.concurrency.max(1))
            .collect()
            .await;
        let mut errors = results.into_iter().filter_map(Result::err);
        match errors.next() {
            None => Ok(()),
            // The failure that stopped the others, not their being stopped.
            Some(first) => Err(std::iter::once(first)
                .chain(errors)
                .find(|e| !matches!(e, ImportError::Cancelled))
                .unwrap_or(ImportError::Cancelled)),
        }
    }

    /// Links every blob again just before the manifests are stored. A blob only linked
    /// (no manifest references it yet) is kept by garbage collection for its grace, counted
    /// from its last link: linking restarts it, so a long import's first blobs are not
    /// collected while its last ones arrive. A blob a collection took meanwhile is fetched
    /// again.
    async fn refresh(&self, blobs: &BTreeMap<Digest, u64>) -> Result<(), ImportError> {
        let mut lost = Vec::new();
        for (digest, size) in blobs {
            self.stopped()?;
            if !self
                .registry
                .adopt_blob(&self.plan.repository, digest)
                .await?
            {
                lost.push((digest.clone(), *size));
            }
        }
        if lost.is_empty() {
            return Ok(());
        }
        tracing::info!(repository = %self.plan.repository, blobs = lost.len(), "blobs collected while an import ran are fetched again");
        for (_, size) in &lost {
            self.progress.bytes.fetch_add(*size, Ordering::Relaxed);
            self.progress.blobs_done.fetch_sub(1, Ordering::Relaxed);
        }
        self.fetch_all(lost).await
    }

    /// Stores the manifests in `order`, then `root` with the tags.
    async fn store_all(
        &self,
        order: &[Node],
        root: &Node,
        digest: &Digest,
    ) -> Result<(), ImportError> {
        for node in order {
            self.store(node, Vec::new()).await?;
        }
        self.check_tags(digest).await?;
        self.store(root, self.plan.tags.clone()).await
    }

    /// Parses a fetched manifest as a push of it would be parsed.
    fn node(&self, fetched: FetchedManifest) -> Result<Node, ImportError> {
        let manifest = Manifest::parse(&fetched.bytes, fetched.content_type.as_deref())
            // A `Content-Type` that disagrees with the manifest's own `mediaType` (some
            // registries send a generic one) does not make the manifest unreadable; the
            // first refusal is the one reported.
            .or_else(|first| Manifest::parse(&fetched.bytes, None).map_err(|_| first))
            .map_err(|error| ImportError::Manifest {
                source_image: self.client.source().image(),
                error,
            })?;
        Ok(Node { fetched, manifest })
    }

    /// Refuses to move a tag that points at another manifest, unless forced.
    async fn check_tags(&self, digest: &Digest) -> Result<(), ImportError> {
        if self.plan.force {
            return Ok(());
        }
        for tag in &self.plan.tags {
            match self
                .registry
                .manifest(&self.plan.repository, &Reference::Tag(tag.clone()))
                .await
            {
                Ok(current) if current.digest != *digest => {
                    return Err(ImportError::Conflict(format!(
                        "tag `{}:{tag}` points at `{}` already, not at `{digest}`, which the source names; pass force (--force) to move it",
                        self.plan.repository, current.digest
                    )));
                }
                Ok(_) | Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Adds `root` and, depth first, the children it lacks here to `order`, children
    /// before their index. Children the repository holds already go to `present` instead:
    /// they are whole, so nothing under them is fetched.
    async fn collect(
        &self,
        root: Node,
        order: &mut Vec<Node>,
        present: &mut Vec<Digest>,
        seen: &mut HashSet<Digest>,
        held: &mut usize,
    ) -> Result<(), ImportError> {
        if !seen.insert(root.fetched.digest.clone()) {
            return Ok(());
        }
        self.hold(held, &root)?;
        let max = self.registry.config().max_manifest_size;
        // An explicit stack: (node, index of its next child).
        let mut stack = vec![(root, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            let children = node.manifest.required_manifests();
            if *next >= children.len() {
                let (node, _) = stack.pop().expect("the stack is not empty");
                order.push(node);
                continue;
            }
            let child = children[*next].clone();
            *next += 1;
            if !seen.insert(child.digest.clone()) {
                continue;
            }
            let reference = Reference::Digest(child.digest.clone());
            if self
                .registry
                .manifest(&self.plan.repository, &reference)
                .await
                .is_ok()
            {
                present.push(child.digest);
                continue;
            }
            let fetched = self.client.manifest(&reference, max).await?;
            if fetched.bytes.len() as u64 != child.size {
                return Err(ImportError::SizeInvalid(format!(
                    "manifest `{}` of `{}` is {} bytes, but its index says {}",
                    child.digest,
                    self.client.source().image(),
                    fetched.bytes.len(),
                    child.size
                )));
            }
            let child = self.node(fetched)?;
            self.hold(held, &child)?;
            stack.push((child, 0));
        }
        Ok(())
    }

    /// Counts a manifest's bytes against what an import may hold.
    fn hold(&self, held: &mut usize, node: &Node) -> Result<(), ImportError> {
        *held += node.fetched.bytes.len();
        self.progress.manifests.fetch_add(1, Ordering::Relaxed);
        if *held > self.plan.max_manifest_bytes {
            return Err(ImportError::SizeInvalid(format!(
                "the manifests of `{}` (its children and referrers) add up to more than {} bytes, the most one import holds",
                self.client.source().image(),
                self.plan.max_manifest_bytes
            )));
        }
        Ok(())
    }

    /// Stores a manifest by digest (with `tags`, for the root), unless it is here already
    /// (and there are no tags to set).
    async fn store(&self, node: &Node, tags: Vec<Tag>) -> Result<(), ImportError> {
        let repository = &self.plan.repository;
        let reference = Reference::Digest(node.fetched.digest.clone());
        if tags.is_empty() && self.registry.manifest(repository, &reference).await.is_ok() {
            self.progress.manifests_done.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.registry
            .put_manifest_from(
                Origin::Local,
                repository,
                &reference,
                Some(&node.manifest.media_type),
                node.fetched.bytes.clone(),
                tags,
            )
            .await?;
        self.progress.manifests_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Fetches blob `digest` of `size` bytes. A garbage collection deleting the same blob
    /// at that moment makes the registry refuse to publish it for a moment: then the
    /// bytes are looked for again (placed by someone else meanwhile?) or fetched again.
    async fn fetch_blob(
        &self,
        digest: &Digest,
        size: u64,
        stop: &CancellationToken,
    ) -> Result<(), ImportError> {
        let mut attempt = 0;
        loop {
            match self.transfer(digest, size, stop).await {
                Err(ImportError::Local(RegistryError::BlobCollecting(_))) if attempt < RETRIES => {
                    attempt += 1;
                    pause(stop, backoff(attempt)).await?;
                    if self
                        .registry
                        .adopt_blob(&self.plan.repository, digest)
                        .await?
                    {
                        self.progress.blobs_done.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                }
                result => return result,
            }
        }
    }

    /// Streams blob `digest` of `size` bytes from the source into an upload session and
    /// publishes it once its digest checks out. On any failure the session is cancelled
    /// and the blob's bytes leave the progress.
    async fn transfer(
        &self,
        digest: &Digest,
        size: u64,
        stop: &CancellationToken,
    ) -> Result<(), ImportError> {
        let repository = &self.plan.repository;
        let uploads = self.registry.uploads();
        let mut session = uploads.start(repository).await?;
        self.sessions.add(session);
        // Bytes of this blob counted in the progress so far.
        let counted = Arc::new(AtomicU64::new(0));
        let result = self
            .transfer_into(&mut session, digest, size, stop, &counted)
            .await;
        match result {
            Ok(()) => {
                self.progress.blobs_done.fetch_add(1, Ordering::Relaxed);
                self.sessions.remove(&session);
                Ok(())
            }
            Err(e) => {
                self.recount(&counted, 0);
                // `finish` drops the session on a digest mismatch; any other is dropped
                // here, so that a retry starts afresh and no upload waits for the sweeper.
                if !matches!(e, ImportError::DigestMismatch { .. }) {
                    let _ = uploads.cancel(repository, &session).await;
                }
                self.sessions.remove(&session);
                Err(e)
            }
        }
    }

    /// [`Self::transfer`]'s work, into session `id` (replaced when the source cannot
    /// resume). Stops, when `stop` is cancelled, only while waiting for the source or
    /// between attempts, never inside a registry call that creates or publishes.
    async fn transfer_into(
        &self,
        id: &mut UploadId,
        digest: &Digest,
        size: u64,
        stop: &CancellationToken,
        counted: &Arc<AtomicU64>,
    ) -> Result<(), ImportError> {
        let repository = &self.plan.repository;
        let uploads = self.registry.uploads();
        let mut attempt = 0;
        loop {
            let offset = uploads.offset(repository, id).await?;
            self.recount(counted, offset);
            if offset >= size {
                break;
            }
            let response = until(stop, self.client.blob(digest, offset)).await?;
            if offset > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
                // The source sends the whole blob again: start the session over.
                uploads.cancel(repository, id).await?;
                self.sessions.remove(id);
                *id = uploads.start(repository).await?;
                self.sessions.add(*id);
                self.recount(counted, 0);
            }
            let offset = if response.status() == StatusCode::PARTIAL_CONTENT {
                offset
            } else {
                0
            };
            if let Some(length) = content_length(&response)
                && offset + length > size
            {
                return Err(self.too_long(digest, size));
            }
            let failure = Arc::new(Mutex::new(None));
            let body = Limited {
                inner: response.bytes_stream().boxed(),
                left: size - offset,
                failure: Arc::clone(&failure),
                progress: Arc::clone(&self.progress.bytes_done),
                counted: Arc::clone(counted),
            };
            // Dropping an append part way is safe: the caller cancels the session.
            let appended = until(stop, async {
                Ok(uploads
                    .append(repository, id, Some(offset), body.boxed())
                    .await)
            })
            .await?;
            let failure = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
            match (appended, failure) {
                (Ok(len), _) if len == size => break,
                (_, Some(Failure::TooLong)) => return Err(self.too_long(digest, size)),
                (Ok(_), _) | (Err(RegistryError::UploadInvalid(_)), Some(Failure::Cut(_)))
                    if attempt < RETRIES =>
                {
                    // Cut part way (or ended early): the bytes received stay in the session.
                    attempt += 1;
                    tracing::debug!(blob = %digest, attempt, "resuming a blob transfer cut part way");
                    pause(stop, backoff(attempt)).await?;
                }
                (Ok(len), _) => {
                    return Err(ImportError::Unreachable {
                        source_registry: self.client.source().registry.clone(),
                        why: format!(
                            "it sent {len} of the {size} bytes of blob `{digest}`, after {RETRIES} retries"
                        ),
                    });
                }
                (Err(RegistryError::UploadInvalid(_)), Some(Failure::Cut(why))) => {
                    return Err(ImportError::Unreachable {
                        source_registry: self.client.source().registry.clone(),
                        why: format!(
                            "the transfer of blob `{digest}` broke {} times: {why}",
                            RETRIES + 1
                        ),
                    });
                }
                (Err(e), _) => return Err(e.into()),
            }
        }
        match uploads.finish(repository, id, digest, None).await {
            Ok(()) => Ok(()),
            Err(RegistryError::DigestMismatch { expected, actual }) => {
                Err(ImportError::DigestMismatch {
                    source_image: self.client.source().image(),
                    what: "blob",
                    expected,
                    actual,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets this blob's bytes in the progress to `offset`.
    fn recount(&self, counted: &AtomicU64, offset: u64) {
        let before = counted.swap(offset, Ordering::Relaxed);
        if offset >= before {
            self.progress
                .bytes_done
                .fetch_add(offset - before, Ordering::Relaxed);
        } else {
            self.progress
                .bytes_done
                .fetch_sub(before - offset, Ordering::Relaxed);
        }
    }

    fn too_long(&self, digest: &Digest, size: u64) -> ImportError {
        ImportError::SizeInvalid(format!(
            "blob `{digest}` of `{}` is longer than the {size} bytes its descriptor says",
            self.client.source().image()
        ))
    }
}

/// Why the source's body stopped.
enum Failure {
    /// It sent more than the descriptor's size.
    TooLong,
    /// The connection broke.
    Cut(String),
}

/// A blob body from the source, refused past `left` bytes, counting what passes.
struct Limited {
    inner: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    left: u64,
    failure: Arc<Mutex<Option<Failure>>>,
    progress: Arc<AtomicU64>,
    counted: Arc<AtomicU64>,
}

impl Stream for Limited {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let len = chunk.len() as u64;
                if len > this.left {
                    *this.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Failure::TooLong);
                    return Poll::Ready(Some(Err(io::Error::other(
                        "the blob is longer than its descriptor says",
                    ))));
                }
                this.left -= len;
                this.progress.fetch_add(len, Ordering::Relaxed);
                this.counted.fetch_add(len, Ordering::Relaxed);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let why = crate::client::describe(&e);
                *this.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Failure::Cut(why.clone()));
                Poll::Ready(Some(Err(io::Error::other(why))))
            }
            other => other.map(|item| item.map(|r| r.map_err(io::Error::other))),
        }
    }
}

/// `work`, unless `stop` is cancelled first (`work` is dropped then).
async fn until<T>(
    stop: &CancellationToken,
    work: impl Future<Output = Result<T, ImportError>>,
) -> Result<T, ImportError> {
    tokio::select! {
        result = work => result,
        () = stop.cancelled() => Err(ImportError::Cancelled),
    }
}

/// Waits `wait`, unless `stop` is cancelled first.
async fn pause(stop: &CancellationToken, wait: std::time::Duration) -> Result<(), ImportError> {
    until(stop, async {
        tokio::time::sleep(wait).await;
        Ok(())
    })
    .await
}
