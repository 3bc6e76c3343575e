//! Configuration, parsed once at start.
//!
//! Each setting comes from, in order of precedence: a command-line flag, a `BERTH_*`
//! environment variable, a key of the TOML file named by `--config` (or `BERTH_CONFIG`), and
//! finally the embedded default. Clap handles the first two; this module merges the file and
//! the defaults under them and validates the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_auth::IdentityConfig;
use berth_registry::RegistryConfig;
use berth_server::ConnectionLimits;
use berth_server::tls::TlsFiles;
use berth_sync::ConnectionString;
use serde::Deserialize;

/// `berth serve`'s flags (each also readable from its `BERTH_*` variable).
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "BERTH_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for blobs and the database [default: ./berth-data].
    #[arg(long, env = "BERTH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL database for metadata and identities, `postgres://USER:PASSWORD@HOST:PORT/DB`
    /// [default: SQLite files in the data directory].
    #[arg(
        long,
        env = "BERTH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Object storage for blobs, `s3://BUCKET/PREFIX?endpoint=…&region=…` or
    /// `azblob://CONTAINER/PREFIX?account=…` [default: the data directory].
    #[arg(
        long,
        env = "BERTH_STORAGE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub storage_url: Option<String>,
    /// Largest manifest accepted, in bytes [default: 4194304].
    #[arg(long, env = "BERTH_MAX_MANIFEST_SIZE", value_name = "BYTES")]
    pub max_manifest_size: Option<usize>,
    /// Longest repository name accepted, in bytes [default: 255].
    #[arg(long, env = "BERTH_MAX_NAME_LENGTH", value_name = "BYTES")]
    pub max_name_length: Option<usize>,
    /// Idle upload sessions older than this are removed, e.g. `24h`, `90m` [default: 24h].
    #[arg(long, env = "BERTH_UPLOAD_MAX_AGE", value_name = "DURATION")]
    pub upload_max_age: Option<String>,
    /// How long in-flight requests may run after SIGTERM or SIGINT [default: 30s].
    #[arg(long, env = "BERTH_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Log filter, e.g. `info`, `debug`, `berth_server=debug` [default: info].
    #[arg(long, env = "BERTH_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// The admin's user name [default: admin].
    #[arg(long, env = "BERTH_ADMIN_USERNAME", value_name = "NAME")]
    pub admin_username: Option<String>,
    /// The admin's password; when unset, one is generated at first start and printed once.
    #[arg(
        long,
        env = "BERTH_ADMIN_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub admin_password: Option<String>,
    /// Lifetime of access tokens issued by `/oauth2/token` [default: 5m].
    #[arg(long, env = "BERTH_ACCESS_TOKEN_TTL", value_name = "DURATION")]
    pub access_token_ttl: Option<String>,
    /// Failed logins allowed per client address per minute [default: 10].
    #[arg(long, env = "BERTH_LOGIN_FAILURES_PER_MINUTE", value_name = "N")]
    pub login_failures_per_minute: Option<u32>,
    /// Argon2 checks (~19 MiB each: admin logins, failed logins) running at once in the process
    /// [default: the number of CPUs].
    #[arg(long, env = "BERTH_MAX_PASSWORD_CHECKS", value_name = "N")]
    pub max_password_checks: Option<usize>,
    /// URL clients reach the registry at, for token challenges [default: from each request's Host].
    #[arg(long, env = "BERTH_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Run as a connected registry with this connection string (from `berth connected-registry get-settings`).
    #[arg(
        long,
        env = "BERTH_CONNECTION_STRING",
        value_name = "STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
    /// How long the change log keeps changes for connected registries that are away
    /// [default: the longest message TTL of the connected registries below, or P2D].
    #[arg(long, env = "BERTH_CHANGE_LOG_RETENTION", value_name = "DURATION")]
    pub change_log_retention: Option<String>,
    /// Overrides the connection string's ParentGatewayEndpoint (`host[:port]`).
    #[arg(long, env = "BERTH_PARENT_GATEWAY_ENDPOINT", value_name = "HOST:PORT")]
    pub parent_gateway_endpoint: Option<String>,
    /// The audit log's and webhooks' settings.
    #[command(flatten)]
    pub events: crate::events_config::EventsArgs,
    /// PEM file of CA certificates to trust for the parent, beside the system's store.
    #[arg(long, env = "BERTH_PARENT_CA_CERT", value_name = "FILE")]
    pub parent_ca_cert: Option<PathBuf>,
    /// PEM certificate chain for the login server's listener (TLS; with --tls-key).
    #[arg(long, env = "BERTH_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the login server's listener.
    #[arg(long, env = "BERTH_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Proxies whose X-Forwarded-For / Forwarded headers are believed (addresses or ranges,
    /// comma-separated) [default: none].
    #[arg(
        long,
        env = "BERTH_TRUSTED_PROXIES",
        value_name = "ADDRS",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// A private endpoint listener, `NAME=ADDR` (repeatable); it starts Pending. For TLS or
    /// pre-approval, use `[[private_endpoints]]` in the configuration file.
    #[arg(long = "private-endpoint", value_name = "NAME=ADDR")]
    pub private_endpoints: Vec<String>,
    /// Address of the dedicated data endpoint's listener [default: none].
    #[arg(long, env = "BERTH_DATA_ENDPOINT_LISTEN", value_name = "ADDR")]
    pub data_endpoint_listen: Option<SocketAddr>,
    /// URL clients reach the data endpoint at [default: from its listen address].
    #[arg(long, env = "BERTH_DATA_ENDPOINT_URL", value_name = "URL")]
    pub data_endpoint_url: Option<String>,
    /// How long a signed data endpoint URL is valid, 20m to 30m [default: 25m].
    #[arg(long, env = "BERTH_DATA_URL_TTL", value_name = "DURATION")]
    pub data_url_ttl: Option<String>,
    /// How long a new connection may stay silent before its first byte [default: 10s].
    #[arg(long, env = "BERTH_FIRST_BYTE_TIMEOUT", value_name = "DURATION")]
    pub first_byte_timeout: Option<String>,
    /// How long a client may take to send a request's headers (and, on a new connection,
    /// its TLS handshake and first request) [default: 30s].
    #[arg(long, env = "BERTH_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    pub header_read_timeout: Option<String>,
    /// How long a connection with no request in flight is kept open [default: 60s].
    #[arg(long, env = "BERTH_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// How often HTTP/2 connections are pinged [default: 30s].
    #[arg(long, env = "BERTH_HTTP2_KEEPALIVE_INTERVAL", value_name = "DURATION")]
    pub http2_keepalive_interval: Option<String>,
    /// How long an HTTP/2 ping may go unanswered [default: 20s].
    #[arg(long, env = "BERTH_HTTP2_KEEPALIVE_TIMEOUT", value_name = "DURATION")]
    pub http2_keepalive_timeout: Option<String>,
    /// The longest gap allowed inside a request body [default: 30s].
    #[arg(long, env = "BERTH_BODY_IDLE_TIMEOUT", value_name = "DURATION")]
    pub body_idle_timeout: Option<String>,
    /// The least average rate of a request body, in bytes a second, after the body idle
    /// timeout from its start; 0 for none [default: 1024].
    #[arg(long, env = "BERTH_MIN_BODY_RATE", value_name = "BYTES")]
    pub min_body_rate: Option<u64>,
    /// The most connections open at once per listener; the longest idle is shed for a new
    /// one [default: 4096].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Run garbage collection on its schedule [default: true]. (A connected registry
    /// follows its resource's `--gc-enabled` instead.)
    #[arg(long, env = "BERTH_GC_ENABLED", value_name = "BOOL")]
    pub gc_enabled: Option<bool>,
    /// When garbage collection runs, a 5-field cron expression in UTC [default: 30 3 * * *].
    #[arg(long, env = "BERTH_GC_SCHEDULE", value_name = "CRON")]
    pub gc_schedule: Option<String>,
    /// Blobs unreferenced for less than this since their last upload or link are kept
    /// [default: 1h].
    #[arg(long, env = "BERTH_GC_GRACE", value_name = "DURATION")]
    pub gc_grace: Option<String>,
    /// Address of a plain-HTTP listener serving `/metrics`, `/healthz` and `/readyz` only,
    /// with no network rules: bind it where only monitoring reaches [default: none].
    #[arg(long, env = "BERTH_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Count requests per repository too (label values grow with the repositories)
    /// [default: false].
    #[arg(long, env = "BERTH_METRICS_REPOSITORY_LABELS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub metrics_repository_labels: Option<bool>,
    /// Log lines as `text` or `json` (one object per line) [default: text].
    #[arg(long, env = "BERTH_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// A line per request on standard error, `on` or `off` [default: on].
    #[arg(long, env = "BERTH_ACCESS_LOG", value_name = "on|off")]
    pub access_log: Option<String>,
}

/// The keys of the TOML configuration file; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    storage_url: Option<String>,
    max_manifest_size: Option<usize>,
    max_name_length: Option<usize>,
    upload_max_age: Option<String>,
    shutdown_grace: Option<String>,
    log: Option<String>,
    admin_username: Option<String>,
    admin_password: Option<String>,
    access_token_ttl: Option<String>,
    login_failures_per_minute: Option<u32>,
    max_password_checks: Option<usize>,
    public_url: Option<String>,
    connection_string: Option<String>,
    parent_gateway_endpoint: Option<String>,
    parent_ca_cert: Option<PathBuf>,
    change_log_retention: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    trusted_proxies: Option<Vec<String>>,
    private_endpoints: Option<Vec<PrivateEndpointFile>>,
    data_endpoint: Option<DataEndpointFile>,
    first_byte_timeout: Option<String>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    http2_keepalive_interval: Option<String>,
    http2_keepalive_timeout: Option<String>,
    body_idle_timeout: Option<String>,
    min_body_rate: Option<u64>,
    max_connections: Option<usize>,
    gc: Option<GcFile>,
    events: Option<crate::events_config::EventsFile>,
    metrics_listen: Option<SocketAddr>,
    metrics_repository_labels: Option<bool>,
    log_format: Option<String>,
    access_log: Option<String>,
}

/// `[gc]` in the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcFile {
    enabled: Option<bool>,
    schedule: Option<String>,
    grace: Option<String>,
    #[serde(default)]
    retention: Vec<RetentionFile>,
}

/// `[[gc.retention]]`: keep the newest `keep_last` tags and those younger than
/// `keep_within` in the repositories `repositories` names; untag the rest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFile {
    repositories: String,
    keep_last: Option<u32>,
    keep_within: Option<String>,
    #[serde(default)]
    delete_untagged: bool,
}

/// Garbage collection, as configured.
#[derive(Debug, Clone)]
pub struct GcConfig {
    /// Whether it runs on its schedule.
    pub enabled: bool,
    /// When.
    pub schedule: berth_auth::connected::SyncSchedule,
    /// How it runs: grace, retention rules.
    pub options: berth_registry::gc::GcOptions,
}

/// The default schedule: daily at a quiet hour (03:30 UTC).
pub const DEFAULT_GC_SCHEDULE: &str = "30 3 * * *";

/// `[[private_endpoints]]` in the configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateEndpointFile {
    name: String,
    listen: SocketAddr,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    approved: bool,
    #[serde(default)]
    description: String,
}

/// `[data_endpoint]` in the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataEndpointFile {
    listen: Option<SocketAddr>,
    url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    url_ttl: Option<String>,
}

/// A private endpoint's listener.
#[derive(Debug, Clone)]
pub struct PrivateEndpointConfig {
    /// Its name, the handle of its connection state.
    pub name: String,
    /// Address bound.
    pub listen: SocketAddr,
    /// Certificate, when TLS.
    pub tls: Option<TlsFiles>,
    /// Approved from the start (only when the connection was never decided on).
    pub approved: bool,
    /// Description shown with the connection.
    pub description: String,
}

/// The dedicated data endpoint.
#[derive(Debug, Clone)]
pub struct DataEndpointConfig {
    /// Address bound.
    pub listen: SocketAddr,
    /// URL clients reach it at.
    pub url: String,
    /// Certificate, when TLS.
    pub tls: Option<TlsFiles>,
    /// Validity of signed URLs.
    pub url_ttl: Duration,
}

/// The configuration in force, after merging and validation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the registry's listener.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Where metadata and identities are kept.
    pub database: Database,
    /// Object storage for blobs (`s3://…`, `azblob://…`); `None`: the data directory.
    pub storage_url: Option<StorageUrl>,
    /// Registry limits and ages.
    pub registry: RegistryConfig,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Log filter.
    pub log: String,
    /// Identity settings.
    pub identity: IdentityConfig,
    /// The URL clients reach the registry at.
    pub public_url: Option<String>,
    /// Set when running as a connected registry.
    pub connection: Option<ConnectionString>,
    /// Fixed change log retention, when configured.
    pub change_log_retention: Option<Duration>,
    /// The audit log's and webhooks' settings.
    pub events: crate::events_config::EventsConfig,
    /// The login server's certificate, when it serves TLS.
    pub tls: Option<TlsFiles>,
    /// Canonical addresses and ranges of trusted proxies.
    pub trusted_proxies: Vec<String>,
    /// Private endpoint listeners.
    pub private_endpoints: Vec<PrivateEndpointConfig>,
    /// The data endpoint, when configured.
    pub data_endpoint: Option<DataEndpointConfig>,
    /// Timeouts and caps of every listener's connections.
    pub limits: ConnectionLimits,
    /// Garbage collection.
    pub gc: GcConfig,
    /// Metrics, health and logs.
    pub observability: ObservabilityConfig,
}

/// Metrics, health and logs, as configured.
#[derive(Debug, Clone)]
pub struct ObservabilityConfig {
    /// The metrics listener's address, when on.
    pub metrics_listen: Option<SocketAddr>,
    /// Per-repository request counts.
    pub repository_labels: bool,
    /// How log lines (the access log's included) are written.
    pub log_format: berth_server::observe::LogFormat,
    /// Whether each request gets an access log line.
    pub access_log: bool,
}

/// Metrics, health and logs: flags over file over defaults.
fn observability(
    args: &mut ServeArgs,
    file: &mut FileConfig,
) -> Result<ObservabilityConfig, ConfigError> {
    use berth_server::observe::LogFormat;
    let log_format = match args.log_format.take().or(file.log_format.take()).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(ConfigError::Invalid {
                key: "log_format",
                message: format!("`{other}` is neither `text` nor `json`"),
            });
        }
    };
    let access_log = match args.access_log.take().or(file.access_log.take()).as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => {
            return Err(ConfigError::Invalid {
                key: "access_log",
                message: format!("`{other}` is neither `on` nor `off`"),
            });
        }
    };
    Ok(ObservabilityConfig {
        metrics_listen: args.metrics_listen.or(file.metrics_listen),
        repository_labels: args
            .metrics_repository_labels
            .or(file.metrics_repository_labels)
            .unwrap_or(false),
        log_format,
        access_log,
    })
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file `{path}`: {source}")]
    Read {
        /// File named.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for Berth.
    #[error("configuration file `{path}` is invalid: {message}")]
    Parse {
        /// File named.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("setting `{key}` is invalid: {message}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Where metadata and identities are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// `metadata.db` and `identity.db` in the data directory (the default).
    Embedded,
    /// A PostgreSQL database, which several nodes may share.
    Postgres(String),
}

impl std::fmt::Debug for Database {
    /// Never shows the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Embedded => f.write_str("Embedded"),
            Database::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

fn database(url: Option<String>) -> Result<Database, ConfigError> {
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(Database::Embedded);
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Database::Postgres(url))
    } else {
        Err(ConfigError::Invalid {
            key: "database_url",
            message: "must be a PostgreSQL URL, `postgres://USER:PASSWORD@HOST:PORT/DATABASE` \
                      (leave it unset for the embedded database)"
                .into(),
        })
    }
}

/// An object storage URL; shown without its query, which may hold keys.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageUrl(pub String);

impl std::fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.0.split('?').next().unwrap_or_default();
        write!(f, "StorageUrl({shown:?})")
    }
}

fn storage_url(url: Option<String>) -> Result<Option<StorageUrl>, ConfigError> {
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    if url.starts_with("s3://") || url.starts_with("azblob://") {
        Ok(Some(StorageUrl(url)))
    } else {
        Err(ConfigError::Invalid {
            key: "storage_url",
            message: "must be `s3://BUCKET/PREFIX?…` or `azblob://CONTAINER/PREFIX?…` \
                      (leave it unset to keep blobs in the data directory)"
                .into(),
        })
    }
}

fn parse_duration(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { key, message };
    // Days and weeks are taken as 24 hours and 7 days: `14d` for a retention means what it
    // says, whatever the clocks did in between.
    let parsed = value
        .parse::<jiff::Span>()
        .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
        .map_err(|e| {
            invalid(format!(
                "`{value}` is not a duration such as `14d`, `24h`, `90m` or `PT1H` ({e})"
            ))
        })?;
    Duration::try_from(parsed).map_err(|_| invalid(format!("`{value}` is negative")))
}

/// A duration setting: flag or variable, else file, else `default`; must not be zero.
pub(crate) fn duration_setting(
    key: &'static str,
    flag: Option<String>,
    file: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let value = match flag.or(file) {
        Some(v) => parse_duration(key, &v)?,
        None => default,
    };
    if value.is_zero() {
        return Err(ConfigError::Invalid {
            key,
            message: "must be longer than zero".into(),
        });
    }
    Ok(value)
}

/// The connection limits, flags over file over defaults.
fn connection_limits(
    args: &mut ServeArgs,
    file: &mut FileConfig,
) -> Result<ConnectionLimits, ConfigError> {
    let d = ConnectionLimits::default();
    let limits = ConnectionLimits {
        first_byte_timeout: duration_setting(
            "first_byte_timeout",
            args.first_byte_timeout.take(),
            file.first_byte_timeout.take(),
            d.first_byte_timeout,
        )?,
        header_read_timeout: duration_setting(
            "header_read_timeout",
            args.header_read_timeout.take(),
            file.header_read_timeout.take(),
            d.header_read_timeout,
        )?,
        idle_timeout: duration_setting(
            "idle_timeout",
            args.idle_timeout.take(),
            file.idle_timeout.take(),
            d.idle_timeout,
        )?,
        http2_keepalive_interval: duration_setting(
            "http2_keepalive_interval",
            args.http2_keepalive_interval.take(),
            file.http2_keepalive_interval.take(),
            d.http2_keepalive_interval,
        )?,
        http2_keepalive_timeout: duration_setting(
            "http2_keepalive_timeout",
            args.http2_keepalive_timeout.take(),
            file.http2_keepalive_timeout.take(),
            d.http2_keepalive_timeout,
        )?,
        body_idle_timeout: duration_setting(
            "body_idle_timeout",
            args.body_idle_timeout.take(),
            file.body_idle_timeout.take(),
            d.body_idle_timeout,
        )?,
        min_body_rate: args
            .min_body_rate
            .or(file.min_body_rate)
            .unwrap_or(d.min_body_rate),
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(d.max_connections),
    };
    if limits.max_connections == 0 {
        return Err(ConfigError::Invalid {
            key: "max_connections",
            message: "must be at least 1".into(),
        });
    }
    Ok(limits)
}

/// A certificate and key given together, or neither.
fn tls_files(
    key: &'static str,
    cert: Option<PathBuf>,
    private_key: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, private_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        _ => Err(ConfigError::Invalid {
            key,
            message: "a TLS certificate and its private key go together: set both files".into(),
        }),
    }
}

fn private_endpoints(
    flags: Vec<String>,
    file: Option<Vec<PrivateEndpointFile>>,
) -> Result<Vec<PrivateEndpointConfig>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "private_endpoints",
        message,
    };
    let mut endpoints = Vec::new();
    for flag in flags {
        let (name, listen) = flag
            .split_once('=')
            .ok_or_else(|| invalid(format!("`{flag}` is not of the form NAME=ADDR")))?;
        let listen = listen.parse().map_err(|e| {
            invalid(format!(
                "`{listen}` is not an address such as 10.0.0.5:5000 ({e})"
            ))
        })?;
        endpoints.push(PrivateEndpointConfig {
            name: name.to_owned(),
            listen,
            tls: None,
            approved: false,
            description: String::new(),
        });
    }
    for entry in file.unwrap_or_default() {
        endpoints.push(PrivateEndpointConfig {
            tls: tls_files("private_endpoints.tls_cert", entry.tls_cert, entry.tls_key)?,
            name: entry.name,
            listen: entry.listen,
            approved: entry.approved,
            description: entry.description,
        });
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        let name = &endpoint.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!(
                "name `{name}` is invalid: use 1 to 64 letters, digits, `-` or `_`"
            )));
        }
        if endpoints[..i].iter().any(|e| e.name == *name) {
            return Err(invalid(format!("name `{name}` is used twice")));
        }
    }
    Ok(endpoints)
}

/// The data endpoint, when a listen address is given (flags over the `[data_endpoint]`
/// section).
/// Garbage collection: flags over file over defaults.
fn gc_config(args: &mut ServeArgs, file: Option<GcFile>) -> Result<GcConfig, ConfigError> {
    let file = file.unwrap_or_default();
    let schedule_text = args
        .gc_schedule
        .take()
        .or(file.schedule)
        .unwrap_or_else(|| DEFAULT_GC_SCHEDULE.to_owned());
    let invalid = |key: &'static str| {
        move |e: berth_auth::IdentityError| ConfigError::Invalid {
            key,
            message: e.to_string(),
        }
    };
    let schedule = berth_auth::connected::SyncSchedule::parse(&schedule_text)
        .map_err(invalid("gc_schedule"))?;
    if schedule.is_continuous() {
        return Err(ConfigError::Invalid {
            key: "gc_schedule",
            message: "`* * * * *` would collect every minute; give a schedule such as `30 3 * * *`, or set gc_enabled = false".into(),
        });
    }
    berth_auth::connected::validate_schedule(&schedule_text).map_err(invalid("gc_schedule"))?;
    let grace = match args.gc_grace.take().or(file.grace) {
        Some(v) => parse_duration("gc_grace", &v)?,
        None => Duration::from_secs(3600),
    };
    let mut retention = Vec::new();
    for rule in file.retention {
        let invalid = |message: String| ConfigError::Invalid {
            key: "gc.retention",
            message: format!("rule for `{}`: {message}", rule.repositories),
        };
        if rule.repositories != "*" {
            let name = rule
                .repositories
                .strip_suffix("/*")
                .unwrap_or(&rule.repositories);
            berth_oci::RepositoryName::parse(name, berth_oci::name::DEFAULT_MAX_NAME_LENGTH)
                .map_err(|e| {
                    invalid(format!(
                        "`repositories` must be a name, `prefix/*` or `*` ({e})"
                    ))
                })?;
        }
        if rule.keep_last.is_none() && rule.keep_within.is_none() && !rule.delete_untagged {
            return Err(invalid(
                "give keep_last, keep_within or delete_untagged: a rule without any deletes nothing".into(),
            ));
        }
        let keep_within = rule
            .keep_within
            .as_deref()
            .map(|w| parse_duration("gc.retention.keep_within", w))
            .transpose()?;
        retention.push(berth_registry::gc::RetentionRule {
            repositories: rule.repositories,
            keep_last: rule.keep_last,
            keep_within,
            delete_untagged: rule.delete_untagged,
        });
    }
    Ok(GcConfig {
        enabled: args.gc_enabled.take().or(file.enabled).unwrap_or(true),
        schedule,
        options: berth_registry::gc::GcOptions {
            dry_run: false,
            grace,
            retention,
        },
    })
}

fn data_endpoint(
    listen: Option<SocketAddr>,
    url: Option<String>,
    url_ttl: Option<String>,
    section: DataEndpointFile,
) -> Result<Option<DataEndpointConfig>, ConfigError> {
    let Some(listen) = listen.or(section.listen) else {
        return Ok(None);
    };
    let tls = tls_files("data_endpoint.tls_cert", section.tls_cert, section.tls_key)?;
    let url_ttl = match url_ttl.or(section.url_ttl) {
        Some(v) => parse_duration("data_endpoint.url_ttl", &v)?,
        None => Duration::from_secs(25 * 60),
    };
    let (min, max) = berth_server::data::TTL_RANGE;
    if url_ttl < min || url_ttl > max {
        return Err(ConfigError::Invalid {
            key: "data_endpoint.url_ttl",
            message: "signed URLs live between 20m and 30m".into(),
        });
    }
    let scheme = berth_server::network::scheme(tls.is_some());
    let url = url
        .or(section.url)
        .unwrap_or_else(|| format!("{scheme}://{listen}"));
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(ConfigError::Invalid {
            key: "data_endpoint.url",
            message: format!("`{url}` is not an http:// or https:// URL"),
        });
    }
    Ok(Some(DataEndpointConfig {
        listen,
        url,
        tls,
        url_ttl,
    }))
}

impl Config {
    /// Merges flags and environment (already in `args`) over the file and the defaults.
    pub fn load(mut args: ServeArgs) -> Result<Config, ConfigError> {
        let mut file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let limits = connection_limits(&mut args, &mut file)?;
        let gc = gc_config(&mut args, file.gc.take())?;
        let events =
            crate::events_config::load(std::mem::take(&mut args.events), file.events.take())?;
        let observability = observability(&mut args, &mut file)?;
        let defaults = RegistryConfig::default();
        let registry = RegistryConfig {
            max_manifest_size: args
                .max_manifest_size
                .or(file.max_manifest_size)
                .unwrap_or(defaults.max_manifest_size),
            max_name_length: args
                .max_name_length
                .or(file.max_name_length)
                .unwrap_or(defaults.max_name_length),
            upload_max_age: match args.upload_max_age.or(file.upload_max_age) {
                Some(v) => parse_duration("upload_max_age", &v)?,
                None => defaults.upload_max_age,
            },
        };
        if registry.max_manifest_size == 0 {
            return Err(ConfigError::Invalid {
                key: "max_manifest_size",
                message: "must be at least 1 byte".into(),
            });
        }
        if registry.max_name_length == 0 {
            return Err(ConfigError::Invalid {
                key: "max_name_length",
                message: "must be at least 1 byte".into(),
            });
        }
        Ok(Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:5000".parse().expect("valid default")),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("berth-data")),
            database: database(args.database_url.or(file.database_url))?,
            storage_url: storage_url(args.storage_url.or(file.storage_url))?,
            registry,
            shutdown_grace: match args.shutdown_grace.or(file.shutdown_grace) {
                Some(v) => parse_duration("shutdown_grace", &v)?,
                None => Duration::from_secs(30),
            },
            log: args.log.or(file.log).unwrap_or_else(|| "info".into()),
            identity: {
                let defaults = IdentityConfig::default();
                IdentityConfig {
                    admin_username: args
                        .admin_username
                        .or(file.admin_username)
                        .unwrap_or(defaults.admin_username),
                    admin_password: args
                        .admin_password
                        .or(file.admin_password)
                        .filter(|p| !p.is_empty()),
                    access_token_ttl: match args.access_token_ttl.or(file.access_token_ttl) {
                        Some(v) => parse_duration("access_token_ttl", &v)?,
                        None => defaults.access_token_ttl,
                    },
                    login_failures_per_minute: args
                        .login_failures_per_minute
                        .or(file.login_failures_per_minute)
                        .unwrap_or(defaults.login_failures_per_minute),
                    max_password_checks: args
                        .max_password_checks
                        .or(file.max_password_checks)
                        .unwrap_or(defaults.max_password_checks)
                        .max(1),
                    ..defaults
                }
            },
            public_url: args.public_url.or(file.public_url),
            events,
            change_log_retention: args
                .change_log_retention
                .or(file.change_log_retention)
                .map(|v| parse_duration("change_log_retention", &v))
                .transpose()?,
            tls: tls_files(
                "tls_cert",
                args.tls_cert.or(file.tls_cert),
                args.tls_key.or(file.tls_key),
            )?,
            trusted_proxies: {
                let proxies = if args.trusted_proxies.is_empty() {
                    file.trusted_proxies.unwrap_or_default()
                } else {
                    args.trusted_proxies
                };
                proxies
                    .iter()
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| {
                        berth_auth::network::parse_ip_rule(p)
                            .map(|net| net.to_string())
                            .map_err(|e| ConfigError::Invalid {
                                key: "trusted_proxies",
                                message: e.to_string(),
                            })
                    })
                    .collect::<Result<_, _>>()?
            },
            private_endpoints: private_endpoints(args.private_endpoints, file.private_endpoints)?,
            data_endpoint: data_endpoint(
                args.data_endpoint_listen,
                args.data_endpoint_url,
                args.data_url_ttl,
                file.data_endpoint.unwrap_or_default(),
            )?,
            limits,
            gc,
            observability,
            connection: match args.connection_string.or(file.connection_string) {
                Some(text) => {
                    let mut connection =
                        ConnectionString::parse(&text).map_err(|e| ConfigError::Invalid {
                            key: "connection_string",
                            message: e.to_string(),
                        })?;
                    if let Some(endpoint) = args
                        .parent_gateway_endpoint
                        .or(file.parent_gateway_endpoint)
                    {
                        connection.set_parent_endpoint(endpoint).map_err(|e| {
                            ConfigError::Invalid {
                                key: "parent_gateway_endpoint",
                                message: e.to_string(),
                            }
                        })?;
                    }
                    if let Some(path) = args.parent_ca_cert.or(file.parent_ca_cert) {
                        connection.parent_ca = Some(read_ca_bundle(&path)?);
                    }
                    Some(connection)
                }
                None => None,
            },
        })
    }
}

/// Reads a PEM bundle of CA certificates, refusing a file without one.
fn read_ca_bundle(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: "parent_ca_cert",
        message,
    };
    let pem = std::fs::read(path)
        .map_err(|e| invalid(format!("cannot read `{}`: {e}", path.display())))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certificates) if !certificates.is_empty() => Ok(pem),
        Ok(_) => Err(invalid(format!(
            "`{}` holds no PEM certificate",
            path.display()
        ))),
        Err(e) => Err(invalid(format!(
            "`{}` is not a PEM bundle: {e}",
            path.display()
        ))),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::load(ServeArgs::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.data_dir, PathBuf::from("berth-data"));
        assert_eq!(c.registry.max_manifest_size, 4 << 20);
        assert_eq!(c.registry.upload_max_age, Duration::from_secs(86400));
        assert_eq!(c.database, Database::Embedded);
    }

    #[test]
    fn storage_url_is_object_storage_or_nothing() {
        let load = |url: &str| {
            Config::load(ServeArgs {
                storage_url: Some(url.into()),
                ..Default::default()
            })
        };
        let c = load("s3://bucket/berth?endpoint=http://127.0.0.1:9000&secret_access_key=hush")
            .unwrap();
        assert!(c.storage_url.is_some());
        assert!(!format!("{c:?}").contains("hush"), "keys are never shown");
        assert_eq!(load("").unwrap().storage_url, None);
        let e = load("/srv/blobs").unwrap_err().to_string();
        assert!(e.contains("storage_url") && e.contains("s3://"), "{e}");
    }

    #[test]
    fn database_url_is_postgres_or_nothing() {
        let load = |url: &str| {
            Config::load(ServeArgs {
                database_url: Some(url.into()),
                ..Default::default()
            })
        };
        let c = load("postgres://berth:secret@127.0.0.1:5432/berth").unwrap();
        assert_eq!(
            c.database,
            Database::Postgres("postgres://berth:secret@127.0.0.1:5432/berth".into())
        );
        assert!(
            !format!("{c:?}").contains("secret"),
            "the password is never shown"
        );
        assert_eq!(load("").unwrap().database, Database::Embedded);
        let e = load("mysql://x@y/z").unwrap_err().to_string();
        assert!(
            e.contains("database_url") && e.contains("postgres://"),
            "{e}"
        );
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"/srv/berth\"\nupload_max_age = \"90m\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            listen: Some("0.0.0.0:7000".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(args).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(c.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(c.registry.upload_max_age, Duration::from_secs(5400));
    }

    #[test]
    fn clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:6000\"\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `lisen`"), "{err}");
        let err = Config::load(ServeArgs {
            upload_max_age: Some("soon".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("upload_max_age"), "{err}");
    }

    #[test]
    fn durations_in_days_and_the_gc_section() {
        assert_eq!(
            parse_duration("k", "14d").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(
            parse_duration("k", "1w 2h").unwrap(),
            Duration::from_secs(7 * 86400 + 7200)
        );
        assert_eq!(
            parse_duration("k", "PT1H").unwrap(),
            Duration::from_secs(3600)
        );
        assert!(
            parse_duration("k", "-5m")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        assert!(parse_duration("k", "1 month").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "[gc]\ngrace = \"2h\"\n[[gc.retention]]\nrepositories = \"ci/*\"\nkeep_last = 10\nkeep_within = \"14d\"\ndelete_untagged = true\n",
        )
        .unwrap();
        let c = Config::load(ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.gc.options.grace, Duration::from_secs(7200));
        let rule = &c.gc.options.retention[0];
        assert_eq!(rule.keep_within, Some(Duration::from_secs(14 * 86400)));
        assert_eq!((rule.keep_last, rule.delete_untagged), (Some(10), true));
        std::fs::write(&path, "[[gc.retention]]\nrepositories = \"ci/*\"\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("deletes nothing"), "{err}");
    }

    #[test]
    fn observability_settings() {
        use berth_server::observe::LogFormat;
        let c = Config::load(ServeArgs::default()).unwrap();
        let o = &c.observability;
        assert_eq!(o.metrics_listen, None);
        assert!(o.access_log && !o.repository_labels);
        assert_eq!(o.log_format, LogFormat::Text);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "metrics_listen = \"127.0.0.1:9090\"\nlog_format = \"json\"\naccess_log = \"off\"\nmetrics_repository_labels = true\n",
        )
        .unwrap();
        let c = Config::load(ServeArgs {
            config: Some(path),
            access_log: Some("on".into()),
            ..Default::default()
        })
        .unwrap();
        let o = &c.observability;
        assert_eq!(o.metrics_listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(o.log_format, LogFormat::Json);
        assert!(o.access_log, "the flag wins over the file");
        assert!(o.repository_labels);
        let err = Config::load(ServeArgs {
            log_format: Some("xml".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("log_format"), "{err}");
        let err = Config::load(ServeArgs {
            access_log: Some("maybe".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("access_log"), "{err}");
    }

    #[test]
    fn network_listeners_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            r#"
tls_cert = "/etc/berth/r.crt"
tls_key = "/etc/berth/r.key"
trusted_proxies = ["10.0.0.1", "10.1.0.0/16"]

[[private_endpoints]]
name = "factory-lan"
listen = "10.20.0.5:443"
approved = true
description = "line 3"

[data_endpoint]
listen = "0.0.0.0:8443"
tls_cert = "/etc/berth/d.crt"
tls_key = "/etc/berth/d.key"
url_ttl = "20m"
"#,
        )
        .unwrap();
        let c = Config::load(ServeArgs {
            config: Some(path.clone()),
            private_endpoints: vec!["vpn=127.0.0.2:5000".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.tls.unwrap().cert, PathBuf::from("/etc/berth/r.crt"));
        assert_eq!(c.trusted_proxies, ["10.0.0.1/32", "10.1.0.0/16"]);
        let names: Vec<_> = c
            .private_endpoints
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["vpn", "factory-lan"]);
        assert!(c.private_endpoints[1].approved && !c.private_endpoints[0].approved);
        let data = c.data_endpoint.unwrap();
        assert_eq!(data.url, "https://0.0.0.0:8443");
        assert_eq!(data.url_ttl, Duration::from_secs(20 * 60));

        let invalid = |args: ServeArgs| Config::load(args).unwrap_err().to_string();
        let err = invalid(ServeArgs {
            tls_cert: Some("/a.crt".into()),
            ..Default::default()
        });
        assert!(
            err.contains("tls_cert") && err.contains("set both"),
            "{err}"
        );
        let err = invalid(ServeArgs {
            data_endpoint_listen: Some("127.0.0.3:5000".parse().unwrap()),
            data_url_ttl: Some("1h".into()),
            ..Default::default()
        });
        assert!(err.contains("between 20m and 30m"), "{err}");
        let err = invalid(ServeArgs {
            private_endpoints: vec!["a=127.0.0.2:1".into(), "a=127.0.0.2:2".into()],
            ..Default::default()
        });
        assert!(err.contains("used twice"), "{err}");
        let err = invalid(ServeArgs {
            private_endpoints: vec!["bad name=127.0.0.2:1".into()],
            ..Default::default()
        });
        assert!(err.contains("invalid"), "{err}");
        let err = invalid(ServeArgs {
            trusted_proxies: vec!["proxy.local".into()],
            ..Default::default()
        });
        assert!(err.contains("trusted_proxies"), "{err}");
    }
}
