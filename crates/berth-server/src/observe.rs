//! Watching the registry: per-request metrics and the access log (recorded by the
//! listener when a response has been sent whole), the health endpoints (`/healthz`,
//! `/readyz`) and the metrics listener's router (`/metrics`).
//!
//! Invariants:
//! - **A request is recorded once, when its response body is done** (sent whole, or
//!   dropped because the client went away), so its duration and bytes out are the real
//!   ones, a blob download's included. The listener does it, not a middleware: it already
//!   wraps every request and response body, and a middleware layer cost 12% of the
//!   manifest requests per second (see `network.rs`).
//! - **The path is parsed once.** The distribution API hands what it found to the listener
//!   ([`Handled`], in the response's extensions); only requests that did not reach it are
//!   classified from their path when recorded.
//! - **The access log never blocks a request and never holds a secret.** A line is
//!   formatted into a reused per-thread buffer and appended to a shared batch under a short
//!   lock; one writer thread hands batches to stderr. When the writer falls behind (more
//!   than [`ACCESS_LOG_BACKLOG`] bytes waiting) lines are dropped and counted
//!   (`berth_access_log_dropped_total`), never waited for. A line names the caller by its
//!   token or user name only: never a password, an `Authorization` header or a query string
//!   (which carries signatures on the data endpoint).

use std::cell::RefCell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_auth::Principal;
use berth_metrics::{MethodLabel, Metrics, RouteClass};
use http::{Method, StatusCode, Uri, header};

use crate::route::Route;
use crate::state::AppState;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// What the listener records for each request it serves.
pub struct Observer {
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The access log, when on.
    pub access_log: Option<AccessLog>,
}

/// What the distribution API learnt about a request, put in the response's extensions for
/// the listener's record, so that the path is parsed once: the route, the repository (as a
/// range of the path) and the caller, when authentication got that far.
#[derive(Clone)]
pub struct Handled {
    /// The route class.
    pub route: RouteClass,
    /// Where the repository's name is in the request's path.
    pub repository: Option<std::ops::Range<usize>>,
    /// The caller.
    pub user: Option<Principal>,
}

impl Handled {
    /// What `route`, parsed from `path`, is, for a caller not known yet.
    pub fn of(path: &str, route: &Route<'_>) -> Self {
        let (route, repository) = class_of(route);
        Handled {
            route,
            repository: repository.map(|name| {
                // `name` is a slice of `path`: its place in it.
                let start = name.as_ptr() as usize - path.as_ptr() as usize;
                start..start + name.len()
            }),
            user: None,
        }
    }
}

/// Who called, for the record of a request outside the distribution API: the management
/// API, the gateway and the token endpoint authenticate in their handlers, which mark the
/// caller here with [`CallerNote::mark`]; [`note_caller`] puts one in each such request and
/// hands the caller to the listener as a [`Handled`].
#[derive(Clone, Default)]
pub struct CallerNote(Arc<OnceLock<Principal>>);

impl CallerNote {
    /// The request `parts` belong to was made by `principal` (the first mark stands).
    pub fn mark(parts: &http::request::Parts, principal: &Principal) {
        if let Some(note) = parts.extensions.get::<CallerNote>() {
            let _ = note.0.set(principal.clone());
        }
    }
}

/// Middleware for the routes whose handlers authenticate the caller themselves (see
/// [`CallerNote`]): the access log names the caller of a management call, a gateway call or
/// a token request as it does a pull's.
pub async fn note_caller(mut request: Request, next: axum::middleware::Next) -> Response {
    let (route, _) = classify(request.uri().path());
    let note = CallerNote::default();
    request.extensions_mut().insert(note.clone());
    let mut response = next.run(request).await;
    if let Some(principal) = note.0.get() {
        response.extensions_mut().insert(Handled {
            route,
            repository: None,
            user: Some(principal.clone()),
        });
    }
    response
}

/// A distribution API route's class, and the repository it names.
fn class_of<'a>(route: &Route<'a>) -> (RouteClass, Option<&'a str>) {
    match *route {
        Route::Base => (RouteClass::Base, None),
        Route::Catalog => (RouteClass::Catalog, None),
        Route::Tags { name } => (RouteClass::Tags, Some(name)),
        Route::Manifest { name, .. } => (RouteClass::Manifest, Some(name)),
        Route::Blob { name, .. } => (RouteClass::Blob, Some(name)),
        Route::UploadStart { name } | Route::Upload { name, .. } => {
            (RouteClass::Upload, Some(name))
        }
        Route::Referrers { name, .. } => (RouteClass::Referrers, Some(name)),
    }
}

/// What a request to a path is for: its route class, and the repository it names (for the
/// distribution API's routes).
pub fn classify(path: &str) -> (RouteClass, Option<&str>) {
    if let Some(rest) = path.strip_prefix("/v2") {
        let rest = rest.trim_start_matches('/');
        return Route::parse(rest).map_or((RouteClass::Other, None), |route| class_of(&route));
    }
    let class = if path == "/oauth2/token" {
        RouteClass::Token
    } else if path.starts_with("/berth/v1/") {
        RouteClass::Manage
    } else if path.starts_with("/berth/gateway/") {
        RouteClass::Gateway
    } else if path.starts_with("/berth/data/") {
        RouteClass::Data
    } else if path == "/healthz" || path == "/readyz" {
        RouteClass::Health
    } else if path == "/metrics" {
        RouteClass::Metrics
    } else {
        RouteClass::Other
    };
    (class, None)
}

/// One request on its way, carried by its response body; recorded when dropped.
pub(crate) struct Exchange {
    observer: Arc<Observer>,
    started: Instant,
    method: Method,
    uri: Uri,
    /// What the distribution API found (then the path is not parsed again); for other
    /// requests, the path is classified when the request is recorded.
    handled: Option<Handled>,
    client: SocketAddr,
    status: u16,
    bytes_in: Option<Arc<AtomicU64>>,
    bytes_out: u64,
}

impl Exchange {
    /// Starts recording a request (before the router sees it). `bytes_in` is the counter
    /// its body adds to, when it has one.
    pub(crate) fn start(
        observer: &Arc<Observer>,
        method: &Method,
        uri: &Uri,
        client: SocketAddr,
        bytes_in: Option<Arc<AtomicU64>>,
    ) -> Self {
        Exchange {
            observer: Arc::clone(observer),
            started: Instant::now(),
            method: method.clone(),
            uri: uri.clone(),
            handled: None,
            client,
            status: 0,
            bytes_in,
            bytes_out: 0,
        }
    }

    /// The response is known: its status, and what the handler found.
    pub(crate) fn respond(&mut self, response: &mut Response, client: SocketAddr) {
        self.status = response.status().as_u16();
        self.client = client;
        self.handled = response.extensions_mut().remove::<Handled>();
    }

    /// Bytes of the response body sent.
    pub(crate) fn sent(&mut self, bytes: usize) {
        self.bytes_out += bytes as u64;
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let bytes_in = self
            .bytes_in
            .as_ref()
            .map_or(0, |b| b.load(Ordering::Relaxed));
        // No response at all: the client went away (or the server stopped) first; counted
        // as nginx does, 499.
        if self.status == 0 {
            self.status = CLIENT_CLOSED;
        }
        let method = MethodLabel::of(self.method.as_str());
        let path = self.uri.path();
        let (route, repository) = match &self.handled {
            Some(handled) => (
                handled.route,
                handled.repository.clone().and_then(|range| path.get(range)),
            ),
            None => classify(path),
        };
        let metrics = &self.observer.metrics;
        metrics.record_request(route, method, self.status, took, bytes_in, self.bytes_out);
        if metrics.repository_labels()
            && let Some(repository) = repository
        {
            metrics.record_repository_request(repository, route);
        }
        // An info-level target like any other: `--log warn` (or `berth::access=off` in the
        // filter) silences it too. The check is an atomic load while the filter stands.
        if let Some(log) = &self.observer.access_log
            && tracing::enabled!(target: "berth::access", tracing::Level::INFO)
        {
            log.write(&AccessLine {
                method: self.method.as_str(),
                route: route.as_str(),
                repository,
                status: self.status,
                bytes_in,
                bytes_out: self.bytes_out,
                took,
                client: self.client,
                user: self
                    .handled
                    .as_ref()
                    .and_then(|h| h.user.as_ref())
                    .map(Principal::display_name),
            });
        }
    }
}

/// The status recorded for a request that got no response (nginx's "client closed
/// request").
pub const CLIENT_CLOSED: u16 = 499;

/// One access log line's fields.
struct AccessLine<'a> {
    method: &'a str,
    route: &'static str,
    repository: Option<&'a str>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    took: Duration,
    client: SocketAddr,
    user: Option<&'a str>,
}

/// The most bytes of access log waiting for the writer; past it, lines are dropped (and
/// counted) rather than waited for.
pub const ACCESS_LOG_BACKLOG: usize = 4 << 20;

/// How long the writer lets lines gather before it writes them (one write per batch).
const ACCESS_LOG_BATCH: Duration = Duration::from_millis(20);

struct Batch {
    lines: Vec<u8>,
    /// Set by `flush`: the writer writes what it has at once and says so.
    flushing: bool,
}

struct AccessShared {
    batch: Mutex<Batch>,
    /// The writer waits on it for lines; `flush` waits on it for the writer.
    wake: Condvar,
    flushed: Condvar,
    metrics: Arc<Metrics>,
}

/// The access log: one line per request, on its own writer thread (see the module's
/// invariants). Cloning shares the writer.
#[derive(Clone)]
pub struct AccessLog {
    format: LogFormat,
    shared: Arc<AccessShared>,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    /// The current second, formatted (`2026-12-05T07:54:02`): formatting a date costs more
    /// than the rest of a line, and a second holds tens of thousands of lines.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes the time now as RFC 3339 in UTC with microseconds (`2026-12-05T07:54:02.123456Z`).
fn timestamp(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != now.as_secs() {
            let formatted = i64::try_from(now.as_secs())
                .ok()
                .and_then(|s| jiff::Timestamp::from_second(s).ok())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .to_string();
            second.1 = formatted.trim_end_matches('Z').to_owned();
            second.0 = now.as_secs();
        }
        put(out, &second.1);
    });
    out.push(b'.');
    push_padded(out, u64::from(now.subsec_micros()), 6);
    out.push(b'Z');
}

/// Appends `text`.
fn put(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
}

/// Writes `value` in decimal. Access log lines are written by hand, not with `write!`:
/// formatting machinery was most of a line's cost (see `bench/callgrind.sh`).
fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Writes `value` in decimal with at least `width` digits (leading zeros).
fn push_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let len = if value == 0 {
        1
    } else {
        value.ilog10() as usize + 1
    };
    for _ in len..width {
        out.push(b'0');
    }
    push_u64(out, value);
}

/// Writes a duration in milliseconds with three decimals (`0.412`).
fn push_millis(out: &mut Vec<u8>, took: Duration) {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    push_u64(out, micros / 1000);
    out.push(b'.');
    push_padded(out, micros % 1000, 3);
}

/// Writes an address without its port.
fn push_ip(out: &mut Vec<u8>, client: SocketAddr) {
    match client {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(octet));
            }
        }
        SocketAddr::V6(v6) => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{}", v6.ip());
        }
    }
}

impl AccessLog {
    /// Starts the writer thread, writing to standard error.
    pub fn start(format: LogFormat, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        Self::start_with(format, metrics, || Box::new(std::io::stderr()))
    }

    fn start_with(
        format: LogFormat,
        metrics: Arc<Metrics>,
        sink: impl FnOnce() -> Box<dyn std::io::Write + Send> + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(AccessShared {
            batch: Mutex::new(Batch {
                lines: Vec::with_capacity(64 << 10),
                flushing: false,
            }),
            wake: Condvar::new(),
            flushed: Condvar::new(),
            metrics,
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("berth-access-log".into())
            .spawn(move || write_batches(&writer, sink()))?;
        Ok(AccessLog { format, shared })
    }

    fn write(&self, line: &AccessLine<'_>) {
        LINE.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear();
            match self.format {
                LogFormat::Text => format_text(&mut buffer, line),
                LogFormat::Json => format_json(&mut buffer, line),
            }
            let mut batch = self.shared.batch.lock().unwrap_or_else(|e| e.into_inner());
            if batch.lines.len() + buffer.len() > ACCESS_LOG_BACKLOG {
                drop(batch);
                self.shared.metrics.access_log_dropped();
                return;
            }
            let was_empty = batch.lines.is_empty();
            batch.lines.extend_from_slice(&buffer);
            drop(batch);
            if was_empty {
                self.shared.wake.notify_one();
            }
        });
    }

    /// Writes every line recorded so far before returning (at most a second's wait): at
    /// shutdown, so the last requests' lines are not lost.
    pub fn flush(&self) {
        let mut batch = self.shared.batch.lock().unwrap_or_else(|e| e.into_inner());
        batch.flushing = true;
        self.shared.wake.notify_one();
        let deadline = Instant::now() + Duration::from_secs(1);
        while batch.flushing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            batch = self
                .shared
                .flushed
                .wait_timeout(batch, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The writer thread: waits for lines, lets a batch gather, writes it in one call. It lives
/// as long as the process.
fn write_batches(shared: &AccessShared, mut sink: Box<dyn std::io::Write + Send>) {
    let mut spare = Vec::with_capacity(64 << 10);
    loop {
        let mut batch = shared.batch.lock().unwrap_or_else(|e| e.into_inner());
        while batch.lines.is_empty() && !batch.flushing {
            batch = shared.wake.wait(batch).unwrap_or_else(|e| e.into_inner());
        }
        if !batch.flushing {
            // Let more lines join this write.
            drop(batch);
            std::thread::sleep(ACCESS_LOG_BATCH);
            batch = shared.batch.lock().unwrap_or_else(|e| e.into_inner());
        }
        std::mem::swap(&mut batch.lines, &mut spare);
        let flushing = std::mem::take(&mut batch.flushing);
        drop(batch);
        if !spare.is_empty() {
            // Nothing to do about a log that cannot be written; the registry serves on.
            let _ = sink.write_all(&spare);
            let _ = sink.flush();
            spare.clear();
        }
        if flushing {
            shared.flushed.notify_all();
        }
    }
}

fn format_text(out: &mut Vec<u8>, line: &AccessLine<'_>) {
    timestamp(out);
    put(out, "  INFO berth::access: method=");
    put(out, line.method);
    put(out, " route=");
    put(out, line.route);
    put(out, " repository=");
    put(out, line.repository.unwrap_or("-"));
    put(out, " status=");
    push_u64(out, u64::from(line.status));
    put(out, " bytes_in=");
    push_u64(out, line.bytes_in);
    put(out, " bytes_out=");
    push_u64(out, line.bytes_out);
    put(out, " duration_ms=");
    push_millis(out, line.took);
    put(out, " client=");
    push_ip(out, line.client);
    put(out, " user=");
    put(out, line.user.unwrap_or("-"));
    out.push(b'\n');
}

fn format_json(out: &mut Vec<u8>, line: &AccessLine<'_>) {
    put(out, r#"{"timestamp":""#);
    timestamp(out);
    put(
        out,
        r#"","level":"INFO","target":"berth::access","fields":{"message":"request","method":"#,
    );
    json_string(out, line.method);
    put(out, r#","route":""#);
    put(out, line.route);
    put(out, r#"","repository":"#);
    match line.repository {
        Some(r) => json_string(out, r),
        None => put(out, "null"),
    }
    put(out, r#","status":"#);
    push_u64(out, u64::from(line.status));
    put(out, r#","bytes_in":"#);
    push_u64(out, line.bytes_in);
    put(out, r#","bytes_out":"#);
    push_u64(out, line.bytes_out);
    put(out, r#","duration_ms":"#);
    push_millis(out, line.took);
    put(out, r#","client":""#);
    push_ip(out, line.client);
    put(out, r#"","user":"#);
    match line.user {
        Some(u) => json_string(out, u),
        None => put(out, "null"),
    }
    put(out, "}}\n");
}

/// `value` as a JSON string (quotes, backslashes and control characters escaped).
fn json_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    // Byte by byte: what needs escaping is ASCII, and never part of a multi-byte character.
    for &b in value.as_bytes() {
        match b {
            b'"' => put(out, "\\\""),
            b'\\' => put(out, "\\\\"),
            b if b < 0x20 => {
                let _ = write!(out, "\\u{:04x}", b);
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}

/// What `/readyz` checks beyond the stores: set by the process as it starts.
#[derive(Default)]
pub struct Readiness {
    listeners_bound: AtomicBool,
    configuration: OnceLock<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Readiness {
    /// Every listener is bound.
    pub fn listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::Release);
    }

    /// On a connected registry: whether its configuration is loaded (kept from the last
    /// sync, or received from the parent).
    pub fn configuration_loaded_by(&self, loaded: Arc<dyn Fn() -> bool + Send + Sync>) {
        let _ = self.configuration.set(loaded);
    }
}

/// How long one readiness check may take before it counts as failing.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `/healthz`: the process answers.
pub async fn healthz() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
}

/// `/readyz`: `200` when the database takes writes, blob storage takes writes and is not
/// full, every listener is bound and (on a connected registry) the configuration is
/// loaded; else `503` naming the failing checks.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (database, storage) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, async {
            state
                .registry
                .check_database()
                .await
                .map_err(|e| e.to_string())
        }),
        tokio::time::timeout(CHECK_TIMEOUT, state.registry.check_storage()),
    );
    let mut checks = vec![
        (
            "database",
            database.unwrap_or_else(|_| {
                Err(format!(
                    "the database did not answer within {CHECK_TIMEOUT:?}"
                ))
            }),
        ),
        (
            "storage",
            // A failure names the store (a directory, `s3://bucket/prefix`…).
            match storage {
                Ok(checked) => {
                    checked.map_err(|e| format!("{}: {e}", state.registry.storage_location()))
                }
                Err(_) => Err(format!(
                    "the storage ({}) did not answer within {CHECK_TIMEOUT:?}",
                    state.registry.storage_location()
                )),
            },
        ),
        (
            "listeners",
            if state.readiness.listeners_bound.load(Ordering::Acquire) {
                Ok(())
            } else {
                Err("the listeners are not bound yet".to_owned())
            },
        ),
    ];
    if let Some(loaded) = state.readiness.configuration.get() {
        checks.push((
            "configuration",
            if loaded() {
                Ok(())
            } else {
                Err("no configuration from the parent yet".to_owned())
            },
        ));
    }
    let failing: Vec<&str> = checks
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| *name)
        .collect();
    let body = serde_json::json!({
        "status": if failing.is_empty() { "ready" } else { "not ready" },
        "failing": failing,
        "checks": checks
            .iter()
            .map(|(name, r)| (name.to_string(), serde_json::Value::String(match r {
                Ok(()) => "ok".to_owned(),
                Err(e) => e.clone(),
            })))
            .collect::<serde_json::Map<_, _>>(),
    });
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, body.to_string())
}

fn json(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body))
        .expect("valid response parts")
}

/// How long content counts (repositories, manifests, blobs) read for a scrape are reused.
const CONTENT_MAX_AGE: Duration = Duration::from_secs(5);

/// `/metrics`: every metric, in OpenMetrics text when the scraper asks for it
/// (`Accept: application/openmetrics-text`, as Prometheus does), else in the Prometheus
/// text format 0.0.4.
pub async fn metrics(State(state): State<AppState>, request: Request) -> Response {
    let metrics = &state.metrics;
    if metrics.content_due(CONTENT_MAX_AGE) {
        match state.registry.content_totals().await {
            Ok(t) => metrics.set_content(berth_metrics::ContentTotals {
                repositories: t.repositories,
                manifests: t.manifests,
                blobs: t.blobs,
                blob_bytes: t.blob_bytes,
                uploads: t.uploads,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not count the registry's content for metrics")
            }
        }
    }
    let openmetrics = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (
            berth_metrics::OPENMETRICS_CONTENT_TYPE,
            metrics.encode_openmetrics(),
        )
    } else {
        (
            berth_metrics::PROMETHEUS_TEXT_CONTENT_TYPE,
            metrics.encode_prometheus_text(),
        )
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("valid response parts")
}

/// The metrics listener's router: `/metrics`, `/healthz`, `/readyz`, nothing else. It has
/// no gate: bind it where only the monitoring system reaches.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n").into_response() })
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_with_their_repository() {
        assert_eq!(classify("/v2/"), (RouteClass::Base, None));
        assert_eq!(classify("/v2"), (RouteClass::Base, None));
        assert_eq!(
            classify("/v2/team/app/manifests/1.0"),
            (RouteClass::Manifest, Some("team/app"))
        );
        assert_eq!(
            classify("/v2/a/blobs/uploads/"),
            (RouteClass::Upload, Some("a"))
        );
        assert_eq!(classify("/v2/a/tags/list"), (RouteClass::Tags, Some("a")));
        assert_eq!(classify("/oauth2/token"), (RouteClass::Token, None));
        assert_eq!(classify("/berth/v1/tokens"), (RouteClass::Manage, None));
        assert_eq!(classify("/readyz"), (RouteClass::Health, None));
        assert_eq!(classify("/nothing"), (RouteClass::Other, None));
    }

    /// What `write` appends, as text.
    fn written(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_text_or_json_and_json_parses() {
        let line = AccessLine {
            method: "GET",
            route: "manifest",
            repository: Some("team/a\"pp"),
            status: 200,
            bytes_in: 0,
            bytes_out: 529,
            took: Duration::from_micros(412),
            client: "127.0.0.1:4000".parse().unwrap(),
            user: Some("ci-push"),
        };
        let text = written(|out| format_text(out, &line));
        let stamp = text.split(' ').next().unwrap();
        assert_eq!(stamp.len(), "2026-12-05T07:54:02.123456Z".len(), "{text}");
        assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{text}");
        assert!(text.ends_with(
            "method=GET route=manifest repository=team/a\"pp status=200 bytes_in=0 bytes_out=529 duration_ms=0.412 client=127.0.0.1 user=ci-push\n"
        ), "{text}");
        let json = written(|out| format_json(out, &line));
        let value: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(value["fields"]["repository"], "team/a\"pp");
        let escaped = written(|out| json_string(out, "tab\tquote\"back\\é"));
        assert_eq!(
            serde_json::from_str::<String>(&escaped).unwrap(),
            "tab\tquote\"back\\é"
        );
        assert_eq!(value["fields"]["status"], 200);
        assert_eq!(value["fields"]["user"], "ci-push");
        assert_eq!(value["target"], "berth::access");
    }

    #[test]
    fn numbers_durations_and_addresses_are_written_as_format_would() {
        for value in [0, 7, 10, 999, 1000, 65_535, u64::MAX] {
            assert_eq!(written(|out| push_u64(out, value)), value.to_string());
            assert_eq!(
                written(|out| push_padded(out, value, 6)),
                format!("{value:06}")
            );
        }
        for (micros, text) in [
            (0, "0.000"),
            (412, "0.412"),
            (1_000, "1.000"),
            (1_050, "1.050"),
            (12_345_678, "12345.678"),
        ] {
            let took = Duration::from_micros(micros);
            assert_eq!(written(|out| push_millis(out, took)), text);
        }
        for address in ["10.0.255.1:80", "[::1]:1", "[::ffff:192.0.2.1]:5"] {
            let address: SocketAddr = address.parse().unwrap();
            assert_eq!(
                written(|out| push_ip(out, address)),
                address.ip().to_string()
            );
        }
    }

    #[test]
    fn what_the_api_found_is_what_the_path_says() {
        for path in [
            "/v2/",
            "/v2/_catalog",
            "/v2/team/app/manifests/1.0",
            "/v2/a/blobs/uploads/",
            "/v2/a/b/blobs/uploads/some-id",
            "/v2/a/tags/list",
            "/v2/x/y/z/referrers/sha256:abc",
        ] {
            let rest = path.strip_prefix("/v2").unwrap().trim_start_matches('/');
            let route = Route::parse(rest).unwrap();
            let handled = Handled::of(path, &route);
            let (class, repository) = classify(path);
            assert_eq!(handled.route, class, "{path}");
            assert_eq!(handled.repository.map(|r| &path[r]), repository, "{path}");
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writer_batches_lines_and_flush_writes_them_all() {
        let captured = Captured::default();
        let sink = captured.clone();
        let log = AccessLog::start_with(LogFormat::Text, Arc::new(Metrics::default()), move || {
            Box::new(sink)
        })
        .unwrap();
        let line = AccessLine {
            method: "HEAD",
            route: "blob",
            repository: None,
            status: 404,
            bytes_in: 0,
            bytes_out: 0,
            took: Duration::ZERO,
            client: "[::1]:1".parse().unwrap(),
            user: None,
        };
        for _ in 0..1000 {
            log.write(&line);
        }
        log.flush();
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1000);
        assert!(
            text.lines()
                .all(|l| l.contains("status=404") && l.ends_with("user=-"))
        );
    }
}
