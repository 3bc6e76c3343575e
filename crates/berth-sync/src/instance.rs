//! A connected registry's instance: activation, configuration and status, and the relay that
//! serves its own children.
//!
//! The instance keeps the last configuration document it received in its data directory, so
//! it serves its client tokens (and relays to its children) with it while its parent is
//! unreachable, including after a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use berth_auth::Identity;
use berth_auth::connected::{GcSettings, GcSummary, InstanceStatus, LogLevel, Mode, StatusDetail};
use berth_auth::gateway::{ActivateRequest, ConfigDocument, RegistrySettings, StatusReport};
use berth_auth::gateway::{EventsReport, Gateway, GatewayError};
use berth_auth::scope_map::RepositoryPattern;
use berth_notify::{Notifier, Topic};
use berth_oci::time::unix_now;
use tokio::sync::Notify;

use berth_registry::Registry;

use crate::client::{LinkError, ParentClient};
use crate::connection::ConnectionString;
use crate::content::ContentSync;
use crate::events::EventSender;
use crate::link::Link;
use crate::retirement::{self, Cause, Retirement};
use crate::retry::Retry;
use crate::schedule::Schedule;
use crate::scope::SyncedRepositories;
use crate::status::{Activity, Problems};
use crate::throttle::{LinkSettings, Throttle};
use crate::upstream::Upstream;

/// How often the instance reports its status.
pub const STATUS_EVERY: Duration = Duration::from_secs(3);

/// How long an instance that never activated retries a parent that refuses its sync token
/// (a parent that is itself a connected registry may not have learnt a new token yet), and
/// how often: slow enough to stay under the parent's failed-login limit.
const NEW_TOKEN_WAIT: Duration = Duration::from_secs(30 * 60);
const NEW_TOKEN_PACE: Duration = Duration::from_secs(10);

/// Why the instance must stop. Each is said once, at error level, and never retried.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Another instance holds the connected registry.
    #[error("ALREADY_ACTIVATED: {0}")]
    AlreadyActivated(String),
    /// The root retired this instance for good: deactivated, its registry deleted, or its
    /// sync token refused.
    #[error("{0}")]
    Retired(String),
    /// The parent refused a call for a reason retrying cannot mend (never expected: every
    /// final answer has its own variant).
    #[error("the parent refused this instance: {0}")]
    Refused(String),
    /// The parent no longer counts this instance as the active one.
    #[error("{0}")]
    NotActive(String),
    /// Reading or writing the instance's files failed.
    #[error("instance state in `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl InstanceError {
    /// Whether restarting the instance cannot mend it: the root retired it, or another
    /// instance holds its registry. (A file it could not read or write may be mended.)
    pub fn is_permanent(&self) -> bool {
        match self {
            InstanceError::AlreadyActivated(_)
            | InstanceError::Retired(_)
            | InstanceError::Refused(_)
            | InstanceError::NotActive(_) => true,
            InstanceError::Io { .. } => false,
        }
    }
}

/// The first final error any part of the link met; the instance stops with it.
#[derive(Default)]
struct Stop {
    reason: Mutex<Option<InstanceError>>,
    notify: Notify,
}

impl Stop {
    fn stop(&self, error: InstanceError) {
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if reason.is_none() {
            *reason = Some(error);
        }
        self.notify.notify_one();
    }

    async fn wait(&self) -> InstanceError {
        loop {
            let notified = self.notify.notified();
            if let Some(error) = self.reason.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return error;
            }
            notified.await;
        }
    }
}

/// The running instance of a connected registry: configuration, status, relay, and content
/// sync from its parent.
pub struct Instance {
    connection: ConnectionString,
    instance_id: String,
    login_server: String,
    identity: Arc<Identity>,
    registry: Arc<Registry>,
    client: ParentClient,
    state_file: PathBuf,
    data_dir: PathBuf,
    document: RwLock<Option<ConfigDocument>>,
    /// Announces each new configuration document ([`Topic::Configuration`]): the relay's
    /// long polls and the content loop wait on it.
    notifier: Arc<dyn Notifier>,
    read_only: Arc<RwLock<Option<String>>>,
    log_level: Arc<dyn Fn(LogLevel) + Send + Sync>,
    last_sync: RwLock<Option<i64>>,
    /// Problems seen (sync failing, tag conflicts, the disk), reported with the status.
    problems: Arc<Problems>,
    /// Whether content is moving: the status says `Syncing`.
    activity: Arc<Activity>,
    /// The repository patterns content sync holds whole.
    synced: Arc<SyncedRepositories>,
    /// Set by whichever part of the link meets a final answer.
    stop: Stop,
    /// What the last garbage collection on site did, for the status report.
    last_gc: Mutex<Option<GcSummary>>,
    /// The process's metrics (the link's lag, backlog, bytes, retries).
    metrics: Arc<berth_metrics::Metrics>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstanceError + '_ {
    move |source| InstanceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads or creates this instance's identity in `data_dir/instance.id`.
fn instance_id(data_dir: &Path) -> Result<String, InstanceError> {
    let path = data_dir.join("instance.id");
    match std::fs::read_to_string(&path) {
        Ok(id) => Ok(id.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id).map_err(io(&path))?;
            Ok(id)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

impl Instance {
    /// Prepares the instance: its identity, and the last configuration it received (applied
    /// at once, so it serves while the parent is down). `read_only` is the data plane's
    /// switch for ReadOnly mode; `log_level` applies the configured log level. Refuses to
    /// start an instance its root retired (deactivated, its registry deleted, or its sync token
    /// refused with this connection string).
    // Each is one of the process's parts the instance works with; a struct of them would
    // only name this list twice.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        connection: ConnectionString,
        data_dir: &Path,
        login_server: String,
        identity: Arc<Identity>,
        registry: Arc<Registry>,
        read_only: Arc<RwLock<Option<String>>>,
        log_level: Arc<dyn Fn(LogLevel) + Send + Sync>,
        metrics: Arc<berth_metrics::Metrics>,
    ) -> Result<Arc<Instance>, InstanceError> {
        let instance_id = instance_id(data_dir)?;
        if let Some(retired) = Retirement::load(data_dir) {
            if retired.holds_for(&instance_id, &connection) {
                return Err(InstanceError::Retired(retired.explain(data_dir)));
            }
            let file = retirement::file(data_dir);
            std::fs::remove_file(&file).map_err(io(&file))?;
        }
        let state_file = data_dir.join("connected-registry.json");
        let notifier = &Arc::clone(registry.notifier());
        let instance = Arc::new(Instance {
            client: ParentClient::new(&connection),
            connection,
            instance_id,
            login_server,
            identity,
            registry,
            state_file,
            data_dir: data_dir.to_owned(),
            document: RwLock::new(None),
            notifier: Arc::clone(notifier),
            read_only,
            log_level,
            last_sync: RwLock::new(None),
            problems: Arc::default(),
            activity: Arc::default(),
            synced: Arc::new(SyncedRepositories::new(data_dir)),
            stop: Stop::default(),
            last_gc: Mutex::default(),
            metrics,
        });
        if let Ok(text) = std::fs::read_to_string(&instance.state_file)
            && let Ok(document) = serde_json::from_str::<ConfigDocument>(&text)
        {
            tracing::info!(registry = %document.registry.name, "serving with the configuration kept from the last sync");
            instance.install(document, false).await?;
        }
        Ok(instance)
    }

    /// The connected registry's name.
    pub fn name(&self) -> &str {
        &self.connection.registry
    }

    /// The message TTLs of this registry's children (who read its change log).
    pub fn children_message_ttls(&self) -> Vec<Duration> {
        self.current()
            .map(|d| {
                d.children
                    .iter()
                    .map(|c| c.registry.sync.message_ttl.duration())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether and when this registry collects garbage, as its parent's configuration says
    /// (`None` before any configuration arrived).
    pub fn gc_settings(&self) -> Option<GcSettings> {
        self.settings().map(|s| s.gc)
    }

    /// Records what a garbage collection on site did, for the next status report.
    pub fn record_gc(&self, summary: GcSummary) {
        *self.last_gc.lock().unwrap_or_else(|e| e.into_inner()) = Some(summary);
    }

    /// Whether a configuration document is loaded (kept from the last sync, or received from
    /// the parent): a readiness check.
    pub fn configuration_loaded(&self) -> bool {
        self.document
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The gateway this instance serves to its own children.
    pub fn relay(self: &Arc<Self>) -> Arc<dyn Gateway> {
        Arc::new(Relay(Arc::clone(self)))
    }

    /// Makes `document` the configuration in force: identities, mode, relay; and keeps it on
    /// disk when `persist`.
    async fn install(&self, document: ConfigDocument, persist: bool) -> Result<(), InstanceError> {
        if persist {
            let text = serde_json::to_vec_pretty(&document).expect("documents serialise");
            let temp = self.state_file.with_extension("json.tmp");
            write_private(&temp, &text).map_err(io(&temp))?;
            std::fs::rename(&temp, &self.state_file).map_err(io(&self.state_file))?;
        }
        if let Err(e) = self.identity.hierarchy().apply_document(&document).await {
            tracing::error!(error = %e, "could not apply the configuration's tokens");
        }
        *self.read_only.write().unwrap_or_else(|e| e.into_inner()) = (document.registry.mode == Mode::ReadOnly).then(|| {
            format!("connected registry `{}` is ReadOnly: it only mirrors its parent; push to a ReadWrite registry", document.registry.name)
        });
        (self.log_level)(document.registry.log_level);
        // A pattern off the list is no longer held whole: put back, it is caught up again.
        if let Err(e) = self.synced.retain(&document.registry.repositories) {
            tracing::warn!(error = %e, "could not record the repositories synced");
        }
        if document.registry.mode == Mode::ReadOnly {
            // A mirror holds exactly its parent's repositories for its list: a repository
            // taken off the list is deleted here.
            let registry = Arc::clone(&self.registry);
            let repositories = document.registry.repositories.clone();
            tokio::spawn(async move {
                if let Err(e) = prune_repositories(&registry, &repositories).await {
                    tracing::warn!(error = %e, "could not delete repositories no longer synced");
                }
            });
        }
        *self.document.write().unwrap_or_else(|e| e.into_inner()) = Some(document);
        self.notifier.notify(Topic::Configuration);
        Ok(())
    }

    fn current(&self) -> Option<ConfigDocument> {
        self.document
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn settings(&self) -> Option<RegistrySettings> {
        self.document
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|d| d.registry.clone())
    }

    fn activate_request(&self) -> ActivateRequest {
        ActivateRequest {
            instance_id: self.instance_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            login_server: self.login_server.clone(),
        }
    }

    /// What a final answer of the parent means for this instance: for a retirement
    /// (deactivated, deleted, sync token refused), the record that keeps a restart from
    /// serving again or calling the parent.
    fn final_error(&self, error: LinkError) -> InstanceError {
        let cause = match &error {
            LinkError::Deactivated(_) => Some(Cause::Deactivated),
            LinkError::Unknown(_) => Some(Cause::Deleted),
            LinkError::Refused(_) => Some(Cause::TokenRefused),
            _ => None,
        };
        if let Some(cause) = cause {
            let retired = Retirement {
                cause,
                registry: self.name().to_owned(),
                instance_id: self.instance_id.clone(),
                connection: retirement::fingerprint(&self.connection),
                at: unix_now(),
                message: error.to_string(),
            };
            if let Err(e) = retired.save(&self.data_dir) {
                tracing::error!(error = %e, "could not record that this instance was retired");
            }
            return InstanceError::Retired(retired.explain(&self.data_dir));
        }
        match error {
            LinkError::AlreadyActivated(message) => InstanceError::AlreadyActivated(message),
            LinkError::NotActive(message) => InstanceError::NotActive(message),
            other => InstanceError::Refused(other.to_string()),
        }
    }

    /// Runs the link with the parent until the instance must stop: activation (retried while
    /// the parent is unreachable), then the configuration long poll, the status reports and
    /// content sync. Returns only on a final answer of the parent (another instance holds
    /// the registry, this one was deactivated, the registry deleted, the sync token
    /// refused), after logging it at error level; the caller then stops the process.
    pub async fn run(self: Arc<Self>) -> InstanceError {
        let error = self.link().await;
        tracing::error!(registry = %self.name(), "connected registry instance stops: {error}");
        error
    }

    async fn link(self: &Arc<Self>) -> InstanceError {
        let mut retry = Retry::unreported("activation");
        // An instance that never received a configuration may be refused by a parent that is
        // itself a connected registry and has not learnt the new sync token from its own
        // parent yet (its link down, its schedule closed): it waits for it, for a while.
        let never_activated = self.current().is_none();
        let mut refused_since: Option<std::time::Instant> = None;
        loop {
            match self
                .client
                .activate(self.name(), &self.activate_request())
                .await
            {
                Ok(document) => {
                    tracing::info!(registry = %self.name(), "activated against the parent");
                    if let Err(e) = self.install(document, true).await {
                        return e;
                    }
                    *self.last_sync.write().unwrap_or_else(|e| e.into_inner()) = Some(unix_now());
                    break;
                }
                Err(LinkError::Refused(message))
                    if never_activated
                        && refused_since.is_none_or(|since| since.elapsed() < NEW_TOKEN_WAIT) =>
                {
                    if refused_since.is_none() {
                        refused_since = Some(std::time::Instant::now());
                        tracing::warn!(
                            registry = %self.name(),
                            "the parent refused the sync token ({message}); a parent that is a connected registry learns a new token from its own parent: retrying every {}s for up to {} minutes, then stopping for good",
                            NEW_TOKEN_PACE.as_secs(),
                            NEW_TOKEN_WAIT.as_secs() / 60
                        );
                    }
                    // Slowly: every refusal counts as a failed login at the parent.
                    tokio::time::sleep(NEW_TOKEN_PACE).await;
                }
                Err(e) if e.is_final() => return self.final_error(e),
                Err(e) => retry.failed(&e).await,
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(Arc::clone(self).report_status());
        // One throttle and one set of limits for the link, both directions.
        let limits_of = Arc::clone(self);
        let limits: Arc<dyn Fn() -> LinkSettings + Send + Sync> =
            Arc::new(move || match limits_of.settings() {
                Some(r) => LinkSettings {
                    bandwidth: r.sync.bandwidth,
                    concurrency: r.sync.concurrency,
                    read_only: r.mode == Mode::ReadOnly,
                },
                None => LinkSettings {
                    bandwidth: None,
                    concurrency: berth_auth::connected::DEFAULT_CONCURRENCY,
                    read_only: true,
                },
            });
        let link = Link {
            registry: Arc::clone(&self.registry),
            client: self.client.clone(),
            throttle: Arc::new(Throttle::default()),
            limits,
            problems: Arc::clone(&self.problems),
            activity: Arc::clone(&self.activity),
            metrics: Arc::clone(&self.metrics),
        };
        let content = ContentSync::new(
            link.clone(),
            self.name().to_owned(),
            &self.data_dir,
            Arc::clone(&self.synced),
        );
        let (this, settings_of) = (Arc::clone(self), Arc::clone(self));
        let config_changes = self.notifier.subscribe(Topic::Configuration);
        tasks.spawn(async move {
            let error = content
                .run(
                    Schedule::new(&this.data_dir),
                    move || settings_of.settings(),
                    config_changes,
                    || {
                        *this.last_sync.write().unwrap_or_else(|e| e.into_inner()) =
                            Some(unix_now())
                    },
                )
                .await;
            this.stop.stop(this.final_error(error));
        });
        let events = EventSender::new(&link, self.name(), &self.instance_id, &self.data_dir);
        let this = Arc::clone(self);
        tasks.spawn(async move {
            let settings_of = Arc::clone(&this);
            let error = events.run(move || settings_of.settings()).await;
            this.stop.stop(this.final_error(error));
        });
        let upstream = Upstream::new(link, &self.data_dir);
        let this = Arc::clone(self);
        tasks.spawn(async move {
            let settings_of = Arc::clone(&this);
            let error = upstream
                .run(Schedule::new(&this.data_dir), move || {
                    settings_of.settings()
                })
                .await;
            this.stop.stop(this.final_error(error));
        });
        // The tasks end with this future (the JoinSet aborts them when dropped).
        tokio::select! {
            error = self.follow_config() => error,
            error = self.stop.wait() => error,
        }
    }

    /// Follows the configuration until the parent answers finally.
    async fn follow_config(&self) -> InstanceError {
        // A poll that fails leaves the instance serving with what it holds: the waits stay
        // short (5 s at most), so a new configuration is picked up soon after the parent is back.
        let mut retry = Retry::unreported("configuration poll")
            .meanwhile("serving with the last configuration")
            .at_most(Duration::from_secs(5));
        loop {
            let since = self.current().map(|d| d.etag());
            match self
                .client
                .config(self.name(), since.as_deref(), Some(&self.instance_id))
                .await
            {
                Ok(Some(document)) => {
                    retry.succeeded();
                    tracing::debug!(etag = %document.etag(), "configuration changed");
                    if let Err(e) = self.install(document, true).await {
                        tracing::error!(error = %e, "could not keep the configuration");
                    }
                    *self.last_sync.write().unwrap_or_else(|e| e.into_inner()) = Some(unix_now());
                }
                Ok(None) => {
                    retry.succeeded();
                    *self.last_sync.write().unwrap_or_else(|e| e.into_inner()) = Some(unix_now());
                }
                Err(e) if e.is_final() => return self.final_error(e),
                Err(e) => retry.failed(&e).await,
            }
        }
    }

    /// The status report now: `Unhealthy` while blob writes fail for lack of space,
    /// `Syncing` while content moves, else `Online`; every current and recent past problem.
    /// A low disk is a warning (`DISK_LOW`), not a failure: everything still works.
    fn status(&self) -> InstanceStatus {
        match disk_problem(&self.data_dir) {
            Some(description) => self.problems.raise("DISK_LOW", description),
            None => self.problems.clear("DISK_LOW"),
        }
        match self.registry.storage_full_since() {
            Some(since) => {
                let since = jiff::Timestamp::try_from(since)
                    .map(|t| t.display_with_offset(jiff::tz::Offset::UTC).to_string())
                    .unwrap_or_default();
                self.problems.raise(
                    "DISK_FULL",
                    format!("blob writes fail for lack of space on the data directory's file system (since {since}): pushes and sync are refused until space is freed"),
                );
            }
            None => self.problems.clear("DISK_FULL"),
        }
        let details: Vec<StatusDetail> = self.problems.details();
        let connection_state = if self.problems.is_raised("DISK_FULL") {
            "Unhealthy"
        } else if self.activity.is_syncing() {
            "Syncing"
        } else {
            "Online"
        };
        InstanceStatus {
            connection_state: connection_state.into(),
            last_sync: *self.last_sync.read().unwrap_or_else(|e| e.into_inner()),
            details,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            login_server: self.login_server.clone(),
            reported_at: 0,
            last_gc: self
                .last_gc
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    async fn report_status(self: Arc<Self>) {
        loop {
            let report = StatusReport {
                instance_id: self.instance_id.clone(),
                status: self.status(),
            };
            match self.client.status(self.name(), &report).await {
                Ok(()) => {}
                Err(e) if e.is_final() => {
                    self.stop.stop(self.final_error(e));
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "status report failed"),
            }
            tokio::time::sleep(STATUS_EVERY).await;
        }
    }
}

/// Deletes every local repository that none of `repositories` covers: its content, then its
/// name (so its children remove theirs too).
async fn prune_repositories(
    registry: &Registry,
    repositories: &[String],
) -> Result<(), berth_registry::RegistryError> {
    let patterns: Vec<RepositoryPattern> = repositories
        .iter()
        .filter_map(|r| RepositoryPattern::parse(r).ok())
        .collect();
    crate::content::delete_repositories(
        registry,
        |name| !patterns.iter().any(|p| p.matches(name)),
        "no longer synced",
    )
    .await
}

/// Free space below which the instance warns `DISK_LOW`, whatever the file system's size.
const LOW_DISK_BYTES: u64 = 512 << 20;

/// Why the data directory's file system is nearly full (less than 5% or 512 MiB free), if
/// it is: pushes and sync would soon fail there.
fn disk_problem(data_dir: &Path) -> Option<String> {
    let stats = rustix::fs::statvfs(data_dir).ok()?;
    let total = stats.f_blocks.saturating_mul(stats.f_frsize);
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    (free < LOW_DISK_BYTES || free.saturating_mul(20) < total).then(|| {
        format!(
            "{} MiB free of {} MiB on the data directory's file system",
            free >> 20,
            total >> 20
        )
    })
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The gateway a connected registry serves to its children: configuration from the document
/// it received (so children keep their configuration fresh, and are served while this
/// instance's own parent is down), activations and status reports forwarded up.
struct Relay(Arc<Instance>);

/// What the relay answers its child when its own parent answered `e` about the child
/// (`instance`, the child's instance, when known): the root's decisions pass through with
/// their codes; anything else about this link is this relay's problem, not the child's, so
/// the child is told to retry.
fn relayed(name: &str, instance: Option<&str>, e: LinkError) -> GatewayError {
    use berth_auth::IdentityError as E;
    let (registry, instance) = (name.to_owned(), instance.unwrap_or_default().to_owned());
    match e {
        LinkError::AlreadyActivated(_) => E::AlreadyActivated { registry }.into(),
        LinkError::Deactivated(_) => E::InstanceDeactivated { registry, instance }.into(),
        LinkError::NotActive(_) => E::InstanceNotActive { registry, instance }.into(),
        LinkError::Unknown(_) => E::NotFound {
            kind: "connected registry",
            name: registry,
        }
        .into(),
        LinkError::Refused(message)
        | LinkError::Forbidden(message)
        | LinkError::NotFound(message)
        | LinkError::Unreachable(message) => GatewayError::Unavailable(message),
    }
}

impl Relay {
    /// The document of descendant `name`, from the one this instance received. One it does
    /// not hold may be newer than that document: the parent decides, so a child is never
    /// told its registry is gone on the word of a stale copy.
    async fn child_document(&self, name: &str) -> Result<ConfigDocument, GatewayError> {
        let Some(document) = self.0.current() else {
            return Err(GatewayError::Unavailable(
                "this connected registry has no configuration from its parent yet".into(),
            ));
        };
        if let Some(child) = document.children.iter().find_map(|c| c.find(name)) {
            return Ok(child.clone());
        }
        match self.0.client.config(name, None, None).await {
            Ok(Some(document)) => Ok(document),
            Ok(None) => Err(GatewayError::Unavailable(
                "the parent answered no configuration".into(),
            )),
            Err(e) => Err(relayed(name, None, e)),
        }
    }
}

#[async_trait]
impl Gateway for Relay {
    async fn activate(
        &self,
        name: &str,
        request: ActivateRequest,
    ) -> Result<ConfigDocument, GatewayError> {
        let instance = request.instance_id.clone();
        self.0
            .client
            .activate(name, &request)
            .await
            .map_err(|e| relayed(name, Some(&instance), e))
    }

    /// Served from this instance's document; whether `instance` is still the active one is
    /// left to the status reports, which the root answers.
    async fn config(
        &self,
        name: &str,
        since: Option<&str>,
        _instance: Option<&str>,
        wait: Duration,
    ) -> Result<Option<ConfigDocument>, GatewayError> {
        let first = self.child_document(name).await?;
        if since != Some(first.etag().as_str()) {
            return Ok(Some(first));
        }
        let changes = self.0.notifier.subscribe(Topic::Configuration);
        berth_auth::gateway::long_poll(changes, since, wait, || {
            // Gone from a newer document: no answer now (`first` is what the child has), and
            // its next call asks the parent.
            Ok(self
                .0
                .current()
                .and_then(|d| d.children.iter().find_map(|c| c.find(name)).cloned())
                .unwrap_or_else(|| first.clone()))
        })
        .await
    }

    async fn status(&self, name: &str, report: StatusReport) -> Result<(), GatewayError> {
        let instance = report.instance_id.clone();
        self.0
            .client
            .status(name, &report)
            .await
            .map_err(|e| relayed(name, Some(&instance), e))
    }

    /// Passed up at once, nothing kept here: the child answers only when the parent took
    /// them, and keeps its own position until then, so an outage anywhere above loses
    /// nothing.
    async fn events(&self, name: &str, report: EventsReport) -> Result<(), GatewayError> {
        let instance = report.instance_id.clone();
        self.0
            .client
            .events(name, &report)
            .await
            .map_err(|e| relayed(name, Some(&instance), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_check_reads_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        // This machine's disk is far from full; the check must run and find nothing.
        let stats = rustix::fs::statvfs(dir.path()).unwrap();
        let free = stats.f_bavail * stats.f_frsize;
        let total = stats.f_blocks * stats.f_frsize;
        let expect_problem = free < LOW_DISK_BYTES || free * 20 < total;
        assert_eq!(disk_problem(dir.path()).is_some(), expect_problem);
        assert!(disk_problem(&dir.path().join("missing")).is_none());
    }
}
