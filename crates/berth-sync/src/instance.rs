//! A connected registry's instance: activation, configuration and status, and the relay that
//! serves its own children.
//!
//! The instance keeps the last configuration document it received in its data directory, so
//! it serves its client tokens (and relays to its children) with it while its parent is
//! unreachable, including after a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use berth_auth::Identity;
use berth_auth::connected::{InstanceStatus, LogLevel, Mode, StatusDetail};
use berth_auth::gateway::{ActivateRequest, ConfigDocument, StatusReport};
use berth_auth::scope_map::RepositoryPattern;
use berth_server::gateway::{Gateway, GatewayError};
use tokio::sync::watch;

use berth_registry::Registry;

use crate::client::{LinkError, ParentClient};
use crate::connection::ConnectionString;
use crate::content::ContentSync;
use crate::schedule::{Gate, Schedule};
use crate::throttle::{LinkSettings, Throttle};
use crate::upstream::Upstream;

/// How often the instance reports its status.
pub const STATUS_EVERY: Duration = Duration::from_secs(3);

/// Why the instance must stop.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Another instance holds the connected registry.
    #[error("{0}")]
    AlreadyActivated(String),
    /// Reading or writing the instance's files failed.
    #[error("instance state in `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
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
    changes: watch::Sender<u64>,
    read_only: Arc<RwLock<Option<String>>>,
    log_level: Arc<dyn Fn(LogLevel) + Send + Sync>,
    last_sync: RwLock<Option<i64>>,
    /// Problems seen while syncing (tag conflicts), reported with the status.
    events: Arc<std::sync::Mutex<Vec<StatusDetail>>>,
    /// Set while a scheduled sync run is on: the status says `Syncing`.
    syncing: Arc<std::sync::atomic::AtomicBool>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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
    /// switch for ReadOnly mode; `log_level` applies the configured log level.
    pub async fn open(
        connection: ConnectionString,
        data_dir: &Path,
        login_server: String,
        identity: Arc<Identity>,
        registry: Arc<Registry>,
        read_only: Arc<RwLock<Option<String>>>,
        log_level: Arc<dyn Fn(LogLevel) + Send + Sync>,
    ) -> Result<Arc<Instance>, InstanceError> {
        let instance_id = instance_id(data_dir)?;
        let state_file = data_dir.join("connected-registry.json");
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
            changes: watch::Sender::new(0),
            read_only,
            log_level,
            last_sync: RwLock::new(None),
            syncing: Arc::default(),
            events: Arc::default(),
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
    pub fn children_message_ttls(&self) -> Vec<String> {
        self.current()
            .map(|d| {
                d.children
                    .iter()
                    .map(|c| c.registry.sync.message_ttl.clone())
                    .collect()
            })
            .unwrap_or_default()
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
        if let Err(e) = self.identity.apply_document(&document).await {
            tracing::error!(error = %e, "could not apply the configuration's tokens");
        }
        *self.read_only.write().unwrap_or_else(|e| e.into_inner()) = (document.registry.mode == Mode::ReadOnly).then(|| {
            format!("connected registry `{}` is ReadOnly: it only mirrors its parent; push to a ReadWrite registry", document.registry.name)
        });
        (self.log_level)(document.registry.log_level);
        if document.registry.mode == Mode::ReadOnly {
            // A mirror holds exactly its parent's repositories for its list: a repository
            // taken off the list is deleted here.
            let (registry, repositories) = (
                Arc::clone(&self.registry),
                document.registry.repositories.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = prune_repositories(&registry, &repositories).await {
                    tracing::warn!(error = %e, "could not delete repositories no longer synced");
                }
            });
        }
        *self.document.write().unwrap_or_else(|e| e.into_inner()) = Some(document);
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    fn current(&self) -> Option<ConfigDocument> {
        self.document
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn activate_request(&self) -> ActivateRequest {
        ActivateRequest {
            instance_id: self.instance_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            login_server: self.login_server.clone(),
        }
    }

    /// Runs the link with the parent until the instance must stop: activation (retried while
    /// the parent is unreachable), then the configuration long poll and the status reports.
    /// Returns only on a fatal error, such as another instance holding the registry.
    pub async fn run(self: Arc<Self>) -> InstanceError {
        let mut backoff = Duration::from_millis(200);
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
                    *self.last_sync.write().unwrap_or_else(|e| e.into_inner()) = Some(now());
                    break;
                }
                Err(LinkError::AlreadyActivated(message)) => {
                    return InstanceError::AlreadyActivated(message);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "activation failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        tokio::spawn(Arc::clone(&self).report_status());
        // One throttle and one set of limits for the link, both directions.
        let throttle = Arc::new(Throttle::default());
        let limits_of = Arc::clone(&self);
        let limits: Arc<dyn Fn() -> LinkSettings + Send + Sync> =
            Arc::new(move || match limits_of.current() {
                Some(d) => LinkSettings {
                    bandwidth: d.registry.sync.bandwidth,
                    concurrency: d.registry.sync.concurrency,
                    read_only: d.registry.mode == Mode::ReadOnly,
                },
                None => LinkSettings {
                    bandwidth: None,
                    concurrency: berth_auth::connected::DEFAULT_CONCURRENCY,
                    read_only: true,
                },
            });
        let events = Arc::clone(&self.events);
        let conflicts: Arc<dyn Fn(StatusDetail) + Send + Sync> = Arc::new(move |detail| {
            let mut events = events.lock().unwrap_or_else(|e| e.into_inner());
            events.push(detail);
            let excess = events.len().saturating_sub(10);
            events.drain(..excess);
        });
        let content = ContentSync::new(
            Arc::clone(&self.registry),
            self.client.clone(),
            self.name().to_owned(),
            &self.data_dir,
            Arc::clone(&throttle),
            Arc::clone(&limits),
            Arc::clone(&conflicts),
        );
        let (this, settings_of) = (Arc::clone(&self), Arc::clone(&self));
        let syncing = Arc::clone(&self.syncing);
        let config_changes = self.changes.subscribe();
        tokio::spawn(async move {
            content
                .run(
                    Schedule::new(&this.data_dir),
                    move || settings_of.current().map(|d| d.registry.sync),
                    syncing,
                    config_changes,
                    move || {
                        *this.last_sync.write().unwrap_or_else(|e| e.into_inner()) = Some(now())
                    },
                )
                .await;
        });
        let upstream = Upstream::new(
            Arc::clone(&self.registry),
            self.client.clone(),
            &self.data_dir,
            throttle,
            limits,
            conflicts,
        );
        let this = Arc::clone(&self);
        tokio::spawn(async move {
            let schedule = Schedule::new(&this.data_dir);
            upstream
                .run(move || {
                    let document = this.current()?;
                    // Sent up only when the schedule lets content move.
                    let open = !matches!(
                        schedule.gate(&document.registry.sync, chrono::Utc::now()),
                        Gate::ClosedUntil(_)
                    );
                    Some((
                        open && document.registry.mode == Mode::ReadWrite,
                        document.registry.repositories.clone(),
                    ))
                })
                .await;
        });
        self.follow_config().await;
        unreachable!("the configuration loop never ends")
    }

    async fn follow_config(&self) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let since = self.current().map(|d| d.etag());
            match self.client.config(self.name(), since.as_deref()).await {
                Ok(Some(document)) => {
                    backoff = Duration::from_millis(200);
                    tracing::debug!(etag = %document.etag(), "configuration changed");
                    if let Err(e) = self.install(document, true).await {
                        tracing::error!(error = %e, "could not keep the configuration");
                    }
                    *self.last_sync.write().unwrap_or_else(|e| e.into_inner()) = Some(now());
                }
                Ok(None) => {
                    backoff = Duration::from_millis(200);
                    *self.last_sync.write().unwrap_or_else(|e| e.into_inner()) = Some(now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "configuration poll failed; serving with the last configuration");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn report_status(self: Arc<Self>) {
        loop {
            let mut details: Vec<StatusDetail> = disk_problem(&self.data_dir).into_iter().collect();
            let disk_ok = details.is_empty();
            details.extend(
                self.events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .cloned(),
            );
            let status = InstanceStatus {
                connection_state: match (
                    disk_ok,
                    self.syncing.load(std::sync::atomic::Ordering::Relaxed),
                ) {
                    (false, _) => "Unhealthy",
                    (true, true) => "Syncing",
                    (true, false) => "Online",
                }
                .into(),
                last_sync: *self.last_sync.read().unwrap_or_else(|e| e.into_inner()),
                details,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                login_server: self.login_server.clone(),
                reported_at: 0,
            };
            let report = StatusReport {
                instance_id: self.instance_id.clone(),
                status,
            };
            if let Err(e) = self.client.status(self.name(), &report).await {
                tracing::debug!(error = %e, "status report failed");
            }
            tokio::time::sleep(STATUS_EVERY).await;
        }
    }
}

/// Deletes the content of every local repository that none of `repositories` covers.
async fn prune_repositories(
    registry: &Registry,
    repositories: &[String],
) -> Result<(), berth_registry::RegistryError> {
    let patterns: Vec<RepositoryPattern> = repositories
        .iter()
        .filter_map(|r| RepositoryPattern::parse(r).ok())
        .collect();
    let mut last: Option<String> = None;
    loop {
        let page = registry.catalog(last.as_deref(), 500).await?;
        for name in &page {
            if !patterns.iter().any(|p| p.matches(name)) {
                let repository = registry.repository_name(name)?;
                let deleted = registry
                    .delete_repository_content(berth_registry::Origin::Parent, &repository)
                    .await?;
                if deleted > 0 {
                    tracing::info!(repository = %name, manifests = deleted, "deleted a repository no longer synced");
                }
            }
        }
        if page.len() < 500 {
            return Ok(());
        }
        last = page.last().cloned();
    }
}

/// Free space below which the instance reports itself Unhealthy.
const LOW_DISK_BYTES: u64 = 512 << 20;

/// A `DISK_LOW` status detail when the data directory's file system is nearly full (less than
/// 5% or 512 MiB free): pushes and sync would soon fail there.
fn disk_problem(data_dir: &Path) -> Option<StatusDetail> {
    let stats = rustix::fs::statvfs(data_dir).ok()?;
    let total = stats.f_blocks.saturating_mul(stats.f_frsize);
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    (free < LOW_DISK_BYTES || free.saturating_mul(20) < total).then(|| StatusDetail {
        code: "DISK_LOW".into(),
        description: format!(
            "{} MiB free of {} MiB on the data directory's file system",
            free >> 20,
            total >> 20
        ),
        at: now(),
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

fn unreachable_parent(e: LinkError) -> GatewayError {
    match e {
        LinkError::AlreadyActivated(message) => {
            GatewayError::Identity(berth_auth::IdentityError::Conflict(message))
        }
        LinkError::Refused(message) | LinkError::NotFound(message) => {
            GatewayError::Identity(berth_auth::IdentityError::Invalid(message))
        }
        LinkError::Unreachable(message) => GatewayError::Unavailable(message),
    }
}

impl Relay {
    fn child_document(&self, name: &str) -> Result<ConfigDocument, GatewayError> {
        self.0
            .current()
            .and_then(|d| d.children.iter().find_map(|c| c.find(name)).cloned())
            .ok_or_else(|| {
                GatewayError::Identity(berth_auth::IdentityError::NotFound {
                    kind: "connected registry",
                    name: name.into(),
                })
            })
    }
}

#[async_trait]
impl Gateway for Relay {
    async fn activate(
        &self,
        name: &str,
        request: ActivateRequest,
    ) -> Result<ConfigDocument, GatewayError> {
        self.0
            .client
            .activate(name, &request)
            .await
            .map_err(unreachable_parent)
    }

    async fn config(
        &self,
        name: &str,
        since: Option<&str>,
        wait: Duration,
    ) -> Result<Option<ConfigDocument>, GatewayError> {
        berth_server::gateway::long_poll(self.0.changes.subscribe(), since, wait, || {
            self.child_document(name)
        })
        .await
    }

    async fn status(&self, name: &str, report: StatusReport) -> Result<(), GatewayError> {
        self.0
            .client
            .status(name, &report)
            .await
            .map_err(unreachable_parent)
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
