//! The accept loop: one task per connection, TLS when configured, HTTP/1.1 and HTTP/2,
//! connection limits and timeouts, graceful shutdown.
//!
//! Berth runs its own loop rather than `axum::serve` so that each listener can tag its
//! requests with where they came from ([`Via`]), pass them through its [`Gate`], terminate
//! TLS with a certificate that can change while running, bound what a connection may hold
//! ([`ConnectionLimits`]), and let in-flight requests finish within a grace period at
//! shutdown.
//!
//! A connection that is not working for a client is closed, whatever it sends or does not
//! send:
//! - it must send its first byte within `first_byte_timeout` (before TLS, too);
//! - it must have sent its first request's headers within `header_read_timeout` of being
//!   accepted (the TLS handshake, HTTP/1.1 headers, and an HTTP/2 connection that sends a
//!   preface and settings but no request);
//! - with no request in flight, it is closed `idle_timeout` after its last request ended;
//! - HTTP/2 connections are pinged every `http2_keepalive_interval` and closed when a ping
//!   is not answered within `http2_keepalive_timeout`;
//! - a request body must keep arriving ([`PacedBody`]): no gap longer than
//!   `body_idle_timeout`, and past that grace, at least `min_body_rate` bytes a second on
//!   average;
//! - at most `max_connections` are open per listener; a new one sheds the connection that
//!   has been idle longest, or is refused when every one has a request in flight.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use futures_util::future::Either;

use crate::network::{Endpoint, Gate, Via};
use crate::observe::{Exchange, Observer};

/// What a connection may hold, and for how long. Every value has a `berth serve` flag.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// How long a new connection may stay silent before its first byte.
    pub first_byte_timeout: Duration,
    /// How long a client may take, from the connection's accept, to complete the TLS
    /// handshake and its first request's headers; and, on HTTP/1.1, each later request's.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in flight is kept open.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged.
    pub http2_keepalive_interval: Duration,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Duration,
    /// The longest gap allowed between two pieces of a request body.
    pub body_idle_timeout: Duration,
    /// After `body_idle_timeout` from its start, a request body must have averaged at least
    /// this many bytes a second (0: no minimum).
    pub min_body_rate: u64,
    /// The most connections open at once on one listener.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            first_byte_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(20),
            body_idle_timeout: Duration::from_secs(30),
            min_body_rate: 1024,
            max_connections: 4096,
        }
    }
}

/// How a listener behaves.
#[derive(Clone)]
pub struct ListenerConfig {
    /// Which listener this is (its requests are tagged with it).
    pub endpoint: Endpoint,
    /// TLS, when the listener has a certificate.
    pub tls: Option<TlsAcceptor>,
    /// Decides on every request before the router sees it.
    pub gate: Option<Arc<dyn Gate>>,
    /// How long in-flight requests may run after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// Timeouts and caps on connections.
    pub limits: ConnectionLimits,
    /// Records each request's metrics and access log line, when set.
    pub observe: Option<Arc<Observer>>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            endpoint: Endpoint::Public,
            tls: None,
            gate: None,
            shutdown_grace: Duration::from_secs(30),
            limits: ConnectionLimits::default(),
            observe: None,
        }
    }
}

/// What the loop knows of one open connection; shared with its task and its requests.
struct Tracked {
    accepted: Instant,
    /// Requests whose response has not been sent whole yet.
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    started: AtomicU64,
    /// Milliseconds after `accepted` when the last request ended.
    last_end_ms: AtomicU64,
    /// Set when the loop sheds this connection to make room.
    shed: AtomicBool,
    shed_now: Notify,
}

impl Tracked {
    fn millis(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// When the connection is to be closed if nothing changes; `None` while a request is
    /// in flight (the request body and the handler bound that time).
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if !self.is_idle() {
            return None;
        }
        if self.started.load(Ordering::Acquire) == 0 {
            return Some(self.accepted + limits.header_read_timeout);
        }
        let last_end = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        Some(self.accepted + last_end + limits.idle_timeout)
    }
}

/// Held by a request from its start until its response body is sent whole (or dropped).
struct InFlight(Arc<Tracked>);

impl InFlight {
    fn start(tracked: &Arc<Tracked>) -> Self {
        tracked.started.fetch_add(1, Ordering::AcqRel);
        tracked.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(tracked))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_end_ms.store(self.0.millis(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is sent whole, and
/// records the request (metrics, access log) when it is done.
struct CountedBody {
    inner: Body,
    /// Declared before `_in_flight`: fields drop in order, so the request is recorded
    /// before its connection counts it as ended.
    exchange: Option<Exchange>,
    _in_flight: InFlight,
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(exchange)) = (&polled, &mut this.exchange)
            && let Some(data) = frame.data_ref()
        {
            exchange.sent(data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request body was cut.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body stalled: nothing for {idle:?}, or under {min_rate} bytes a second on average"
)]
pub struct BodyStalled {
    idle: Duration,
    min_rate: u64,
}

/// A request body that must keep arriving: it fails with [`BodyStalled`] when nothing
/// arrives for `body_idle_timeout`, or when, past that grace, it has averaged less than
/// `min_body_rate` bytes a second since it started. A handler sees the failure as a cut
/// body (an upload keeps the bytes that arrived, as with any cut).
pub struct PacedBody<B> {
    inner: B,
    started: Instant,
    last_data: Instant,
    received: u64,
    /// Where the bytes received are also counted, for metrics and the access log.
    counter: Option<Arc<AtomicU64>>,
    idle: Duration,
    min_rate: u64,
    /// Made on the first wait only: most bodies (empty ones, small ones already buffered)
    /// never wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> PacedBody<B> {
    /// Wraps `inner` with the pace `limits` set.
    pub fn new(inner: B, limits: &ConnectionLimits) -> Self {
        let now = Instant::now();
        PacedBody {
            inner,
            started: now,
            last_data: now,
            received: 0,
            counter: None,
            idle: limits.body_idle_timeout,
            min_rate: limits.min_body_rate,
            timer: None,
        }
    }

    /// The moment by which more must have arrived.
    fn deadline(&self) -> Instant {
        let idle = self.last_data + self.idle;
        if self.min_rate == 0 {
            return idle;
        }
        // The average rate stays at `min_rate` until `received / min_rate` after the start;
        // the first `idle` is a grace (a request's first bytes can take a round trip).
        let paced = self.started
            + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64).max(self.idle);
        idle.min(paced)
    }
}

impl<B> hyper::body::Body for PacedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    this.last_data = Instant::now();
                    if let Some(counter) = &this.counter {
                        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(BodyStalled {
                    idle: this.idle,
                    min_rate: this.min_rate,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections of one listener, for the cap and shedding.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, Arc<Tracked>>>,
    next_id: AtomicU64,
    all_closed: Notify,
}

impl Connections {
    /// Registers a new connection, shedding the longest-idle one when at `cap`; `None` when
    /// every open connection has a request in flight.
    fn admit(&self, cap: usize) -> Option<(u64, Arc<Tracked>)> {
        let mut open = self.open.lock().expect("connection table lock");
        if open.len() >= cap {
            let victim = open
                .iter()
                .filter(|(_, t)| t.is_idle())
                .min_by_key(|(_, t)| {
                    let idle_since = if t.started.load(Ordering::Acquire) == 0 {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(t.last_end_ms.load(Ordering::Acquire))
                    };
                    t.accepted + idle_since
                })
                .map(|(id, _)| *id)?;
            let victim = open.remove(&victim).expect("victim is in the table");
            victim.shed.store(true, Ordering::Release);
            victim.shed_now.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
            shed: AtomicBool::new(false),
            shed_now: Notify::new(),
        });
        open.insert(id, Arc::clone(&tracked));
        Some((id, tracked))
    }

    fn remove(&self, id: u64) {
        let mut open = self.open.lock().expect("connection table lock");
        open.remove(&id);
        if open.is_empty() {
            self.all_closed.notify_waiters();
        }
    }

    fn is_empty(&self) -> bool {
        self.open.lock().expect("connection table lock").is_empty()
    }
}

/// Removes a connection from the table when its task ends, however it ends.
struct Registered {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.remove(self.id);
    }
}

/// Logs at most one warning a minute for connections refused at the cap.
struct RefusalLog {
    last: Option<Instant>,
    refused: u64,
}

impl RefusalLog {
    fn refused(&mut self, endpoint: &Endpoint, cap: usize) {
        self.refused += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(60))
        {
            tracing::warn!(
                listener = ?endpoint,
                max_connections = cap,
                refused = self.refused,
                "connection refused: every connection of this listener has a request in flight (raise --max-connections?)"
            );
            self.last = Some(now);
            self.refused = 0;
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (within the grace period) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ListenerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limits = config.limits.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keepalive_interval)
        .keep_alive_timeout(limits.http2_keepalive_timeout);
    let connections = Arc::new(Connections::default());
    let (stop, stopping) = watch::channel(false);
    let mut refusals = RefusalLog {
        last: None,
        refused: 0,
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some((id, tracked)) = connections.admit(limits.max_connections) else {
            refusals.refused(&config.endpoint, limits.max_connections);
            drop(stream);
            continue;
        };
        let registered = Registered {
            connections: Arc::clone(&connections),
            id,
        };
        let _ = stream.set_nodelay(true);
        let service = service(app.clone(), config.clone(), peer, Arc::clone(&tracked));
        let (tls, builder, stopping) = (config.tls.clone(), builder.clone(), stopping.clone());
        let limits = limits.clone();
        tokio::spawn(async move {
            let _registered = registered;
            let Some(stream) = first_byte(stream, &tracked, &limits).await else {
                return;
            };
            match tls {
                None => drive(&builder, stream, service, &tracked, &limits, stopping, peer).await,
                Some(acceptor) => {
                    // The handshake is bounded by the first request's deadline.
                    let deadline = tracked.accepted + limits.header_read_timeout;
                    let stream = tokio::select! {
                        handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => match handshake {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        },
                        () = tracked.shed_now.notified() => return,
                    };
                    drive(&builder, stream, service, &tracked, &limits, stopping, peer).await
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let all_closed = async {
        loop {
            let notified = connections.all_closed.notified();
            if connections.is_empty() {
                return;
            }
            notified.await;
        }
    };
    tokio::select! {
        () = all_closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_grace) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    Ok(())
}

/// The connection's request handler: the gate, the client address, the listener's tag,
/// request bodies paced and responses counted.
fn service(
    app: Router,
    config: ListenerConfig,
    peer: SocketAddr,
    tracked: Arc<Tracked>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<CountedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<CountedBody>, Infallible>> + Send,
> + Clone
+ Send
+ use<> {
    let via = Via {
        endpoint: config.endpoint,
        tls: config.tls.is_some(),
    };
    let (gate, limits, observe) = (config.gate, config.limits, config.observe);
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&tracked);
        // Request bodies are counted only when there is one (a GET has none).
        let bytes_in = observe
            .as_ref()
            .filter(|_| !hyper::body::Body::is_end_stream(request.body()))
            .map(|_| Arc::new(AtomicU64::new(0)));
        let mut exchange = observe.as_ref().map(|observer| {
            Exchange::start(
                observer,
                request.method(),
                request.uri(),
                peer,
                bytes_in.clone(),
            )
        });
        let counted = move |mut response: axum::response::Response, client: SocketAddr| {
            if let Some(exchange) = &mut exchange {
                exchange.respond(&mut response, client);
            }
            response.map(|inner| CountedBody {
                inner,
                exchange,
                _in_flight: in_flight,
            })
        };
        let client = match &gate {
            None => peer,
            Some(gate) => match gate.admit(&via, peer, request.uri(), request.headers()) {
                Ok(client) => client,
                Err(refusal) => {
                    return Either::Left(std::future::ready(Ok(counted(*refusal, peer))));
                }
            },
        };
        let mut request = request.map(|body| {
            let mut body = PacedBody::new(body, &limits);
            body.counter = bytes_in;
            body
        });
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo::<SocketAddr>(client));
        extensions.insert(via.clone());
        let app = app.clone();
        Either::Right(async move {
            let response = app.oneshot(request).await?;
            Ok(counted(response, client))
        })
    })
}

/// Waits for the connection's first byte; `None` when it does not come in time, the peer
/// closed, or the connection was shed.
async fn first_byte(
    stream: TcpStream,
    tracked: &Tracked,
    limits: &ConnectionLimits,
) -> Option<TcpStream> {
    let mut byte = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(limits.first_byte_timeout, stream.peek(&mut byte)) => match peeked {
            Ok(Ok(n)) if n > 0 => Some(stream),
            _ => None,
        },
        () = tracked.shed_now.notified() => None,
    }
}

/// Serves HTTP on one connection until it ends, is idle too long, is shed, or the listener
/// shuts down (then in-flight requests finish first).
async fn drive<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    tracked: &Tracked,
    limits: &ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<CountedBody>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut shutting_down = false;
    loop {
        let deadline = if shutting_down {
            None
        } else {
            Some(
                tracked
                    .deadline(limits)
                    // While a request is in flight, look again later.
                    .unwrap_or_else(|| Instant::now() + limits.idle_timeout),
            )
        };
        let sleep = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = sleep => {
                if tracked.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%peer, "idle connection closed");
                    return;
                }
            }
            () = tracked.shed_now.notified() => {
                tracing::debug!(%peer, "idle connection shed to make room for a new one");
                return;
            }
            _ = stopping.wait_for(|s| *s), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
        }
        if tracked.shed.load(Ordering::Acquire) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn a_stalled_body_fails_after_its_idle_timeout() {
        let limits = ConnectionLimits {
            body_idle_timeout: Duration::from_millis(100),
            ..ConnectionLimits::default()
        };
        let stalled = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, Infallible>,
        >());
        let start = std::time::Instant::now();
        let err = PacedBody::new(stalled, &limits)
            .collect()
            .await
            .expect_err("a stalled body fails");
        assert!(err.to_string().contains("stalled"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn the_cap_sheds_the_longest_idle_connection_first() {
        let connections = Connections::default();
        let (old, old_tracked) = connections.admit(2).unwrap();
        let (_, busy) = connections.admit(2).unwrap();
        let _in_flight = InFlight::start(&busy);
        // At the cap: the idle one goes, the busy one stays.
        let (_, _new) = connections.admit(2).unwrap();
        assert!(old_tracked.shed.load(Ordering::Acquire));
        assert!(!connections.open.lock().unwrap().contains_key(&old));
        // Every remaining connection busy: a new one is refused.
        let (_, newest) = connections
            .admit(2)
            .unwrap_or_else(|| panic!("sheds `_new`"));
        let _also_busy = InFlight::start(&newest);
        assert!(connections.admit(2).is_none());
    }
}
