//! The accept loop: one task per connection, TLS when configured, HTTP/1.1 and HTTP/2,
//! graceful shutdown.
//!
//! Berth runs its own loop rather than `axum::serve` so that each listener can tag its
//! requests with where they came from ([`Via`]), pass them through its [`Gate`], terminate
//! TLS with a certificate that can change while running, and let in-flight requests finish
//! within a grace period at shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use futures_util::future::Either;

use crate::network::{Endpoint, Gate, Via};

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
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            endpoint: Endpoint::Public,
            tls: None,
            gate: None,
            shutdown_grace: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(30),
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let via = Via {
            endpoint: config.endpoint.clone(),
            tls: config.tls.is_some(),
        };
        let gate = config.gate.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let client = match &gate {
                None => peer,
                Some(gate) => match gate.admit(&via, peer, request.uri(), request.headers()) {
                    Ok(client) => client,
                    Err(refusal) => {
                        return Either::Left(std::future::ready(Ok::<_, Infallible>(*refusal)));
                    }
                },
            };
            let extensions = request.extensions_mut();
            extensions.insert(ConnectInfo::<SocketAddr>(client));
            extensions.insert(via.clone());
            Either::Right(app.clone().oneshot(request))
        });
        match &config.tls {
            None => {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's task, so a slow client never holds
                // up the accept loop; it is bounded like the request headers are.
                let (acceptor, builder, watcher) =
                    (acceptor.clone(), builder.clone(), graceful.watcher());
                let timeout = config.header_read_timeout;
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_grace) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    Ok(())
}
