//! Berth's Prometheus metrics: one [`Metrics`] per process, shared as an `Arc`, that the
//! HTTP layer, the background work (garbage collection) and connected-registry sync record
//! into, and that the metrics listener encodes on each scrape.
//!
//! Layout: [`RouteClass`] and [`MethodLabel`] are the small, fixed label values of every
//! request; [`Metrics`] holds every metric and the registry that encodes them;
//! [`LatencyHistogram`] is a lock-free histogram; [`ContentTotals`] is what the scrape
//! reads from the metadata store (cached, see [`Metrics::content_due`]).
//!
//! Invariants:
//! - **A request costs a few atomic operations.** Request counters, latency histograms and
//!   byte counters are resolved once per label combination and kept in fixed slots indexed
//!   by the route class, the method and the status code; a request never allocates, hashes
//!   or locks to record (only the first request of a combination does, once). The one
//!   exception is the opt-in per-repository counter (`--metrics-repository-labels`), which
//!   looks its label up by name.
//! - **Label values are bounded.** Route classes, methods, status codes, refusal causes
//!   and garbage-collection outcomes are fixed sets; sync links are named by connected
//!   registries, which the configuration bounds; repository names appear only when the
//!   operator asks for them.
//!
//! Depends on `prometheus-client` only, so every crate of Berth may record into it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode_openmetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of [`Metrics::encode_prometheus_text`].
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a request was for, by the endpoint it reached: a fixed set, so a label value that
/// never grows with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `/v2/`.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest,
    /// `/v2/<name>/blobs/<digest>`.
    Blob,
    /// `/v2/<name>/blobs/uploads/…`.
    Upload,
    /// `/v2/<name>/referrers/<digest>`.
    Referrers,
    /// `/oauth2/token`.
    Token,
    /// The management API, `/berth/v1/…`.
    Manage,
    /// The gateway of connected registries, `/berth/gateway/…`.
    Gateway,
    /// The data endpoint's signed blob URLs.
    Data,
    /// `/healthz`, `/readyz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// Anything else (answered 404).
    Other,
}

impl RouteClass {
    /// Every class, in slot order.
    pub const ALL: [RouteClass; 14] = [
        RouteClass::Base,
        RouteClass::Catalog,
        RouteClass::Tags,
        RouteClass::Manifest,
        RouteClass::Blob,
        RouteClass::Upload,
        RouteClass::Referrers,
        RouteClass::Token,
        RouteClass::Manage,
        RouteClass::Gateway,
        RouteClass::Data,
        RouteClass::Health,
        RouteClass::Metrics,
        RouteClass::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Base => "base",
            RouteClass::Catalog => "catalog",
            RouteClass::Tags => "tags",
            RouteClass::Manifest => "manifest",
            RouteClass::Blob => "blob",
            RouteClass::Upload => "upload",
            RouteClass::Referrers => "referrers",
            RouteClass::Token => "token",
            RouteClass::Manage => "manage",
            RouteClass::Gateway => "gateway",
            RouteClass::Data => "data",
            RouteClass::Health => "health",
            RouteClass::Metrics => "metrics",
            RouteClass::Other => "other",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A request's method, as a label: the methods Berth serves, and `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodLabel {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `PUT`.
    Put,
    /// `POST`.
    Post,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
    /// Anything else.
    Other,
}

impl MethodLabel {
    const COUNT: usize = 8;

    /// The label of a method given by name (`"GET"`).
    pub fn of(method: &str) -> MethodLabel {
        match method {
            "GET" => MethodLabel::Get,
            "HEAD" => MethodLabel::Head,
            "PUT" => MethodLabel::Put,
            "POST" => MethodLabel::Post,
            "PATCH" => MethodLabel::Patch,
            "DELETE" => MethodLabel::Delete,
            "OPTIONS" => MethodLabel::Options,
            _ => MethodLabel::Other,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodLabel::Get => "GET",
            MethodLabel::Head => "HEAD",
            MethodLabel::Put => "PUT",
            MethodLabel::Post => "POST",
            MethodLabel::Patch => "PATCH",
            MethodLabel::Delete => "DELETE",
            MethodLabel::Options => "OPTIONS",
            MethodLabel::Other => "other",
        }
    }
}

/// The status codes Berth answers with, each with a slot of its own; any other code is
/// recorded through the family's lookup (correct, only slower).
const KNOWN_CODES: [u16; 24] = [
    200, 201, 202, 204, 206, 304, 307, 400, 401, 403, 404, 405, 409, 413, 416, 429, 499, 500, 501,
    502, 503, 504, 507, 308,
];

fn code_slot(code: u16) -> Option<usize> {
    KNOWN_CODES.iter().position(|&c| c == code)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RepositoryLabels {
    repository: String,
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LinkLabels {
    link: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LinkDirectionLabels {
    link: String,
    direction: &'static str,
}

/// Why a listener's network gate refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCause {
    /// Public network access is off.
    PublicNetworkDisabled,
    /// No IP rule allows the client (default action Deny).
    IpNotAllowed,
    /// The private endpoint's connection is not Approved.
    PrivateEndpointNotApproved,
}

impl RefusalCause {
    fn as_str(self) -> &'static str {
        match self {
            RefusalCause::PublicNetworkDisabled => "public_network_disabled",
            RefusalCause::IpNotAllowed => "ip_not_allowed",
            RefusalCause::PrivateEndpointNotApproved => "private_endpoint_not_approved",
        }
    }
}

/// Which way bytes moved on a sync link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the parent to this registry.
    Down,
    /// From this registry to its parent.
    Up,
}

/// The upper bounds of the latency buckets, in seconds: from half a millisecond (a cached
/// manifest) to a minute (a large blob).
const LATENCY_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A histogram of durations on atomic counters: recording is a few relaxed atomic adds,
/// with no lock (prometheus-client's own histogram takes a lock on every observation).
/// Clones share their counts.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(std::sync::Arc<LatencyInner>);

#[derive(Debug)]
struct LatencyInner {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
    bounds_nanos: [u64; LATENCY_BOUNDS.len()],
}

impl Default for LatencyInner {
    fn default() -> Self {
        LatencyInner {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
            bounds_nanos: LATENCY_BOUNDS.map(|b| (b * 1e9) as u64),
        }
    }
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let inner = &*self.0;
        let bucket = inner
            .bounds_nanos
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        inner.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        inner.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.0;
        // Counts per bucket, not cumulative: the encoder adds them up. `+Inf` is their
        // total, read once, so a scrape is consistent with itself while requests record.
        let mut count = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BOUNDS.len() + 1);
        for (i, bound) in LATENCY_BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .enumerate()
        {
            let n = inner.buckets[i].load(Ordering::Relaxed);
            count += n;
            buckets.push((bound, n));
        }
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Counts of the content the metadata store holds, read at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentTotals {
    /// Repositories.
    pub repositories: u64,
    /// Manifests (in every repository).
    pub manifests: u64,
    /// Distinct blobs stored.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Upload sessions open.
    pub uploads: u64,
}

/// Slots of one label combination, resolved on first use.
struct Slots<M>(Box<[OnceLock<M>]>);

impl<M: Clone> Slots<M> {
    fn new(len: usize) -> Self {
        Slots((0..len).map(|_| OnceLock::new()).collect())
    }

    fn get(&self, slot: usize, make: impl FnOnce() -> M) -> &M {
        self.0[slot].get_or_init(make)
    }
}

/// Every metric of the process, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    repository_labels: bool,
    requests: Family<RequestLabels, Counter>,
    request_slots: Slots<Counter>,
    latency: Family<RouteLabels, LatencyHistogram>,
    latency_slots: Slots<LatencyHistogram>,
    bytes_in: Family<RouteLabels, Counter>,
    bytes_in_slots: Slots<Counter>,
    bytes_out: Family<RouteLabels, Counter>,
    bytes_out_slots: Slots<Counter>,
    repository_requests: Family<RepositoryLabels, Counter>,
    login_failures: Counter,
    rate_limited: Counter,
    network_refusals: Family<CauseLabels, Counter>,
    access_log_dropped: Counter,
    repositories: Gauge,
    manifests: Gauge,
    blobs: Gauge,
    blob_bytes: Gauge,
    uploads_in_progress: Gauge,
    content_read_at: Mutex<Option<Instant>>,
    gc_runs: Family<OutcomeLabels, Counter>,
    gc_bytes_freed: Counter,
    gc_blobs_removed: Counter,
    sync_lag_changes: Family<LinkLabels, Gauge>,
    sync_lag_seconds: Family<LinkLabels, Gauge>,
    sync_backlog: Family<LinkLabels, Gauge>,
    sync_bytes: Family<LinkDirectionLabels, Counter>,
    sync_retries: Family<LinkLabels, Counter>,
    sync_last_success: Family<LinkLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("repository_labels", &self.repository_labels)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    /// Every metric at zero; `repository_labels` adds a per-repository request counter
    /// (`berth_repository_requests`), whose label values grow with the repositories.
    pub fn new(repository_labels: bool) -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route class, method and status code",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, LatencyHistogram>::default();
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival until its response was sent whole, by route class",
            Unit::Seconds,
            latency.clone(),
        );
        let bytes_in = Family::<RouteLabels, Counter>::default();
        registry.register_with_unit(
            "http_request_body",
            "Bytes of request bodies received, by route class",
            Unit::Bytes,
            bytes_in.clone(),
        );
        let bytes_out = Family::<RouteLabels, Counter>::default();
        registry.register_with_unit(
            "http_response_body",
            "Bytes of response bodies sent, by route class",
            Unit::Bytes,
            bytes_out.clone(),
        );
        let repository_requests = Family::<RepositoryLabels, Counter>::default();
        if repository_labels {
            registry.register(
                "repository_requests",
                "Requests to the distribution API, by repository and route class (--metrics-repository-labels)",
                repository_requests.clone(),
            );
        }
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let login_failures = counter(
            &mut registry,
            "login_failures",
            "Logins refused for wrong credentials",
        );
        let rate_limited = counter(
            &mut registry,
            "login_rate_limited",
            "Logins refused because the client address failed too often (429)",
        );
        let network_refusals = Family::<CauseLabels, Counter>::default();
        registry.register(
            "network_refusals",
            "Requests refused by a listener's network rules, by cause",
            network_refusals.clone(),
        );
        let access_log_dropped = counter(
            &mut registry,
            "access_log_dropped",
            "Access log lines dropped because the log writer fell behind",
        );
        let repositories = gauge(&mut registry, "repositories", "Repositories");
        let manifests = gauge(&mut registry, "manifests", "Manifests, in every repository");
        let blobs = gauge(&mut registry, "blobs", "Distinct blobs stored");
        let blob_bytes = Gauge::default();
        registry.register_with_unit(
            "blobs_stored",
            "Bytes of the blobs stored",
            Unit::Bytes,
            blob_bytes.clone(),
        );
        let uploads_in_progress = gauge(
            &mut registry,
            "uploads_in_progress",
            "Upload sessions open (started, not yet completed, cancelled or swept)",
        );
        let gc_runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "gc_runs",
            "Garbage collections finished, by outcome",
            gc_runs.clone(),
        );
        let gc_bytes_freed = Counter::default();
        registry.register_with_unit(
            "gc_freed",
            "Bytes of blobs garbage collection deleted",
            Unit::Bytes,
            gc_bytes_freed.clone(),
        );
        let gc_blobs_removed = counter(
            &mut registry,
            "gc_blobs_removed",
            "Blobs garbage collection deleted",
        );
        let sync = registry.sub_registry_with_prefix("sync");
        let sync_lag_changes = Family::<LinkLabels, Gauge>::default();
        sync.register(
            "lag_changes",
            "Changes of the sending side's log not yet applied by the receiving side, per link (`parent`, or `child/<name>` on the parent's side)",
            sync_lag_changes.clone(),
        );
        let sync_lag_seconds = Family::<LinkLabels, Gauge>::default();
        sync.register_with_unit(
            "lag",
            "Age of the oldest change not yet applied by the receiving side, per link (0 when caught up)",
            Unit::Seconds,
            sync_lag_seconds.clone(),
        );
        let sync_backlog = Family::<LinkLabels, Gauge>::default();
        sync.register(
            "backlog_changes",
            "Local changes waiting to be sent up the link (ReadWrite connected registries)",
            sync_backlog.clone(),
        );
        let sync_bytes = Family::<LinkDirectionLabels, Counter>::default();
        sync.register_with_unit(
            "transferred",
            "Blob bytes moved over the link, by direction",
            Unit::Bytes,
            sync_bytes.clone(),
        );
        let sync_retries = Family::<LinkLabels, Counter>::default();
        sync.register(
            "retries",
            "Rounds over the link to the parent (content down, local changes and events up) that failed and were retried",
            sync_retries.clone(),
        );
        let sync_last_success = Family::<LinkLabels, Gauge>::default();
        sync.register(
            "last_success_timestamp_seconds",
            "When the link last synced successfully (Unix seconds)",
            sync_last_success.clone(),
        );
        let combinations = RouteClass::ALL.len() * MethodLabel::COUNT * KNOWN_CODES.len();
        Metrics {
            registry,
            repository_labels,
            requests,
            request_slots: Slots::new(combinations),
            latency,
            latency_slots: Slots::new(RouteClass::ALL.len()),
            bytes_in,
            bytes_in_slots: Slots::new(RouteClass::ALL.len()),
            bytes_out,
            bytes_out_slots: Slots::new(RouteClass::ALL.len()),
            repository_requests,
            login_failures,
            rate_limited,
            network_refusals,
            access_log_dropped,
            repositories,
            manifests,
            blobs,
            blob_bytes,
            uploads_in_progress,
            content_read_at: Mutex::new(None),
            gc_runs,
            gc_bytes_freed,
            gc_blobs_removed,
            sync_lag_changes,
            sync_lag_seconds,
            sync_backlog,
            sync_bytes,
            sync_retries,
            sync_last_success,
        }
    }

    /// Whether per-repository labels were asked for.
    pub fn repository_labels(&self) -> bool {
        self.repository_labels
    }

    /// Records one request answered: its counter, its latency, its body bytes both ways.
    pub fn record_request(
        &self,
        route: RouteClass,
        method: MethodLabel,
        code: u16,
        took: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let labels = || RequestLabels {
            route: route.as_str(),
            method: method.as_str(),
            code,
        };
        match code_slot(code) {
            Some(code_slot) => {
                let slot = (route.slot() * MethodLabel::COUNT + method as usize)
                    * KNOWN_CODES.len()
                    + code_slot;
                self.request_slots
                    .get(slot, || self.requests.get_or_create_owned(&labels()))
                    .inc();
            }
            None => {
                self.requests.get_or_create(&labels()).inc();
            }
        }
        let route_labels = || RouteLabels {
            route: route.as_str(),
        };
        self.latency_slots
            .get(route.slot(), || {
                self.latency.get_or_create_owned(&route_labels())
            })
            .observe(took);
        if bytes_in > 0 {
            self.bytes_in_slots
                .get(route.slot(), || {
                    self.bytes_in.get_or_create_owned(&route_labels())
                })
                .inc_by(bytes_in);
        }
        if bytes_out > 0 {
            self.bytes_out_slots
                .get(route.slot(), || {
                    self.bytes_out.get_or_create_owned(&route_labels())
                })
                .inc_by(bytes_out);
        }
    }

    /// Records a request to `repository` (only with repository labels on; otherwise
    /// nothing).
    pub fn record_repository_request(&self, repository: &str, route: RouteClass) {
        if self.repository_labels {
            self.repository_requests
                .get_or_create(&RepositoryLabels {
                    repository: repository.to_owned(),
                    route: route.as_str(),
                })
                .inc();
        }
    }

    /// A login refused for wrong credentials.
    pub fn login_failed(&self) {
        self.login_failures.inc();
    }

    /// A login refused by the failed-login limit.
    pub fn login_rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// A request refused by a listener's network rules.
    pub fn network_refused(&self, cause: RefusalCause) {
        self.network_refusals
            .get_or_create(&CauseLabels {
                cause: cause.as_str(),
            })
            .inc();
    }

    /// An access log line dropped because its writer fell behind.
    pub fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }

    /// Whether the content totals are older than `max_age` (or were never read); marks them
    /// read now when they are, so that concurrent scrapes read the store once.
    pub fn content_due(&self, max_age: Duration) -> bool {
        let mut read_at = self
            .content_read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *read_at {
            Some(at) if now.duration_since(at) < max_age => false,
            _ => {
                *read_at = Some(now);
                true
            }
        }
    }

    /// Sets the content gauges.
    pub fn set_content(&self, totals: ContentTotals) {
        let set = |gauge: &Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&self.repositories, totals.repositories);
        set(&self.manifests, totals.manifests);
        set(&self.blobs, totals.blobs);
        set(&self.blob_bytes, totals.blob_bytes);
        set(&self.uploads_in_progress, totals.uploads);
    }

    /// A garbage collection ended with `outcome` as its record says it (`finished`,
    /// `stopped`, `failed: <why>`; anything else counts as `other`), having removed `blobs`
    /// blobs of `bytes` bytes.
    pub fn gc_finished(&self, outcome: &str, blobs: u64, bytes: u64) {
        let outcome = match outcome {
            "finished" => "finished",
            "stopped" => "stopped",
            o if o.starts_with("failed") => "failed",
            _ => "other",
        };
        self.gc_runs.get_or_create(&OutcomeLabels { outcome }).inc();
        self.gc_blobs_removed.inc_by(blobs);
        self.gc_bytes_freed.inc_by(bytes);
    }

    /// A sync link's lag: changes not yet applied on the receiving side, and the age in
    /// seconds of the oldest of them (0 when caught up).
    pub fn sync_lag(&self, link: &str, changes: u64, seconds: u64) {
        let labels = LinkLabels {
            link: link.to_owned(),
        };
        self.sync_lag_changes
            .get_or_create(&labels)
            .set(i64::try_from(changes).unwrap_or(i64::MAX));
        self.sync_lag_seconds
            .get_or_create(&labels)
            .set(i64::try_from(seconds).unwrap_or(i64::MAX));
    }

    /// Local changes waiting to go up a link.
    pub fn sync_backlog(&self, link: &str, changes: u64) {
        self.sync_backlog
            .get_or_create(&LinkLabels {
                link: link.to_owned(),
            })
            .set(i64::try_from(changes).unwrap_or(i64::MAX));
    }

    /// Blob bytes moved over a link.
    pub fn sync_bytes(&self, link: &str, direction: Direction, bytes: u64) {
        self.sync_bytes_counter(link, direction).inc_by(bytes);
    }

    /// The counter of blob bytes moved over a link in one direction, for a transfer to add
    /// its chunks to without looking the series up for each.
    pub fn sync_bytes_counter(&self, link: &str, direction: Direction) -> Counter {
        let direction = match direction {
            Direction::Down => "down",
            Direction::Up => "up",
        };
        self.sync_bytes
            .get_or_create(&LinkDirectionLabels {
                link: link.to_owned(),
                direction,
            })
            .clone()
    }

    /// A round over a link failed and will be retried.
    pub fn sync_retried(&self, link: &str) {
        self.sync_retries
            .get_or_create(&LinkLabels {
                link: link.to_owned(),
            })
            .inc();
    }

    /// A link synced successfully at `unix_seconds`.
    pub fn sync_succeeded(&self, link: &str, unix_seconds: i64) {
        self.sync_last_success
            .get_or_create(&LinkLabels {
                link: link.to_owned(),
            })
            .set(unix_seconds);
    }

    /// Every metric in the OpenMetrics text format (ending with `# EOF`).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Every metric in the Prometheus text format 0.0.4 (what `promtool check metrics`
    /// reads, and what a scraper gets unless it asks for OpenMetrics).
    pub fn encode_prometheus_text(&self) -> String {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn requests_are_counted_by_route_method_and_code() {
        let metrics = Metrics::new(false);
        for _ in 0..3 {
            metrics.record_request(
                RouteClass::Manifest,
                MethodLabel::Get,
                200,
                Duration::from_micros(300),
                0,
                512,
            );
        }
        // A code without a slot of its own goes through the family, and counts the same.
        metrics.record_request(
            RouteClass::Blob,
            MethodLabel::of("GET"),
            418,
            Duration::from_millis(20),
            10,
            0,
        );
        let text = metrics.encode_openmetrics();
        assert!(
            text.contains(
                r#"berth_http_requests_total{route="manifest",method="GET",code="200"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"berth_http_requests_total{route="blob",method="GET",code="418"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"berth_http_response_body_bytes_total{route="manifest"} 1536"#),
            "{text}"
        );
        assert!(
            text.contains(r#"berth_http_request_body_bytes_total{route="blob"} 10"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn latency_buckets_are_cumulative() {
        let metrics = Metrics::new(false);
        for millis in [0, 3, 3, 200, 90_000] {
            metrics.record_request(
                RouteClass::Upload,
                MethodLabel::Patch,
                202,
                Duration::from_millis(millis),
                0,
                0,
            );
        }
        let text = metrics.encode_openmetrics();
        let bucket = |le: &str| {
            line(
                &text,
                &format!(
                    r#"berth_http_request_duration_seconds_bucket{{le="{le}",route="upload"}}"#
                ),
            )
            .or_else(|| {
                line(
                    &text,
                    &format!(
                        r#"berth_http_request_duration_seconds_bucket{{route="upload",le="{le}"}}"#
                    ),
                )
            })
            .unwrap_or_else(|| panic!("bucket {le} in {text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
        };
        assert_eq!(bucket("0.0005"), "1");
        assert_eq!(bucket("0.005"), "3");
        assert_eq!(bucket("0.25"), "4");
        assert_eq!(bucket("60.0"), "4");
        assert_eq!(bucket("+Inf"), "5");
        assert!(
            text.contains(r#"berth_http_request_duration_seconds_count{route="upload"} 5"#),
            "{text}"
        );
    }

    #[test]
    fn repository_labels_only_when_asked() {
        let off = Metrics::new(false);
        off.record_repository_request("team/app", RouteClass::Manifest);
        assert!(!off.encode_openmetrics().contains("team/app"));
        let on = Metrics::new(true);
        on.record_repository_request("team/app", RouteClass::Manifest);
        let text = on.encode_openmetrics();
        assert!(
            text.contains(
                r#"berth_repository_requests_total{repository="team/app",route="manifest"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn content_gauges_and_their_cache() {
        let metrics = Metrics::new(false);
        assert!(metrics.content_due(Duration::from_secs(10)));
        assert!(
            !metrics.content_due(Duration::from_secs(10)),
            "read once per period"
        );
        assert!(metrics.content_due(Duration::ZERO));
        metrics.set_content(ContentTotals {
            repositories: 2,
            manifests: 5,
            blobs: 7,
            blob_bytes: 1234,
            uploads: 1,
        });
        let text = metrics.encode_prometheus_text();
        for expected in [
            "berth_repositories 2",
            "berth_manifests 5",
            "berth_blobs 7",
            "berth_blobs_stored_bytes 1234",
            "berth_uploads_in_progress 1",
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected} in {text}");
        }
    }

    #[test]
    fn sync_gc_and_refusals() {
        let metrics = Metrics::new(false);
        metrics.sync_lag("parent", 4, 12);
        metrics.sync_bytes("parent", Direction::Down, 100);
        metrics.sync_bytes("parent", Direction::Down, 50);
        metrics.sync_retried("child/site-a");
        metrics.sync_succeeded("parent", 1_700_000_000);
        metrics.sync_backlog("parent", 3);
        metrics.gc_finished("finished", 2, 4096);
        metrics.gc_finished("failed: disk on fire", 0, 0);
        metrics.gc_finished("something new", 0, 0);
        metrics.network_refused(RefusalCause::IpNotAllowed);
        metrics.login_failed();
        metrics.login_rate_limited();
        let text = metrics.encode_openmetrics();
        for expected in [
            r#"berth_sync_lag_changes{link="parent"} 4"#,
            r#"berth_sync_lag_seconds{link="parent"} 12"#,
            r#"berth_sync_transferred_bytes_total{link="parent",direction="down"} 150"#,
            r#"berth_sync_retries_total{link="child/site-a"} 1"#,
            r#"berth_sync_last_success_timestamp_seconds{link="parent"} 1700000000"#,
            r#"berth_sync_backlog_changes{link="parent"} 3"#,
            r#"berth_gc_runs_total{outcome="finished"} 1"#,
            r#"berth_gc_runs_total{outcome="failed"} 1"#,
            r#"berth_gc_runs_total{outcome="other"} 1"#,
            "berth_gc_freed_bytes_total 4096",
            r#"berth_network_refusals_total{cause="ip_not_allowed"} 1"#,
            "berth_login_failures_total 1",
            "berth_login_rate_limited_total 1",
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected} in {text}");
        }
    }
}
