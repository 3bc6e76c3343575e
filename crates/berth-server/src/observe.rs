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

/// The caller a handler authenticated, put in the response's extensions for the access log.
#[derive(Clone)]
pub struct AccessUser(pub Principal);

/// What a request to a path is for: its route class, and the repository it names (for the
/// distribution API's routes).
pub fn classify(path: &str) -> (RouteClass, Option<&str>) {
    if let Some(rest) = path.strip_prefix("/v2") {
        let rest = rest.trim_start_matches('/');
        return match Route::parse(rest) {
            Some(Route::Base) => (RouteClass::Base, None),
            Some(Route::Catalog) => (RouteClass::Catalog, None),
            Some(Route::Tags { name }) => (RouteClass::Tags, Some(name)),
            Some(Route::Manifest { name, .. }) => (RouteClass::Manifest, Some(name)),
            Some(Route::Blob { name, .. }) => (RouteClass::Blob, Some(name)),
            Some(Route::UploadStart { name }) | Some(Route::Upload { name, .. }) => {
                (RouteClass::Upload, Some(name))
            }
            Some(Route::Referrers { name, .. }) => (RouteClass::Referrers, Some(name)),
            None => (RouteClass::Other, None),
        };
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
    route: RouteClass,
    method: Method,
    /// Kept for the access log (the repository), only when it is on.
    uri: Option<Uri>,
    client: SocketAddr,
    status: u16,
    user: Option<Principal>,
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
        let (route, _) = classify(uri.path());
        Exchange {
            observer: Arc::clone(observer),
            started: Instant::now(),
            route,
            method: method.clone(),
            // Kept for what reads it when the response is done: the access log, and the
            // per-repository counts.
            uri: (observer.access_log.is_some() || observer.metrics.repository_labels())
                .then(|| uri.clone()),
            client,
            status: 0,
            user: None,
            bytes_in,
            bytes_out: 0,
        }
    }

    /// The response is known: its status, and the caller the handler found.
    pub(crate) fn respond(&mut self, response: &mut Response, client: SocketAddr) {
        self.status = response.status().as_u16();
        self.client = client;
        self.user = response
            .extensions_mut()
            .remove::<AccessUser>()
            .map(|u| u.0);
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
        let metrics = &self.observer.metrics;
        metrics.record_request(
            self.route,
            method,
            self.status,
            took,
            bytes_in,
            self.bytes_out,
        );
        let repository = self.uri.as_ref().and_then(|u| classify(u.path()).1);
        if metrics.repository_labels()
            && let Some(repository) = repository
        {
            metrics.record_repository_request(repository, self.route);
        }
        // An info-level target like any other: `--log warn` (or `berth::access=off` in the
        // filter) silences it too. The check is an atomic load while the filter stands.
        if let Some(log) = &self.observer.access_log
            && tracing::enabled!(target: "berth::access", tracing::Level::INFO)
        {
            log.write(&AccessLine {
                method: self.method.as_str(),
                route: self.route.as_str(),
                repository,
                status: self.status,
                bytes_in,
                bytes_out: self.bytes_out,
                took,
                client: self.client,
                user: self.user.as_ref().map(Principal::display_name),
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
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
    /// The current second, formatted (`2026-12-05T07:54:02`): formatting a date costs more
    /// than the rest of a line, and a second holds tens of thousands of lines.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes the time now as RFC 3339 in UTC with microseconds (`2026-12-05T07:54:02.123456Z`).
fn timestamp(out: &mut String) {
    use std::fmt::Write as _;
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
        out.push_str(&second.1);
    });
    let _ = write!(out, ".{:06}Z", now.subsec_micros());
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
            batch.lines.extend_from_slice(buffer.as_bytes());
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

fn format_text(out: &mut String, line: &AccessLine<'_>) {
    use std::fmt::Write as _;
    timestamp(out);
    let _ = writeln!(
        out,
        "  INFO berth::access: method={} route={} repository={} status={} bytes_in={} bytes_out={} duration_ms={:.3} client={} user={}",
        line.method,
        line.route,
        line.repository.unwrap_or("-"),
        line.status,
        line.bytes_in,
        line.bytes_out,
        line.took.as_secs_f64() * 1000.0,
        line.client.ip(),
        line.user.unwrap_or("-"),
    );
}

fn format_json(out: &mut String, line: &AccessLine<'_>) {
    use std::fmt::Write as _;
    out.push_str(r#"{"timestamp":""#);
    timestamp(out);
    out.push_str(
        r#"","level":"INFO","target":"berth::access","fields":{"message":"request","method":"#,
    );
    json_string(out, line.method);
    let _ = write!(out, r#","route":"{}","repository":"#, line.route);
    match line.repository {
        Some(r) => json_string(out, r),
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        r#","status":{},"bytes_in":{},"bytes_out":{},"duration_ms":{:.3},"client":"{}","user":"#,
        line.status,
        line.bytes_in,
        line.bytes_out,
        line.took.as_secs_f64() * 1000.0,
        line.client.ip(),
    );
    match line.user {
        Some(u) => json_string(out, u),
        None => out.push_str("null"),
    }
    out.push_str("}}\n");
}

/// `value` as a JSON string (quotes, backslashes and control characters escaped).
fn json_string(out: &mut String, value: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
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
    let timed = |what: &'static str| {
        move |r: Result<Result<(), String>, tokio::time::error::Elapsed>| match r {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the {what} did not answer within {CHECK_TIMEOUT:?}"
            )),
        }
    };
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
        ("database", timed("database")(database)),
        ("storage", timed("storage")(storage)),
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
        let mut text = String::new();
        format_text(&mut text, &line);
        let stamp = text.split(' ').next().unwrap();
        assert_eq!(stamp.len(), "2026-12-05T07:54:02.123456Z".len(), "{text}");
        assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{text}");
        assert!(text.ends_with(
            "method=GET route=manifest repository=team/a\"pp status=200 bytes_in=0 bytes_out=529 duration_ms=0.412 client=127.0.0.1 user=ci-push\n"
        ), "{text}");
        let mut json = String::new();
        format_json(&mut json, &line);
        let value: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(value["fields"]["repository"], "team/a\"pp");
        assert_eq!(value["fields"]["status"], 200);
        assert_eq!(value["fields"]["user"], "ci-push");
        assert_eq!(value["target"], "berth::access");
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
