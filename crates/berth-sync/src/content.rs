//! Content sync, parent to child: the instance follows its parent's change log and makes its
//! own repositories hold what the parent's hold.
//!
//! The parent's gateway serves its change log (`messages`), limited to the repositories this
//! instance's sync token may pull. For each change the instance fetches, through the parent's
//! registry API and with the same token, what it lacks: a manifest and, depth first, every blob
//! and child manifest it references (only blobs the instance holds nowhere cross the link);
//! then it stores the manifest, moves the tag, or deletes, exactly as the change says.
//!
//! Invariants: every change is idempotent (storing a manifest or a tag it already has, or
//! deleting what is gone, changes nothing), and the position in the parent's log is saved
//! only after the changes before it were applied; so a sync cut at any moment resumes where
//! it stopped and applies each change exactly once in effect. What the instance stores goes
//! through its own registry, with every check of a push (digests, references), into its own
//! change log, which its own children follow in turn.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Digest, Manifest, Reference, RepositoryName, Tag, media_type};
use berth_registry::{ChangeAction, Origin, Registry, RegistryError, UploadId};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;

use std::sync::atomic::{AtomicBool, Ordering};

use berth_auth::connected::{StatusDetail, SyncSettings};
use chrono::Utc;

use crate::client::{LONG_POLL, ParentClient};
use crate::position::Position;
use crate::schedule::{Gate, Schedule};
use crate::throttle::{LinkSettings, Throttle, paced};

/// Every manifest type the registry stores, for `Accept`.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json";

/// Why applying a change failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The parent could not be reached or answered an error.
    #[error("the parent: {0}")]
    Parent(String),
    /// The local registry refused or failed.
    #[error("the local registry: {0}")]
    Local(#[from] RegistryError),
    /// Saving the position failed.
    #[error("sync position: {0}")]
    Io(#[from] io::Error),
}

#[derive(Deserialize)]
struct Messages {
    events: Vec<berth_registry::Change>,
    last: i64,
    #[serde(default)]
    expired: bool,
}

#[derive(Deserialize)]
struct Catalog {
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Vec<String>,
}

/// A blob in a repository: (repository, digest).
type BlobKey = (String, String);

/// Follows the parent's change log into the local registry.
pub struct ContentSync {
    registry: Arc<Registry>,
    client: ParentClient,
    name: String,
    position: Position,
    /// The link's bandwidth pacing, shared with the upstream direction.
    throttle: Arc<Throttle>,
    /// The link's limits now: bandwidth (bytes per second) and blob transfers at once.
    limits: Arc<dyn Fn() -> LinkSettings + Send + Sync>,
    /// Where lasting problems are reported (the instance's status details).
    report: Arc<dyn Fn(StatusDetail) + Send + Sync>,
    /// Blob transfers cut part way, to resume: (repository, digest) -> upload session.
    partial: std::sync::Mutex<std::collections::HashMap<BlobKey, UploadId>>,
    /// Blob transfers under way, so two manifests sharing a blob fetch it once, in turn
    /// (two at once would append to the same session).
    in_flight: std::sync::Mutex<std::collections::HashMap<BlobKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl ContentSync {
    /// A follower for connected registry `name`, keeping its position in `data_dir`, moving
    /// blobs within the link's `limits` (paced by `throttle`).
    pub fn new(
        registry: Arc<Registry>,
        client: ParentClient,
        name: String,
        data_dir: &std::path::Path,
        throttle: Arc<Throttle>,
        limits: Arc<dyn Fn() -> LinkSettings + Send + Sync>,
        report: Arc<dyn Fn(StatusDetail) + Send + Sync>,
    ) -> Self {
        ContentSync {
            report,
            throttle,
            limits,
            registry,
            client,
            name,
            position: Position::new(data_dir, "sync-position"),
            partial: Default::default(),
            in_flight: Default::default(),
        }
    }

    /// Runs forever: waits for changes at the parent and applies them, when the schedule
    /// allows (`settings` gives the current sync settings), retrying with backoff while the
    /// parent is unreachable. `syncing` is set during a scheduled run; `config_changes` wakes a
    /// wait for the next tick when the configuration changes; `on_synced` is called
    /// after each applied batch and at the end of each run.
    pub async fn run(
        self,
        schedule: Schedule,
        settings: impl Fn() -> Option<SyncSettings> + Send + Sync,
        syncing: Arc<AtomicBool>,
        mut config_changes: tokio::sync::watch::Receiver<u64>,
        on_synced: impl Fn() + Send + Sync,
    ) {
        let mut backoff = Duration::from_millis(200);
        let mut failures = 0u32;
        loop {
            let Some(settings) = settings() else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let (wait, until) = match schedule.gate(&settings, Utc::now()) {
                Gate::Open => (LONG_POLL, None),
                Gate::OpenUntil(end) => (Duration::ZERO, Some(end)),
                Gate::ClosedUntil(next) => {
                    let pause = (next - Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .min(Duration::from_secs(30));
                    // Until the tick, or until the configuration (maybe the schedule) changes.
                    config_changes.mark_unchanged();
                    tokio::select! {
                        () = tokio::time::sleep(pause.max(Duration::from_millis(100))) => {}
                        _ = config_changes.changed() => {}
                    }
                    continue;
                }
            };
            syncing.store(until.is_some(), Ordering::Relaxed);
            match self.step(wait).await {
                Ok(applied) => {
                    backoff = Duration::from_millis(200);
                    failures = 0;
                    if applied {
                        on_synced();
                    }
                    // A scheduled run ends when it caught up or its window closed; what is
                    // left goes on at the next tick.
                    if let Some(end) = until
                        && (!applied || Utc::now() >= end)
                    {
                        schedule.mark_run(Utc::now());
                        syncing.store(false, Ordering::Relaxed);
                        on_synced();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "content sync failed; retrying");
                    failures += 1;
                    // A failure that persists is a status detail at the root, not a silent loop.
                    if failures == 3 {
                        (self.report)(StatusDetail {
                            code: "SYNC_FAILING".into(),
                            description: e.to_string(),
                            at: Utc::now().timestamp(),
                        });
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// One poll (a long poll of `wait`) and the changes it brought. Returns whether anything was applied.
    pub async fn step(&self, wait: Duration) -> Result<bool, SyncError> {
        let after = self.position.get();
        let path = format!(
            "/berth/gateway/v1/{}/messages?after={after}&wait={}",
            self.name,
            wait.as_secs()
        );
        let response = self
            .client
            .get(&path, None)
            .await
            .map_err(|e| SyncError::Parent(e.to_string()))?;
        let messages: Messages = response
            .json()
            .await
            .map_err(|e| SyncError::Parent(e.to_string()))?;
        if messages.expired {
            // Our position fell out of the parent's change log (older than its retention):
            // compare content instead, then follow the log from where it stands.
            self.catch_up().await?;
            self.position.set(messages.last)?;
            return Ok(true);
        }
        let applied = !messages.events.is_empty();
        for change in &messages.events {
            self.apply(change).await?;
            // A position is never saved ahead of what was applied.
            self.position.set(change.seq)?;
        }
        if messages.last > after {
            self.position.set(messages.last)?;
        }
        Ok(applied)
    }

    async fn apply(&self, change: &berth_registry::Change) -> Result<(), SyncError> {
        let repository = self.registry.repository_name(&change.repository)?;
        let digest = change.digest.as_deref().map(Registry::digest).transpose()?;
        let tag = change
            .tag
            .as_deref()
            .map(Tag::parse)
            .transpose()
            .map_err(RegistryError::TagInvalid)?;
        tracing::debug!(seq = change.seq, repository = %repository, action = ?change.action, "applying");
        match (change.action, digest, tag) {
            (ChangeAction::ManifestPut, Some(digest), _) => {
                self.ensure_manifest(&repository, &digest).await?;
            }
            (ChangeAction::TagPut, Some(digest), Some(tag)) => {
                self.ensure_manifest(&repository, &digest).await?;
                self.tag_from_parent(&repository, digest, tag).await?;
            }
            (ChangeAction::TagDelete, _, Some(tag)) => ignore_unknown(
                self.registry
                    .delete_manifest_from(Origin::Parent, &repository, &Reference::Tag(tag))
                    .await,
            )?,
            (ChangeAction::ManifestDelete, Some(digest), _) => ignore_unknown(
                self.registry
                    .delete_manifest_from(Origin::Parent, &repository, &Reference::Digest(digest))
                    .await,
            )?,
            _ => tracing::warn!(
                seq = change.seq,
                "skipping a change the parent sent incomplete"
            ),
        }
        Ok(())
    }

    /// Brings every repository the parent lets us pull to the parent's tags, by comparison:
    /// each tag's manifest is fetched if missing and the tag moved if it differs; on a
    /// ReadOnly mirror, tags the parent no longer has are removed (a ReadWrite registry keeps
    /// its own, which it sends up).
    async fn catch_up(&self) -> Result<(), SyncError> {
        tracing::warn!(
            "the parent's change log no longer holds this registry's position; catching up by comparing content"
        );
        let mut last: Option<String> = None;
        loop {
            let path = match &last {
                None => "/v2/_catalog?n=500".to_owned(),
                Some(l) => format!("/v2/_catalog?n=500&last={l}"),
            };
            let response = self
                .client
                .get(&path, None)
                .await
                .map_err(|e| SyncError::Parent(e.to_string()))?;
            let catalog: Catalog = response
                .json()
                .await
                .map_err(|e| SyncError::Parent(e.to_string()))?;
            for name in &catalog.repositories {
                self.catch_up_repository(name).await?;
            }
            if catalog.repositories.len() < 500 {
                return Ok(());
            }
            last = catalog.repositories.last().cloned();
        }
    }

    async fn catch_up_repository(&self, name: &str) -> Result<(), SyncError> {
        let repository = self.registry.repository_name(name)?;
        let response = self
            .client
            .get(&format!("/v2/{name}/tags/list"), None)
            .await
            .map_err(|e| SyncError::Parent(e.to_string()))?;
        let parent_tags: TagList = response
            .json()
            .await
            .map_err(|e| SyncError::Parent(e.to_string()))?;
        for tag in &parent_tags.tags {
            let head = self
                .client
                .head(&format!("/v2/{name}/manifests/{tag}"), ACCEPT)
                .await
                .map_err(|e| SyncError::Parent(e.to_string()))?;
            let Some(digest) = head
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
            else {
                continue;
            };
            let digest = Registry::digest(digest)?;
            self.ensure_manifest(&repository, &digest).await?;
            let tag = Tag::parse(tag).map_err(RegistryError::TagInvalid)?;
            let current = self
                .registry
                .manifest(&repository, &Reference::Tag(tag.clone()))
                .await
                .ok()
                .map(|m| m.digest.clone());
            if current.as_ref() != Some(&digest) {
                self.tag_from_parent(&repository, digest, tag).await?;
            }
        }
        if (self.limits)().read_only
            && let Ok(local_tags) = self.registry.tags(&repository, None, u32::MAX - 1).await
        {
            for tag in local_tags.iter().filter(|t| !parent_tags.tags.contains(t)) {
                let tag = Tag::parse(tag).map_err(RegistryError::TagInvalid)?;
                ignore_unknown(
                    self.registry
                        .delete_manifest_from(Origin::Parent, &repository, &Reference::Tag(tag))
                        .await,
                )?;
            }
        }
        Ok(())
    }

    /// Makes sure the local repository holds manifest `digest` and everything it references.
    async fn ensure_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), SyncError> {
        // Depth-first over an index's children; an explicit stack keeps deep trees cheap.
        let mut pending = vec![(digest.clone(), false)];
        while let Some((digest, children_done)) = pending.pop() {
            match self
                .registry
                .manifest(repository, &Reference::Digest(digest.clone()))
                .await
            {
                Ok(_) => continue,
                Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let (content, content_type) = self.fetch_manifest(repository, &digest).await?;
            let manifest = Manifest::parse(&content, Some(&content_type))
                .map_err(RegistryError::ManifestInvalid)?;
            if !children_done {
                let missing_children: Vec<Digest> = manifest
                    .required_manifests()
                    .iter()
                    .map(|d| d.digest.clone())
                    .collect();
                if !missing_children.is_empty() {
                    pending.push((digest.clone(), true));
                    pending.extend(missing_children.into_iter().map(|d| (d, false)));
                    continue;
                }
            }
            // Blobs in parallel, as many at once as the link allows.
            let concurrency = (self.limits)().concurrency;
            futures_util::stream::iter(
                manifest
                    .required_blobs()
                    .map(|b| b.digest.clone())
                    .collect::<Vec<_>>(),
            )
            .map(|digest| async move { self.ensure_blob(repository, &digest).await })
            .buffer_unordered(concurrency.max(1) as usize)
            .try_collect::<Vec<()>>()
            .await?;
            let media_type = manifest.media_type.clone();
            self.registry
                .put_manifest_from(
                    Origin::Parent,
                    repository,
                    &Reference::Digest(digest),
                    Some(&media_type),
                    content,
                    Vec::new(),
                )
                .await?;
        }
        Ok(())
    }

    async fn fetch_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(bytes::Bytes, String), SyncError> {
        let response = self
            .client
            .get(
                &format!("/v2/{repository}/manifests/{digest}"),
                Some(ACCEPT),
            )
            .await
            .map_err(|e| SyncError::Parent(e.to_string()))?;
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(media_type::OCI_MANIFEST)
            .to_owned();
        let content = response
            .bytes()
            .await
            .map_err(|e| SyncError::Parent(e.to_string()))?;
        Ok((content, content_type))
    }

    /// Makes sure the local repository may read blob `digest`: linked from another local
    /// repository when the bytes are already here, else streamed from the parent and checked.
    /// A transfer cut part way is resumed from the bytes already received (`Range`), and the
    /// digest is still checked over the whole blob.
    async fn ensure_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), SyncError> {
        let key = (repository.to_string(), digest.to_string());
        let turn = Arc::clone(
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key.clone())
                .or_default(),
        );
        let held = turn.lock().await;
        let result = self.fetch_blob(repository, digest, key.clone()).await;
        drop(held);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map and this call hold it: nobody waits for this blob any more.
        if Arc::strong_count(&turn) == 2 {
            in_flight.remove(&key);
        }
        result
    }

    /// [`Self::ensure_blob`] for the one caller whose turn it is.
    async fn fetch_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        key: BlobKey,
    ) -> Result<(), SyncError> {
        if self.registry.blob(repository, digest).await.is_ok()
            || self.registry.adopt_blob(repository, digest).await?
        {
            return Ok(());
        }
        let resumable = self
            .partial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        let (id, offset) = match resumable {
            Some(id) => match self.registry.upload_offset(repository, &id).await {
                Ok(offset) => (id, offset),
                Err(_) => (self.registry.start_upload(repository).await?, 0),
            },
            None => (self.registry.start_upload(repository).await?, 0),
        };
        self.partial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), id);
        let path = format!("/v2/{repository}/blobs/{digest}");
        // A transfer cut just after its last byte holds the whole blob already: asking the
        // parent for the bytes after it would be refused (416) on every attempt.
        let complete = offset > 0 && self.parent_blob_size(&path).await? <= offset;
        if !complete {
            self.fetch_into(repository, &id, &path, offset, &key)
                .await?;
        }
        self.partial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let finished = self
            .registry
            .finish_upload(repository, &id, digest, None)
            .await;
        if finished.is_err() {
            let _ = self.registry.cancel_upload(repository, &id).await;
        }
        Ok(finished?)
    }
}

impl ContentSync {
    /// Points `tag` at manifest `digest`, held here already, as the parent's change.
    async fn tag_from_parent(
        &self,
        repository: &RepositoryName,
        digest: Digest,
        tag: Tag,
    ) -> Result<(), SyncError> {
        let local = self
            .registry
            .manifest(repository, &Reference::Digest(digest.clone()))
            .await?;
        self.registry
            .put_manifest_from(
                Origin::Parent,
                repository,
                &Reference::Digest(digest),
                Some(&local.media_type),
                local.content.clone(),
                vec![tag],
            )
            .await?;
        Ok(())
    }

    /// The size of a blob at the parent, from `HEAD`.
    async fn parent_blob_size(&self, path: &str) -> Result<u64, SyncError> {
        let response = self
            .client
            .head(path, "*/*")
            .await
            .map_err(|e| SyncError::Parent(e.to_string()))?;
        response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| SyncError::Parent(format!("{path}: HEAD answered without a length")))
    }

    /// Appends the blob's bytes from `offset` on, as the parent sends them, to upload `id`.
    async fn fetch_into(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
        path: &str,
        offset: u64,
        key: &BlobKey,
    ) -> Result<(), SyncError> {
        let response = self
            .client
            .get_from(path, offset)
            .await
            .map_err(|e| SyncError::Parent(e.to_string()))?;
        if offset > 0 && response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            // The parent sent the whole blob: start this transfer over.
            self.partial
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
            let _ = self.registry.cancel_upload(repository, id).await;
            return Err(SyncError::Parent(format!(
                "{path}: the parent ignored the range request; starting over"
            )));
        }
        if offset > 0 {
            tracing::info!(path, offset, "resuming a blob transfer");
        }
        let bandwidth = (self.limits)().bandwidth;
        let body = paced(
            &self.throttle,
            response.bytes_stream().map_err(io::Error::other),
            bandwidth,
        )
        .boxed();
        // On a cut the bytes received so far stay in the session, for the next attempt.
        self.registry
            .append_upload(repository, id, Some(offset), body)
            .await?;
        Ok(())
    }
}

fn ignore_unknown(result: Result<(), RegistryError>) -> Result<(), SyncError> {
    match result {
        Ok(()) | Err(RegistryError::ManifestUnknown(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
