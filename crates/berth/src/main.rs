//! `berth`: the registry server and its management command line.
//!
//! `berth serve` starts a registry on embedded defaults (local disk, an embedded database);
//! the other commands (`login`, `scope-map`, `token`, `update`, `show`) manage a running
//! registry through its management API, see [`cli`].

mod allocator;
mod cli;
mod config;
mod data_dir;
mod events;
mod events_config;
mod listeners;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use berth_auth::connected::LogLevel;
use berth_auth::store::IdentityStore;
use berth_auth::{Identity, KeyPurpose, PostgresIdentityStore, SigningKey, SqliteIdentityStore};
use berth_registry::blob::ObjectBlobStore;
use berth_registry::{
    BlobStore, Exclusive, FsBlobStore, PostgresMetadata, Registry, SqliteMetadata,
};
use berth_server::{AppState, ListenerConfig};
use berth_sync::{Instance, InstanceError};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, Database, ServeArgs};
use crate::listeners::{Listeners, seed_private_endpoints};

/// Berth: a container registry for images that live far from the data centre.
#[derive(Parser)]
#[command(name = "berth", version, about, after_long_help = cli::EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(Box<ServeArgs>),
    /// Bring the databases up to this version's schema, and exit. Takes `serve`'s flags and
    /// configuration file, so it migrates what `serve` would open. `serve` migrates at start
    /// too; run this first to upgrade in a step of its own (e.g. before rolling new nodes).
    Migrate(Box<ServeArgs>),
    #[command(flatten)]
    Manage(Box<cli::Command>),
}

fn main() -> ExitCode {
    allocator::tune();
    berth_tls::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match Config::load(*args) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("berth: {e}");
                    return ExitCode::from(2);
                }
            };
            let log_control = init_logging(&config.log, config.observability.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(128)
                .thread_keep_alive(Duration::from_secs(10))
                .build()
                .expect("start the async runtime");
            match runtime.block_on(serve(config, log_control)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth: {e}");
                    serve_exit_code(&*e)
                }
            }
        }
        Command::Migrate(args) => {
            let config = match Config::load(*args) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("berth: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = tokio::runtime::Runtime::new().expect("start the async runtime");
            match runtime.block_on(migrate(&config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Manage(command) => cli::run(*command),
    }
}

/// `berth serve`'s exit status after an error: [`EXIT_RETIRED`] when a connected registry
/// stopped for a reason restarting cannot mend (retired by its root, held by another
/// instance), so a supervisor can be told not to restart it; else 1.
fn serve_exit_code(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    let instance = error
        .downcast_ref::<InstanceError>()
        .or_else(|| error.downcast_ref::<InstanceStopped>().map(|s| &s.0));
    if instance.is_some_and(InstanceError::is_permanent) {
        ExitCode::from(EXIT_RETIRED)
    } else {
        ExitCode::FAILURE
    }
}

/// See [`serve_exit_code`] (README, "Connected registries").
const EXIT_RETIRED: u8 = 3;

/// A connected registry's link with its parent ended (it only ends on a final error).
#[derive(Debug, thiserror::Error)]
#[error("connected registry stopped: {0}")]
struct InstanceStopped(InstanceError);

/// Sets the log filter while running: a connected registry takes its log level from its
/// parent's configuration, unless `RUST_LOG` was set, which always wins.
type LogControl = Arc<dyn Fn(LogLevel) + Send + Sync>;

fn init_logging(filter: &str, format: berth_server::observe::LogFormat) -> LogControl {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok());
    let pinned = from_env.is_some();
    let (filter, handle) =
        tracing_subscriber::reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new(filter)));
    // Colour only for a person at a terminal: never into files or collectors.
    let json = format == berth_server::observe::LogFormat::Json;
    tracing_subscriber::registry()
        .with(filter)
        .with((!json).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
        }))
        .with(json.then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
        }))
        .init();
    Arc::new(move |level: LogLevel| {
        if pinned {
            return;
        }
        let directive = match level {
            LogLevel::Debug => "debug",
            LogLevel::Information => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error => "error",
            LogLevel::None => "off",
        };
        let _ = handle.reload(EnvFilter::new(directive));
    })
}

async fn serve(
    mut config: Config,
    log_control: LogControl,
) -> Result<(), Box<dyn std::error::Error>> {
    fit_connections_to_file_limit(&mut config);
    let _lock = data_dir::DataDirLock::acquire(&config.data_dir)?;
    let registry = Arc::new(open_registry(&config).await?);
    // One process serves a data directory: a deletion marked by a collection that did not
    // finish (a crash) can be finished now. With a shared database, another node's
    // collection may be running: only those that stopped long ago are finished.
    let interrupted_before = match config.database {
        Database::Embedded => Duration::ZERO,
        Database::Postgres(_) => berth_registry::gc::STALE_COLLECTION,
    };
    registry
        .gc()
        .finish_interrupted_collections(interrupted_before)
        .await
        .map_err(|e| format!("cannot finish an interrupted garbage collection: {e}"))?;
    spawn_upload_sweeper(Arc::clone(&registry));
    // One notifier for every wake-up of the process: content, identities, configuration.
    let identity = Arc::new(open_identity(&config, Arc::clone(registry.notifier())).await?);
    spawn_identity_follower(Arc::clone(&identity), Arc::clone(registry.notifier()));

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let listeners = Listeners::bind(&config, stopping.clone()).await?;
    let addr = listeners.login_server.local_addr()?;
    let metrics_listener = match config.observability.metrics_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| format!("cannot listen on {at} for the metrics listener: {e}"))?,
        ),
        None => None,
    };
    let login_scheme = berth_server::network::scheme(config.tls.is_some());
    println!(
        "berth: registry listening on {login_scheme}://{addr}, data in {}",
        config.data_dir.display()
    );
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "registry started");
    seed_private_endpoints(&identity, &config).await?;

    let mut state = AppState::new(Arc::clone(&registry), Arc::clone(&identity));
    let metrics = Arc::new(berth_metrics::Metrics::new(
        config.observability.repository_labels,
    ));
    state.metrics = Arc::clone(&metrics);
    state.public_url = config.public_url.as_deref().map(Arc::from);
    state.gc = Arc::new(config.gc.options.clone());
    state.network = Arc::new(listeners.network_config(&config, addr, &identity)?);
    events::start(&mut state, &config.events, login_host(&config, addr));
    let instance = match &config.connection {
        Some(connection) => {
            let login_server = login_host(&config, addr);
            let instance = Instance::open(
                connection.clone(),
                &config.data_dir,
                login_server,
                identity,
                registry,
                Arc::clone(&state.read_only),
                log_control,
                Arc::clone(&metrics),
            )
            .await?;
            let loaded = Arc::clone(&instance);
            state
                .readiness
                .configuration_loaded_by(Arc::new(move || loaded.configuration_loaded()));
            state.gateway = instance.relay();
            state.site = Some(Arc::new(berth_server::Site {
                registry: instance.name().to_owned(),
                parent: connection.parent_url(),
            }));
            println!(
                "berth: connected registry `{}`, parent {}",
                instance.name(),
                connection.parent_url()
            );
            Some(instance)
        }
        None => None,
    };
    let fixed_retention = config.change_log_retention;
    // Garbage collection on its schedule: the configuration's, or on a connected registry,
    // the one its parent's configuration gives (reported in its status).
    let local_gc = (config.gc.enabled, config.gc.schedule.clone());
    match &instance {
        Some(instance) => {
            let (plan_of, report_to) = (Arc::clone(instance), Arc::clone(instance));
            spawn_gc_scheduler(
                Arc::clone(&state.registry),
                config.gc.options.clone(),
                Arc::clone(&metrics),
                move || {
                    plan_of
                        .gc_settings()
                        .map_or_else(|| local_gc.clone(), |gc| (gc.enabled, gc.schedule))
                },
                move |run| {
                    report_to.record_gc(berth_auth::connected::GcSummary {
                        at: run.finished_at.unwrap_or(run.started_at),
                        outcome: run.outcome.clone(),
                        blobs_removed: run.blobs_removed,
                        bytes_freed: run.bytes_freed,
                    })
                },
            );
        }
        None => spawn_gc_scheduler(
            Arc::clone(&state.registry),
            config.gc.options.clone(),
            Arc::clone(&metrics),
            move || local_gc.clone(),
            |_| {},
        ),
    }
    match &instance {
        Some(instance) => {
            let instance = Arc::clone(instance);
            spawn_change_log_pruner(Arc::clone(&state.registry), fixed_retention, move || {
                instance.children_message_ttls()
            });
        }
        None => {
            let identity = Arc::clone(&state.identity);
            spawn_change_log_pruner(Arc::clone(&state.registry), fixed_retention, move || {
                identity
                    .hierarchy()
                    .definitions()
                    .into_iter()
                    .map(|r| r.sync.message_ttl.duration())
                    .collect()
            });
        }
    }
    state.stopping = stopping.clone();
    // Requests are recorded (metrics, access log) when anything reads what is recorded.
    let access_log = if config.observability.access_log {
        Some(berth_server::observe::AccessLog::start(
            config.observability.log_format,
            Arc::clone(&metrics),
        )?)
    } else {
        None
    };
    let observe = (access_log.is_some() || metrics_listener.is_some()).then(|| {
        Arc::new(berth_server::observe::Observer {
            metrics: Arc::clone(&metrics),
            access_log: access_log.clone(),
        })
    });
    let listener_config = ListenerConfig {
        shutdown_grace: config.shutdown_grace,
        limits: config.limits.clone(),
        observe,
        ..ListenerConfig::default()
    };
    if let Some(listener) = metrics_listener {
        println!(
            "berth: metrics listening on http://{}/metrics",
            listener.local_addr()?
        );
        let mut stopping = stopping.clone();
        tokio::spawn(berth_server::serve(
            listener,
            berth_server::observe::metrics_router(state.clone()),
            ListenerConfig {
                shutdown_grace: Duration::from_secs(1),
                limits: config.limits.clone(),
                ..ListenerConfig::default()
            },
            async move {
                let _ = stopping.wait_for(|stopping| *stopping).await;
            },
        ));
    }
    // Every listener is bound (the accept loops start below).
    state.readiness.listeners_bound();
    let imports = Arc::clone(&state.imports);
    let server = listeners.serve(state, listener_config, stopping);
    spawn_hangup_logger();
    tokio::spawn(async move {
        shutdown_signal().await;
        // Long polls of connected registries answer now, so in-flight requests finish soon.
        let _ = stop.send(true);
    });
    match instance {
        None => server.await?,
        Some(instance) => {
            // The link with the parent runs beside the server; it only ends on a fatal error.
            tokio::select! {
                served = server => served?,
                fatal = instance.run() => return Err(InstanceStopped(fatal).into()),
            }
        }
    }
    // Imports under way stop with the registry; their upload sessions go with them.
    imports.shutdown(Duration::from_secs(5)).await;
    if let Some(access_log) = &access_log {
        access_log.flush();
    }
    tracing::info!("registry stopped");
    Ok(())
}

/// The login server's `host[:port]`: the public URL's, else the address it listens on.
fn login_host(config: &Config, addr: std::net::SocketAddr) -> String {
    config
        .public_url
        .as_deref()
        .map(|u| {
            u.split("://")
                .nth(1)
                .unwrap_or(u)
                .trim_end_matches('/')
                .to_owned()
        })
        .unwrap_or_else(|| addr.to_string())
}

/// Raises the open-file soft limit to the hard limit (a registry holds a descriptor per
/// connection, per blob read and per upload), then lowers the per-listener connection cap,
/// with a warning, if the limit cannot hold every listener's connections with room to spare
/// for files and databases.
fn fit_connections_to_file_limit(config: &mut Config) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise the open-file limit to its hard limit")
            }
        }
    }
    let Some(files) = limit.current else { return };
    // Descriptors kept for the databases, blob reads, uploads and certificates.
    const SPARE: u64 = 256;
    let listeners =
        1 + config.private_endpoints.len() as u64 + u64::from(config.data_endpoint.is_some());
    let fits = usize::try_from(files.saturating_sub(SPARE) / listeners)
        .unwrap_or(usize::MAX)
        .max(1);
    if fits < config.limits.max_connections {
        tracing::warn!(
            open_file_limit = files,
            max_connections = fits,
            "the open-file limit holds only {fits} connections per listener; lowering max_connections to that"
        );
        config.limits.max_connections = fits;
    }
}

/// `berth migrate`: opens (and so migrates) the metadata and identity databases, and says
/// where they stand. The embedded ones need the data directory to themselves.
async fn migrate(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let (metadata, identities) = match &config.database {
        Database::Embedded => {
            let _lock = data_dir::DataDirLock::acquire(&config.data_dir)?;
            let metadata = SqliteMetadata::open(&config.data_dir.join("metadata.db")).await?;
            let identities =
                SqliteIdentityStore::open(&config.data_dir.join("identity.db")).await?;
            (
                metadata.schema_version().await?,
                identities.schema_version().await?,
            )
        }
        Database::Postgres(url) => {
            let metadata = PostgresMetadata::connect(url).await?;
            let identities = PostgresIdentityStore::connect(url).await?;
            (
                metadata.schema_version().await?,
                identities.schema_version().await?,
            )
        }
    };
    let place = match &config.database {
        Database::Embedded => format!("in {}", config.data_dir.display()),
        Database::Postgres(_) => "in PostgreSQL".to_owned(),
    };
    println!(
        "berth: the databases {place} are up to date: metadata at migration {metadata}, identities at migration {identities}"
    );
    Ok(())
}

/// How often a node on a shared database says it is alive, and how long it counts as alive
/// after.
const NODE_HEARTBEAT: Duration = Duration::from_secs(10);
const NODE_ALIVE: Duration = Duration::from_secs(30);

/// Opens the registry's stores: blobs in the data directory or in object storage, metadata
/// in `metadata.db` there or in PostgreSQL. On PostgreSQL, the node joins the others
/// sharing the database, and refuses to start beside live ones that keep blobs elsewhere.
async fn open_registry(config: &Config) -> Result<Registry, Box<dyn std::error::Error>> {
    let shown = config.data_dir.display();
    let (blobs, location): (Arc<dyn BlobStore>, String) = match &config.storage_url {
        None => {
            let store = FsBlobStore::open(&config.data_dir)
                .map_err(|e| format!("cannot open the data directory `{shown}`: {e}"))?;
            (Arc::new(store), format!("file://{}", node_name(config)))
        }
        Some(url) => {
            let store = ObjectBlobStore::from_url(&url.0)
                .map_err(|e| format!("cannot use the storage URL: {e}"))?;
            store
                .check()
                .await
                .map_err(|e| format!("cannot reach the blob storage: {e}"))?;
            tracing::info!(storage = store.location(), "blobs are in object storage");
            let location = store.location().to_owned();
            (Arc::new(store), location)
        }
    };
    let url = match &config.database {
        Database::Embedded => {
            let metadata = SqliteMetadata::open(&config.data_dir.join("metadata.db"))
                .await
                .map_err(|e| format!("cannot open the data directory `{shown}`: {e}"))?;
            return Ok(Registry::new(
                blobs,
                Arc::new(metadata),
                config.registry.clone(),
            ));
        }
        Database::Postgres(url) => url,
    };
    let metadata = PostgresMetadata::connect(url)
        .await
        .map_err(|e| format!("cannot open the metadata in PostgreSQL: {e}"))?;
    let node = node_name(config);
    let elsewhere = metadata
        .join_cluster(&node, &location, NODE_ALIVE)
        .await
        .map_err(|e| format!("cannot join the nodes sharing the database: {e}"))?;
    if !elsewhere.is_empty() {
        let others: Vec<String> = elsewhere
            .iter()
            .map(|(id, storage)| format!("`{id}` (blobs in {storage})"))
            .collect();
        return Err(format!(
            "this node keeps its blobs in {location}, but {} sharing the database keep theirs elsewhere: \
             every node on one database must use the same object storage (--storage-url), or the \
             others' clients would find manifests whose blobs they cannot read",
            others.join(", ")
        )
        .into());
    }
    spawn_heartbeat(metadata.clone(), node);
    // Wake-ups cross nodes through the database: a push on another node wakes this one's
    // long polls.
    let notifier = berth_notify::postgres::PgNotifier::start(url)
        .await
        .map_err(|e| format!("cannot listen for changes in PostgreSQL: {e}"))?;
    tracing::info!("metadata and identities are in PostgreSQL");
    let registry = Registry::new(blobs, Arc::new(metadata), config.registry.clone());
    Ok(registry.with_notifier(notifier))
}

/// This node among those sharing a database: its host name and data directory.
fn node_name(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let dir = std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    format!("{host}{}", dir.display())
}

/// Tells the other nodes this one is alive, every few seconds.
fn spawn_heartbeat(metadata: PostgresMetadata, node: String) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(NODE_HEARTBEAT);
        let mut failing = false;
        loop {
            tick.tick().await;
            match metadata.heartbeat(&node).await {
                Ok(()) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("the node's heartbeat reaches the database again");
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot record the node's heartbeat; retrying");
                }
                Err(_) => {}
            }
        }
    });
}

/// Opens identities (creating the admin account and the keys on first start) and prints a
/// generated admin password, once. Keys that an earlier version kept in files of the data
/// directory move into the identity store (so what they signed stays valid), and the files
/// go.
async fn open_identity(
    config: &Config,
    notifier: Arc<dyn berth_notify::Notifier>,
) -> Result<Identity, Box<dyn std::error::Error>> {
    let store: Arc<dyn IdentityStore> = match &config.database {
        Database::Embedded => Arc::new(
            SqliteIdentityStore::open(&config.data_dir.join("identity.db"))
                .await
                .map_err(|e| format!("cannot open the identity database: {e}"))?,
        ),
        Database::Postgres(url) => Arc::new(
            PostgresIdentityStore::connect(url)
                .await
                .map_err(|e| format!("cannot open the identities in PostgreSQL: {e}"))?,
        ),
    };
    let legacy = |file: &str| {
        let path = config.data_dir.join(file);
        SigningKey::load(&path)
            .map(|key| key.map(|key| (key, path.clone())))
            .map_err(|e| format!("cannot read the key file `{}`: {e}", path.display()))
    };
    let (tokens_file, data_urls_file) = (legacy("signing.key")?, legacy("data-url.key")?);
    let tokens_key = tokens_file
        .as_ref()
        .map_or_else(SigningKey::generate, |(key, _)| key.clone());
    let (identity, generated) =
        Identity::open_with(store, tokens_key, config.identity.clone(), notifier).await?;
    identity
        .management()
        .ensure_key(
            KeyPurpose::DataUrls,
            data_urls_file.as_ref().map(|(key, _)| key.clone()),
        )
        .await?;
    for (_, path) in tokens_file.iter().chain(&data_urls_file) {
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove `{}`: {e}", path.display()))?;
        tracing::info!(file = %path.display(), "moved the key kept in this file into the identity store");
    }
    if let Some(password) = generated {
        println!(
            "berth: created the admin account `{}` with password:",
            config.identity.admin_username
        );
        println!();
        println!("    {password}");
        println!();
        println!(
            "berth: this password is shown only once. Store it now, or set BERTH_ADMIN_PASSWORD to choose your own."
        );
    }
    Ok(identity)
}

/// Forgets changes older than the retention, periodically. The retention is the configured
/// one, else the longest message TTL among the connected registries that read this log
/// (`ttls`), else two days: a child away longer catches up by comparing content.
fn spawn_change_log_pruner(
    registry: Arc<Registry>,
    fixed: Option<Duration>,
    ttls: impl Fn() -> Vec<Duration> + Send + 'static,
) {
    let period = fixed.map_or(Duration::from_secs(3600), |r| {
        (r / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let retention = fixed.unwrap_or_else(|| {
                ttls()
                    .into_iter()
                    .max()
                    .unwrap_or(Duration::from_secs(2 * 24 * 3600))
            });
            // One node of a cluster prunes; the others skip this turn.
            let Some(_pruning) = registry
                .turn(Exclusive::ChangeLogPruning, "prune the change log")
                .await
            else {
                continue;
            };
            match registry.prune_changes(retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "pruned the change log"),
                Err(e) => tracing::warn!(error = %e, "could not prune the change log"),
            }
        }
    });
}

/// Picks up identity changes other processes sharing the identity store made (this one's
/// own are in force at once), by reading the store's change log as soon as the notifier
/// announces a change (another node's, through PostgreSQL) and every second in any case:
/// one small query while nothing changes.
fn spawn_identity_follower(identity: Arc<Identity>, notifier: Arc<dyn berth_notify::Notifier>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut announced = notifier.subscribe(berth_notify::Topic::Identity);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = announced.changed() => {}
            }
            match identity.refresh().await {
                Ok(changed) => {
                    if changed {
                        tracing::debug!("picked up identity changes from the store");
                    }
                    if std::mem::take(&mut failing) {
                        tracing::info!("reading the identity change log works again");
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "could not read the identity change log; retrying");
                }
                Err(_) => {}
            }
        }
    });
}

/// Runs garbage collection at each tick of its schedule (`plan` gives whether it is on and
/// the schedule, read again every minute, so a change of configuration takes effect), and
/// hands each run's outcome to `ran`. A tick that comes while a collection started by hand
/// runs is skipped.
fn spawn_gc_scheduler(
    registry: Arc<Registry>,
    options: berth_registry::gc::GcOptions,
    metrics: Arc<berth_metrics::Metrics>,
    plan: impl Fn() -> (bool, berth_auth::connected::SyncSchedule) + Send + 'static,
    ran: impl Fn(&berth_registry::GcRun) + Send + 'static,
) {
    tokio::spawn(async move {
        let mut after = jiff::Timestamp::now();
        loop {
            let (enabled, schedule) = plan();
            let next = schedule
                .cron()
                .and_then(|cron| cron.next_after(after))
                .filter(|_| enabled);
            let now = jiff::Timestamp::now();
            match next {
                Some(tick) if tick <= now => {
                    after = now;
                    // Every node of a cluster wakes at the tick: the first collects, and a
                    // node that comes after it finished sees its run and skips.
                    let ran_already = registry
                        .gc()
                        .runs(1)
                        .await
                        .ok()
                        .and_then(|r| r.into_iter().next())
                        .is_some_and(|last| last.started_at >= tick.as_second());
                    if ran_already {
                        tracing::info!("scheduled garbage collection skipped: another node ran it");
                        continue;
                    }
                    match registry.gc().start(false).await {
                        Ok(handle) => {
                            let run = registry.gc().collect(&handle, &options).await;
                            metrics.gc_finished(&run.outcome, run.blobs_removed, run.bytes_freed);
                            ran(&run);
                        }
                        Err(e) => {
                            tracing::info!(reason = %e, "scheduled garbage collection skipped")
                        }
                    }
                }
                Some(tick) => {
                    let wait = (tick - now)
                        .try_into()
                        .unwrap_or(Duration::from_secs(60))
                        .min(Duration::from_secs(60));
                    tokio::time::sleep(wait).await;
                }
                None => {
                    after = now;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            }
        }
    });
}

/// Removes abandoned upload sessions at start and then periodically.
fn spawn_upload_sweeper(registry: Arc<Registry>) {
    let period = (registry.config().upload_max_age / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(3600));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            // One node of a cluster sweeps; the others skip this turn.
            let Some(_sweeping) = registry
                .turn(Exclusive::UploadSweep, "sweep upload sessions")
                .await
            else {
                continue;
            };
            match registry.uploads().sweep().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "removed abandoned upload sessions"),
                Err(e) => tracing::warn!(error = %e, "could not sweep upload sessions"),
            }
        }
    });
}

/// SIGHUP reloads certificates (each listener's reloader listens for it); it must never end
/// the process, as its default action would, even on a registry without TLS.
fn spawn_hangup_logger() {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("install a SIGHUP handler");
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: certificates are re-read; nothing else is reloaded");
        }
    });
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
