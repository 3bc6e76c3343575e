//! Garbage collection: frees the bytes of blobs nothing references any more, deletes what
//! retention rules say to, and removes abandoned uploads, while the registry serves.
//!
//! The argument for its safety (ARCHITECTURE.md, "Garbage collection") rests on one
//! protocol between writers and the collector, kept in the metadata store's `blobs` table:
//!
//! - a writer *claims* a blob (its row `present`, clock = now) before placing its bytes, and
//!   *links* it (clock = now again) in one transaction; a claim or a link that meets
//!   `deleting` is refused and retried, never forced;
//! - the collector picks blobs that no manifest references and whose clock is older than
//!   the grace (a repository link alone protects a blob for the grace only: a push links
//!   its layers before it puts its manifest), turns each to `deleting` and removes its links
//!   only if its row is exactly as seen and still unreferenced (one transaction), then
//!   deletes the bytes, then forgets the row.
//!
//! A writer that claimed before the collector's turn changed the clock, so the turn fails;
//! a writer that comes after it waits until the row is gone, and then places its bytes
//! again. Either way no linked blob loses its bytes, and no pushed blob is removed before it
//! could be linked. The collector works in small batches and never takes a lock the request
//! path waits on: there is no read-only window.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_oci::time::unix_now;
use berth_oci::{Reference, RepositoryName};

use crate::blob::BlobStore;
use crate::error::RegistryError;
use crate::metadata::{Exclusive, ExclusiveGuard, GcRun, MetadataStore};
use crate::registry::{Deletions, RegistryConfig};
use crate::{Origin, Uploads};

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A `deleting` mark older than this was left by a collection that stopped part way (a
/// crash): the next collection finishes it, and a writer may take it over.
pub const STALE_COLLECTION: Duration = Duration::from_secs(600);

/// An upload file with no session record for this long was left by a crash.
const ORPHAN_UPLOAD: Duration = Duration::from_secs(600);

/// Blobs examined per batch.
const BATCH: u32 = 256;

/// Blobs marked, deleted and forgotten together: two commits per step rather than per blob,
/// and a writer that meets one of them `deleting` waits for a step, not a whole batch.
const STEP: usize = 32;

/// A retention rule: in the repositories `repositories` covers, keep the newest `keep_last`
/// tags and the tags younger than `keep_within`, untag the rest; with `delete_untagged`,
/// also delete manifests left with no tag that nothing else in the repository needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    /// A repository name, `prefix/*`, or `*`.
    pub repositories: String,
    /// Keep this many tags, the most recently pushed first.
    pub keep_last: Option<u32>,
    /// Keep the tags pushed within this long.
    pub keep_within: Option<Duration>,
    /// Delete untagged manifests (not an index's child, not a referrer of a kept one).
    pub delete_untagged: bool,
}

impl RetentionRule {
    /// Whether the rule covers `repository`.
    pub fn covers(&self, repository: &str) -> bool {
        match self.repositories.as_str() {
            "*" => true,
            pattern => match pattern.strip_suffix("/*") {
                Some(prefix) => repository
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/')),
                None => pattern == repository,
            },
        }
    }
}

/// How a collection runs.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
    /// Blobs unreferenced for less than this since their last upload or link are kept.
    pub grace: Duration,
    /// Retention rules (none by default: nothing tagged is ever deleted).
    pub retention: Vec<RetentionRule>,
}

/// A collection under way: its progress so far, and the switch that stops it.
#[derive(Debug)]
pub struct GcHandle {
    progress: Mutex<GcRun>,
    stop: AtomicBool,
    /// The right to collect among the processes sharing the store, held while it runs.
    exclusive: Mutex<Option<ExclusiveGuard>>,
}

impl GcHandle {
    /// Its progress (the counts so far; `finished_at` set once it ended).
    pub fn progress(&self) -> GcRun {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks it to stop after the blob it is on: what it removed stays removed.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn update(&self, change: impl FnOnce(&mut GcRun)) -> GcRun {
        let mut run = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut run);
        run.clone()
    }
}

/// Why a collection was not started.
#[derive(Debug, thiserror::Error)]
pub enum GcStartError {
    /// One runs already (one at a time).
    #[error("garbage collection {0} is running; wait for it, or stop it")]
    Running(i64),
    /// One runs on another node sharing the database (one at a time in the cluster).
    #[error("a garbage collection is running on another node; wait for it (`berth gc status`)")]
    RunningElsewhere,
    /// Recording it failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The registry's garbage collector: one collection at a time. A
/// [`Registry`](crate::Registry) owns one and hands it out
/// ([`Registry::gc`](crate::Registry::gc)).
///
/// It sees the two stores, the upload sessions (to sweep abandoned ones) and the registry's
/// `Deletions` (retention deletes manifests as a client's `DELETE` would: in the change log
/// and announced), and nothing else of the registry.
pub struct Gc {
    blobs: Arc<dyn BlobStore>,
    metadata: Arc<dyn MetadataStore>,
    uploads: Arc<Uploads>,
    deletions: Deletions,
    config: RegistryConfig,
    current: Mutex<Option<Arc<GcHandle>>>,
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) use berth_oci::time::unix_now_ms as now_ms;

impl Gc {
    pub(crate) fn new(
        blobs: Arc<dyn BlobStore>,
        metadata: Arc<dyn MetadataStore>,
        uploads: Arc<Uploads>,
        deletions: Deletions,
        config: RegistryConfig,
    ) -> Self {
        Gc {
            blobs,
            metadata,
            uploads,
            deletions,
            config,
            current: Mutex::new(None),
        }
    }

    /// The collection under way, if any.
    pub fn current(&self) -> Option<Arc<GcHandle>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts a collection (one at a time, here and among the nodes sharing the store):
    /// records it and claims the right to run it, and returns its handle at once; the caller
    /// then runs it to its end with [`Gc::collect`].
    pub async fn start(&self, dry_run: bool) -> Result<Arc<GcHandle>, GcStartError> {
        let metadata = self.metadata.as_ref();
        let placeholder = Arc::new(GcHandle {
            progress: Mutex::new(GcRun::default()),
            stop: AtomicBool::new(false),
            exclusive: Mutex::new(None),
        });
        {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(running) = current.as_ref() {
                return Err(GcStartError::Running(running.progress().id));
            }
            *current = Some(Arc::clone(&placeholder));
        }
        let exclusive = match metadata.try_exclusive(Exclusive::GarbageCollection).await {
            Ok(Some(guard)) => guard,
            Ok(None) => {
                self.finish();
                return Err(GcStartError::RunningElsewhere);
            }
            Err(e) => {
                self.finish();
                return Err(GcStartError::Registry(e.into()));
            }
        };
        *placeholder
            .exclusive
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(exclusive);
        let started_at = unix_now();
        match metadata.start_gc_run(started_at, dry_run).await {
            Ok(id) => {
                placeholder.update(|run| {
                    *run = GcRun {
                        id,
                        started_at,
                        dry_run,
                        outcome: "running".into(),
                        ..GcRun::default()
                    }
                });
                Ok(placeholder)
            }
            Err(e) => {
                self.finish();
                Err(GcStartError::Registry(e.into()))
            }
        }
    }

    /// Ends the collection under way: another may start, here or on another node.
    fn finish(&self) {
        let ended = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(ended) = ended {
            ended
                .exclusive
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        }
    }

    /// The last `limit` collections, newest first (the one under way, if any, with its
    /// progress so far).
    pub async fn runs(&self, limit: u32) -> Result<Vec<GcRun>> {
        let mut runs = self.metadata.gc_runs(limit).await?;
        if let Some(current) = self.current() {
            let progress = current.progress();
            for run in runs.iter_mut().filter(|r| r.id == progress.id) {
                *run = progress.clone();
            }
        }
        Ok(runs)
    }

    /// Runs the collection `handle` was started for ([`Gc::start`]), to its end (or until
    /// stopped), and records how it went. Logs its start, its counts and the bytes freed.
    pub async fn collect(&self, handle: &Arc<GcHandle>, options: &GcOptions) -> GcRun {
        let id = handle.progress().id;
        tracing::info!(
            run = id,
            dry_run = options.dry_run,
            grace = ?options.grace,
            "garbage collection started"
        );
        let outcome = match self.remove_garbage(handle, options).await {
            Ok(()) if handle.stopping() => "stopped".to_owned(),
            Ok(()) => "finished".to_owned(),
            Err(e) => {
                tracing::error!(run = id, error = %e, "garbage collection failed");
                format!("failed: {e}")
            }
        };
        let run = handle.update(|run| {
            run.outcome = outcome;
            run.finished_at = Some(unix_now());
        });
        if let Err(e) = self.metadata.update_gc_run(&run).await {
            tracing::warn!(run = id, error = %e, "could not record the garbage collection");
        }
        self.finish();
        tracing::info!(
            run = id,
            outcome = %run.outcome,
            dry_run = run.dry_run,
            blobs = run.blobs_removed,
            bytes = run.bytes_freed,
            manifests = run.manifests_removed,
            tags = run.tags_removed,
            uploads = run.uploads_removed,
            "garbage collection ended"
        );
        run
    }

    /// What a collection does: finishes interrupted ones, sweeps uploads, applies the
    /// retention rules, then removes the unreferenced blobs past the grace.
    async fn remove_garbage(&self, handle: &GcHandle, options: &GcOptions) -> Result<()> {
        let dry = options.dry_run;
        if !dry {
            self.finish_stale_collections(handle).await?;
        }
        // An upload file is created a moment before its session's record: one with no
        // record for minutes was left by a crash.
        let uploads = self
            .uploads
            .sweep_with(dry, ORPHAN_UPLOAD.min(self.config.upload_max_age))
            .await?;
        handle.update(|run| run.uploads_removed = uploads as u64);
        for rule in &options.retention {
            if handle.stopping() {
                return Ok(());
            }
            self.apply_retention(handle, rule, dry).await?;
        }
        self.record_unknown_blob_files().await?;
        let cutoff = now_ms() - options.grace.as_millis() as i64;
        // In a dry run, what retention would delete is not deleted, so its blobs do not
        // show here; the counts say so by being counts of what is unreferenced now.
        let mut after = None;
        loop {
            let batch = self
                .metadata
                .unreferenced_blobs(cutoff, after.as_ref(), BATCH)
                .await?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            after = Some(last.digest.clone());
            for step in batch.chunks(STEP) {
                if handle.stopping() {
                    return Ok(());
                }
                let marked = if dry {
                    step.iter().map(|blob| blob.digest.clone()).collect()
                } else {
                    let marked = self.metadata.begin_collect(step, now_ms()).await?;
                    self.delete_bytes(&marked).await?;
                    marked
                };
                let bytes: u64 = step
                    .iter()
                    .filter(|blob| marked.contains(&blob.digest))
                    .map(|blob| blob.size)
                    .sum();
                handle.update(|run| {
                    run.blobs_removed += marked.len() as u64;
                    run.bytes_freed += bytes;
                });
            }
            if batch.len() < BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Deletes the bytes of blobs marked `deleting`, then forgets them. A failure leaves the
    /// marks of the blobs not yet deleted: the next collection finishes them.
    async fn delete_bytes(&self, digests: &[berth_oci::Digest]) -> Result<()> {
        for (done, digest) in digests.iter().enumerate() {
            if let Err(e) = self.blobs.delete(digest).await {
                self.metadata.end_collect(&digests[..done]).await?;
                return Err(e.into());
            }
        }
        self.metadata.end_collect(digests).await?;
        Ok(())
    }

    /// Finishes what a collection that stopped part way (a crash) left marked `deleting`.
    async fn finish_stale_collections(&self, handle: &GcHandle) -> Result<()> {
        let (blobs, bytes) = self
            .finish_interrupted_collections(STALE_COLLECTION)
            .await?;
        handle.update(|run| {
            run.blobs_removed += blobs;
            run.bytes_freed += bytes;
        });
        Ok(())
    }

    /// Finishes the deletions a collection left marked for longer than `older_than` (a
    /// crash; at the start of the one process serving a data directory, any age): deletes
    /// their bytes and forgets them, so pushes of those blobs no longer wait. Returns the
    /// blobs and bytes removed.
    pub async fn finish_interrupted_collections(&self, older_than: Duration) -> Result<(u64, u64)> {
        let before = now_ms() - older_than.as_millis() as i64;
        let (mut blobs, mut bytes) = (0, 0);
        for step in self.metadata.stale_collections(before).await?.chunks(STEP) {
            // Marked afresh first, so a writer taking one over cannot meet a deletion.
            let marked = self.metadata.begin_collect(step, now_ms()).await?;
            self.delete_bytes(&marked).await?;
            blobs += marked.len() as u64;
            bytes += step
                .iter()
                .filter(|blob| marked.contains(&blob.digest))
                .map(|blob| blob.size)
                .sum::<u64>();
        }
        if blobs > 0 {
            tracing::info!(
                blobs,
                bytes,
                "finished the deletions an interrupted garbage collection left"
            );
        }
        Ok((blobs, bytes))
    }

    /// Gives the blob files the metadata does not know (from before it kept them, or put
    /// there by hand) a record, dated by the file, so the grace counts from their bytes.
    async fn record_unknown_blob_files(&self) -> Result<()> {
        let files = self.blobs.list_blobs().await?;
        for chunk in files.chunks(1000) {
            let chunk: Vec<_> = chunk
                .iter()
                .map(|(digest, size, modified)| (digest.clone(), *size, millis(*modified)))
                .collect();
            self.metadata.record_blob_files(&chunk).await?;
        }
        Ok(())
    }

    /// Applies one retention rule to every repository it covers.
    async fn apply_retention(
        &self,
        handle: &GcHandle,
        rule: &RetentionRule,
        dry: bool,
    ) -> Result<()> {
        let mut last: Option<String> = None;
        loop {
            let page = self.metadata.repositories(last.as_deref(), 500).await?;
            for name in page.iter().filter(|n| rule.covers(n)) {
                if handle.stopping() {
                    return Ok(());
                }
                let repository = self.config.repository_name(name)?;
                self.retain(handle, rule, &repository, dry).await?;
            }
            if page.len() < 500 {
                return Ok(());
            }
            last = page.last().cloned();
        }
    }

    async fn retain(
        &self,
        handle: &GcHandle,
        rule: &RetentionRule,
        repository: &RepositoryName,
        dry: bool,
    ) -> Result<()> {
        let mut tags = self.metadata.tag_history(repository).await?;
        // Newest first; tags pushed in the same second, the greatest name first (`v10`
        // before `v9` is not promised, `build-124` before `build-123` is).
        tags.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| b.0.as_str().cmp(a.0.as_str())));
        let now = unix_now();
        let young = |updated: i64| {
            rule.keep_within
                .is_some_and(|within| now - updated < within.as_secs() as i64)
        };
        let mut kept: HashSet<berth_oci::Digest> = HashSet::new();
        for (index, (tag, digest, updated)) in tags.iter().enumerate() {
            let keep = rule.keep_last.is_some_and(|n| (index as u64) < n as u64)
                || young(*updated)
                || (rule.keep_last.is_none() && rule.keep_within.is_none());
            if keep {
                kept.insert(digest.clone());
                continue;
            }
            if !dry {
                match self
                    .deletions
                    .manifest(Origin::Local, repository, &Reference::Tag(tag.clone()))
                    .await
                {
                    Ok(()) | Err(RegistryError::ManifestUnknown(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            tracing::info!(repository = %repository, tag = %tag, dry_run = dry, "retention: untagged");
            handle.update(|run| run.tags_removed += 1);
        }
        if rule.delete_untagged {
            for digest in self.metadata.dangling_manifests(repository).await? {
                if kept.contains(&digest) {
                    continue;
                }
                if !dry {
                    match self
                        .deletions
                        .manifest(
                            Origin::Local,
                            repository,
                            &Reference::Digest(digest.clone()),
                        )
                        .await
                    {
                        Ok(()) | Err(RegistryError::ManifestUnknown(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                tracing::info!(repository = %repository, manifest = %digest, dry_run = dry, "retention: deleted an untagged manifest");
                handle.update(|run| run.manifests_removed += 1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cover_names_prefixes_and_everything() {
        let rule = |repositories: &str| RetentionRule {
            repositories: repositories.into(),
            keep_last: Some(1),
            keep_within: None,
            delete_untagged: false,
        };
        assert!(rule("*").covers("anything/at/all"));
        assert!(rule("team/*").covers("team/app"));
        assert!(rule("team/*").covers("team/x/y"));
        assert!(!rule("team/*").covers("team"));
        assert!(!rule("team/*").covers("teammate/app"));
        assert!(rule("app").covers("app"));
        assert!(!rule("app").covers("app/x"));
    }
}
