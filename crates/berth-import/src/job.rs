//! Imports as jobs: [`Imports`] starts one per request, runs a few at a time (the rest wait
//! their turn, `Queued`), reports their progress, cancels them, and remembers finished ones
//! for a while.
//!
//! An import of a large image takes minutes, longer than a request should stay open (a
//! proxy's timeout, a laptop's sleep, a Ctrl-C would cut it). So the request that starts an
//! import answers at once with the job, which runs in the registry whatever happens to the
//! client; the client polls it. Jobs live in memory (per process): a restart forgets them
//! and stops those running. Nothing half-stored is left by that (a manifest appears only
//! whole, and a tag only with it); importing again reuses every blob and manifest stored.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_oci::time::unix_now;
use berth_oci::{Digest, RepositoryName, Tag};
use berth_registry::Registry;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::client::{Credentials, SourceClient};
use crate::copy::{Copy, Plan, Sessions};
use crate::error::ImportError;
use crate::source::SourceReference;

/// The bounds of imports in one registry process.
#[derive(Debug, Clone)]
pub struct ImportLimits {
    /// Imports running at once; the others wait, `Queued`.
    pub running: usize,
    /// Imports waiting at most; beyond, a new one is refused (`TOOMANYREQUESTS`).
    pub waiting: usize,
    /// Blob transfers at once, per import.
    pub blob_concurrency: usize,
    /// Finished imports remembered at most…
    pub kept: usize,
    /// …and for at most this long.
    pub kept_for: Duration,
    /// The most manifest bytes one import holds (it holds all of its manifests until they
    /// are stored).
    pub max_manifest_bytes: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            running: 2,
            waiting: 32,
            blob_concurrency: 4,
            kept: 100,
            kept_for: Duration::from_secs(24 * 3600),
            max_manifest_bytes: 64 << 20,
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a turn.
    Queued,
    /// Copying.
    Running,
    /// Everything is stored and tagged.
    Succeeded,
    /// Stopped on an error; see the job's error.
    Failed,
    /// Stopped by the admin.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// The root manifest, once fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
}

/// A job's counters, updated as it goes.
#[derive(Default)]
pub struct Progress {
    resolved: Mutex<Option<Resolved>>,
    /// Manifests fetched (the root, children, referrers).
    pub(crate) manifests: AtomicU64,
    /// Manifests stored (or found stored).
    pub(crate) manifests_done: AtomicU64,
    /// Referrers found.
    pub(crate) referrers: AtomicU64,
    /// Blobs the manifests reference.
    pub(crate) blobs: AtomicU64,
    /// Blobs in place.
    pub(crate) blobs_done: AtomicU64,
    /// Blobs that were in the registry already (linked, not fetched).
    pub(crate) blobs_reused: AtomicU64,
    /// Bytes to fetch.
    pub(crate) bytes: AtomicU64,
    /// Bytes fetched.
    pub(crate) bytes_done: Arc<AtomicU64>,
}

impl Progress {
    pub(crate) fn resolved(&self, resolved: Resolved) {
        *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = Some(resolved);
    }

    fn view(&self) -> ProgressView {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProgressView {
            manifests: load(&self.manifests),
            manifests_done: load(&self.manifests_done),
            referrers: load(&self.referrers),
            blobs: load(&self.blobs),
            blobs_done: load(&self.blobs_done),
            blobs_reused: load(&self.blobs_reused),
            bytes: load(&self.bytes),
            bytes_done: load(&self.bytes_done),
        }
    }
}

/// A job's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgressView {
    /// Manifests fetched from the source (the root, children, referrers).
    pub manifests: u64,
    /// Manifests stored here (or found here already).
    pub manifests_done: u64,
    /// Referrers found.
    pub referrers: u64,
    /// Blobs the manifests reference, once each.
    pub blobs: u64,
    /// Blobs in place.
    pub blobs_done: u64,
    /// Blobs that were in the registry already, so not fetched.
    pub blobs_reused: u64,
    /// Bytes of the blobs to fetch.
    pub bytes: u64,
    /// Bytes fetched so far.
    pub bytes_done: u64,
}

/// Why a job failed, as it reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobError {
    /// The code (`SOURCE_UNAUTHORIZED`, `MANIFEST_UNKNOWN`, `DIGEST_INVALID`, …).
    pub code: String,
    /// For people; names the source.
    pub message: String,
    /// Structured context.
    pub detail: Option<Value>,
}

impl From<&ImportError> for JobError {
    fn from(e: &ImportError) -> Self {
        JobError {
            code: e.code().to_owned(),
            message: e.message(),
            detail: e.detail(),
        }
    }
}

/// A job as it is at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// Where it is.
    pub state: JobState,
    /// The source, `registry/repository[:tag][@digest]`.
    pub source: String,
    /// The local repository.
    pub repository: String,
    /// The tags it sets.
    pub tags: Vec<String>,
    /// Whether it copies referrers.
    pub include_referrers: bool,
    /// Whether it may move tags.
    pub force: bool,
    /// The root manifest, once fetched.
    pub resolved: Option<Resolved>,
    /// Its counters.
    pub progress: ProgressView,
    /// When it was asked for (Unix seconds).
    pub created_at: i64,
    /// When it started copying.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// Why it failed.
    pub error: Option<JobError>,
}

/// What an admin asked for.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The source, as written (see [`SourceReference`]).
    pub source: String,
    /// Target images, `repository[:tag]`, all in one repository; empty: the source's
    /// repository and tag.
    pub images: Vec<String>,
    /// Credentials for the source.
    pub credentials: Option<Credentials>,
    /// Copy the referrers (signatures, SBOMs) too.
    pub include_referrers: bool,
    /// Move tags that point at other manifests.
    pub force: bool,
    /// Allow plain HTTP to a source that is not loopback.
    pub insecure: bool,
    /// PEM CA certificates to trust for the source, beside the system's store.
    pub ca_certificates: Option<String>,
}

struct Status {
    state: JobState,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    error: Option<JobError>,
}

struct Job {
    id: String,
    source: String,
    repository: RepositoryName,
    tags: Vec<Tag>,
    include_referrers: bool,
    force: bool,
    created_at: i64,
    progress: Progress,
    status: Mutex<Status>,
    cancel: CancellationToken,
    finished: tokio::sync::watch::Sender<bool>,
}

impl Job {
    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn view(&self) -> JobView {
        let status = self.status();
        JobView {
            id: self.id.clone(),
            state: status.state,
            source: self.source.clone(),
            repository: self.repository.to_string(),
            tags: self.tags.iter().map(ToString::to_string).collect(),
            include_referrers: self.include_referrers,
            force: self.force,
            resolved: self
                .progress
                .resolved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            progress: self.progress.view(),
            created_at: self.created_at,
            started_at: status.started_at,
            finished_at: status.finished_at,
            error: status.error.clone(),
        }
    }

    fn started(&self) {
        let mut status = self.status();
        status.state = JobState::Running;
        status.started_at = Some(unix_now());
    }

    fn finish(&self, result: Result<(), ImportError>) {
        {
            let mut status = self.status();
            status.finished_at = Some(unix_now());
            match &result {
                Ok(()) => status.state = JobState::Succeeded,
                Err(ImportError::Cancelled) => status.state = JobState::Cancelled,
                Err(e) => {
                    status.state = JobState::Failed;
                    status.error = Some(e.into());
                }
            }
        }
        let _ = self.finished.send(true);
    }
}

/// The imports of one registry process.
pub struct Imports {
    registry: Arc<Registry>,
    limits: ImportLimits,
    jobs: Mutex<VecDeque<Arc<Job>>>,
    running: Arc<Semaphore>,
}

impl Imports {
    /// Imports into `registry`, within `limits`.
    pub fn new(registry: Arc<Registry>, limits: ImportLimits) -> Self {
        Imports {
            running: Arc::new(Semaphore::new(limits.running.max(1))),
            registry,
            limits,
            jobs: Mutex::default(),
        }
    }

    /// Checks `request` and starts its job; the error is the request's (invalid, busy).
    /// Everything about the source (reachable, credentials, content) is the job's to find.
    pub fn start(&self, request: ImportRequest) -> Result<JobView, ImportError> {
        let source = SourceReference::parse(&request.source, request.insecure)?;
        let (repository, tags) = self.targets(&source, &request.images)?;
        let client = SourceClient::new(
            source.clone(),
            request.credentials,
            request.insecure,
            request.ca_certificates.as_deref(),
        )?;
        let (finished, _) = tokio::sync::watch::channel(false);
        let job = Arc::new(Job {
            id: new_id(),
            source: source.to_string(),
            repository: repository.clone(),
            tags: tags.clone(),
            include_referrers: request.include_referrers,
            force: request.force,
            created_at: unix_now(),
            progress: Progress::default(),
            status: Mutex::new(Status {
                state: JobState::Queued,
                started_at: None,
                finished_at: None,
                error: None,
            }),
            cancel: CancellationToken::new(),
            finished,
        });
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            self.prune(&mut jobs);
            let unfinished = jobs
                .iter()
                .filter(|j| !j.status().state.is_finished())
                .count();
            if unfinished >= self.limits.running + self.limits.waiting {
                return Err(ImportError::Busy(format!(
                    "{unfinished} imports are running or waiting already, the most this registry takes; try again when some have finished"
                )));
            }
            jobs.push_back(Arc::clone(&job));
        }
        let plan = Plan {
            repository,
            tags,
            include_referrers: request.include_referrers,
            force: request.force,
            concurrency: self.limits.blob_concurrency,
            max_manifest_bytes: self.limits.max_manifest_bytes,
        };
        tracing::info!(import = %job.id, source = %job.source, repository = %plan.repository, "import queued");
        let run = tokio::spawn(run(
            Arc::clone(&self.registry),
            Arc::clone(&job),
            client,
            plan,
            Arc::clone(&self.running),
        ));
        let watched = Arc::clone(&job);
        tokio::spawn(async move {
            if let Err(e) = run.await
                && !watched.status().state.is_finished()
            {
                tracing::error!(import = %watched.id, error = %e, "an import stopped unexpectedly");
                watched.finish(Err(ImportError::Local(berth_registry::RegistryError::Io(
                    std::io::Error::other("the import stopped unexpectedly"),
                ))));
            }
        });
        Ok(job.view())
    }

    /// The job `id`, if it is remembered.
    pub fn get(&self, id: &str) -> Option<JobView> {
        self.find(id).map(|j| j.view())
    }

    /// Every job remembered, the newest first.
    pub fn list(&self) -> Vec<JobView> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        self.prune(&mut jobs);
        jobs.iter().rev().map(|j| j.view()).collect()
    }

    /// Cancels job `id` and waits (a few seconds at most) for it to stop. `None` if no such
    /// job is remembered; a [`ImportError::Conflict`] if it has finished already.
    pub async fn cancel(&self, id: &str) -> Option<Result<JobView, ImportError>> {
        let job = self.find(id)?;
        let state = job.status().state;
        if state.is_finished() {
            return Some(Err(ImportError::Conflict(format!(
                "import `{id}` has finished already ({state:?})"
            ))));
        }
        job.cancel.cancel();
        let mut finished = job.finished.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(10), finished.wait_for(|f| *f)).await;
        Some(Ok(job.view()))
    }

    /// Cancels every import that is waiting or running, and waits (at most `grace`) for
    /// them to stop: for a registry shutting down, so that their upload sessions are
    /// dropped now rather than left to the sweeper.
    pub async fn shutdown(&self, grace: Duration) {
        let unfinished: Vec<Arc<Job>> = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|j| !j.status().state.is_finished())
            .cloned()
            .collect();
        if unfinished.is_empty() {
            return;
        }
        tracing::info!(
            imports = unfinished.len(),
            "cancelling the imports under way"
        );
        for job in &unfinished {
            job.cancel.cancel();
        }
        let all_stopped = async {
            for job in &unfinished {
                let _ = job.finished.subscribe().wait_for(|f| *f).await;
            }
        };
        let _ = tokio::time::timeout(grace, all_stopped).await;
    }

    fn find(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|j| j.id == id)
            .cloned()
    }

    /// Forgets finished jobs past `kept_for`, and the oldest finished beyond `kept`.
    fn prune(&self, jobs: &mut VecDeque<Arc<Job>>) {
        let oldest = unix_now() - self.limits.kept_for.as_secs() as i64;
        jobs.retain(|j| j.status().finished_at.is_none_or(|at| at >= oldest));
        let mut finished = jobs
            .iter()
            .filter(|j| j.status().state.is_finished())
            .count();
        jobs.retain(|j| {
            if finished > self.limits.kept && j.status().state.is_finished() {
                finished -= 1;
                false
            } else {
                true
            }
        });
    }

    /// The local repository and tags of `images` (default: the source's).
    fn targets(
        &self,
        source: &SourceReference,
        images: &[String],
    ) -> Result<(RepositoryName, Vec<Tag>), ImportError> {
        let invalid = |image: &str, why: String| {
            ImportError::Invalid(format!(
                "the image `{image}` is not `repository[:tag]`: {why}"
            ))
        };
        if images.is_empty() {
            let repository = self.registry.repository_name(source.repository.as_str())?;
            return Ok((repository, source.tag.iter().cloned().collect()));
        }
        let mut repository: Option<RepositoryName> = None;
        let mut tags: Vec<Tag> = Vec::new();
        for image in images {
            if image.contains('@') {
                return Err(invalid(
                    image,
                    "a target is named by tag; the digest is the source's".to_owned(),
                ));
            }
            let (name, tag) = match image.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (
                    name,
                    Some(Tag::parse(tag).map_err(|e| invalid(image, e.to_string()))?),
                ),
                _ => (image.as_str(), None),
            };
            let name = self
                .registry
                .repository_name(name)
                .map_err(|e| invalid(image, e.to_string()))?;
            match &repository {
                Some(r) if *r != name => {
                    return Err(ImportError::Invalid(format!(
                        "an import stores into one repository, but the images name `{r}` and `{name}`; import once per repository"
                    )));
                }
                _ => repository = Some(name),
            }
            // An image without a tag takes the source's, if it has one.
            if let Some(tag) = tag.or_else(|| source.tag.clone())
                && !tags.contains(&tag)
            {
                tags.push(tag);
            }
        }
        Ok((repository.expect("images is not empty"), tags))
    }
}

/// A job's id: 12 hex digits, random.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Runs one job: waits for a turn (or a cancellation), copies, and records how it ended;
/// upload sessions left open by a failure or a cancellation are cancelled.
async fn run(
    registry: Arc<Registry>,
    job: Arc<Job>,
    client: SourceClient,
    plan: Plan,
    running: Arc<Semaphore>,
) {
    let permit = tokio::select! {
        permit = running.acquire_owned() => permit.ok(),
        () = job.cancel.cancelled() => None,
    };
    let Some(_permit) = permit else {
        tracing::info!(import = %job.id, "import cancelled before it started");
        job.finish(Err(ImportError::Cancelled));
        return;
    };
    job.started();
    tracing::info!(import = %job.id, source = %job.source, repository = %plan.repository, "import started");
    let sessions = Sessions::default();
    let copy = Copy {
        registry: &registry,
        client: &client,
        plan: &plan,
        progress: &job.progress,
        sessions: &sessions,
        stop: &job.cancel,
    };
    // The copy stops itself on a cancellation, where that is safe.
    let result = copy.run().await;
    // Whatever a failure left open (nothing, normally).
    sessions.cancel_all(&registry, &plan.repository).await;
    let progress = job.progress.view();
    match &result {
        Ok(resolved) => tracing::info!(
            import = %job.id,
            source = %job.source,
            repository = %plan.repository,
            digest = %resolved.digest,
            manifests = progress.manifests_done,
            blobs = progress.blobs,
            blobs_reused = progress.blobs_reused,
            bytes = progress.bytes_done,
            "import succeeded"
        ),
        Err(ImportError::Cancelled) => {
            tracing::info!(import = %job.id, source = %job.source, "import cancelled")
        }
        Err(e) if e.is_internal() => {
            tracing::error!(import = %job.id, source = %job.source, error = %e, "import failed")
        }
        Err(e) => {
            tracing::warn!(import = %job.id, source = %job.source, error = %e, "import failed")
        }
    }
    job.finish(result.map(drop));
}
