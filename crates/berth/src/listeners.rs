//! Every listener of one registry: the login server, private endpoints and the data
//! endpoint, each bound (and its certificate read) before anything is served, so a wrong
//! address or certificate stops the start with a clear message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_auth::network::{ConnectionState, IpRules};
use berth_auth::{Identity, KeyPurpose};
use berth_server::data::{DataEndpoint, DataUrlKeys};
use berth_server::network::{Endpoint, Gate, ListenerInfo, NetworkConfig, NetworkGate, scheme};
use berth_server::tls::{ReloadingCert, TlsFiles};
use berth_server::{AppState, ListenerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;

type BoxError = Box<dyn std::error::Error>;

/// How often certificate files are checked for changes (SIGHUP reloads at once).
const CERT_POLL: Duration = Duration::from_secs(2);

struct Bound {
    endpoint: Endpoint,
    listener: TcpListener,
    tls: Option<ReloadingCert>,
    /// A private endpoint's description from configuration.
    description: String,
}

/// The bound listeners.
pub struct Listeners {
    /// The login server's listener.
    pub login_server: TcpListener,
    login_tls: Option<ReloadingCert>,
    others: Vec<Bound>,
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, BoxError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the {what}: {e}").into())
}

fn certificate(
    what: &str,
    files: Option<&TlsFiles>,
    stop: &watch::Receiver<bool>,
) -> Result<Option<ReloadingCert>, BoxError> {
    let Some(files) = files else { return Ok(None) };
    let cert = ReloadingCert::load(files.clone())
        .map_err(|e| format!("cannot use the TLS certificate of the {what}: {e}"))?;
    cert.spawn_reloader(CERT_POLL, stop.clone());
    Ok(Some(cert))
}

impl Listeners {
    /// Binds every configured listener and loads its certificate (reloaded until `stop`).
    pub async fn bind(config: &Config, stop: watch::Receiver<bool>) -> Result<Self, BoxError> {
        let login_server = bind("login server", config.listen).await?;
        let login_tls = certificate("login server", config.tls.as_ref(), &stop)?;
        let mut others = Vec::new();
        for endpoint in &config.private_endpoints {
            let what = format!("private endpoint `{}`", endpoint.name);
            let listener = bind(&what, endpoint.listen).await?;
            let tls = certificate(&what, endpoint.tls.as_ref(), &stop)?;
            println!(
                "berth: private endpoint `{}` listening on {}://{}",
                endpoint.name,
                scheme(tls.is_some()),
                listener.local_addr()?
            );
            others.push(Bound {
                endpoint: Endpoint::Private(Arc::from(endpoint.name.as_str())),
                listener,
                tls,
                description: endpoint.description.clone(),
            });
        }
        if let Some(data) = &config.data_endpoint {
            let listener = bind("data endpoint", data.listen).await?;
            let tls = certificate("data endpoint", data.tls.as_ref(), &stop)?;
            println!(
                "berth: data endpoint listening on {}://{}, reached at {}",
                scheme(tls.is_some()),
                listener.local_addr()?,
                data.url
            );
            others.push(Bound {
                endpoint: Endpoint::Data,
                listener,
                tls,
                description: String::new(),
            });
        }
        Ok(Listeners {
            login_server,
            login_tls,
            others,
        })
    }

    /// What handlers need to know about the listeners (for `show-endpoints`, the network
    /// gate and signed URLs).
    pub fn network_config(
        &self,
        config: &Config,
        login_addr: SocketAddr,
        identity: &Arc<Identity>,
    ) -> Result<NetworkConfig, BoxError> {
        let info = |name: &str, bound: &Bound| -> std::io::Result<_> {
            Ok(ListenerInfo {
                name: name.to_owned(),
                address: bound.listener.local_addr()?,
                tls: bound.tls.is_some(),
                description: bound.description.clone(),
            })
        };
        let mut private_endpoints = Vec::new();
        let mut data_listener = None;
        for bound in &self.others {
            match &bound.endpoint {
                Endpoint::Private(name) => private_endpoints.push(info(name, bound)?),
                Endpoint::Data => data_listener = Some(info("", bound)?),
                Endpoint::Public => {}
            }
        }
        let data = match &config.data_endpoint {
            Some(data) => {
                let identity = Arc::clone(identity);
                let keys: DataUrlKeys =
                    Arc::new(move || identity.checks().keys(KeyPurpose::DataUrls).ok());
                Some(DataEndpoint::new(&data.url, data.url_ttl, keys))
            }
            None => None,
        };
        Ok(NetworkConfig {
            trusted_proxies: IpRules::compile(&config.trusted_proxies),
            login_server: Some(ListenerInfo {
                name: String::new(),
                address: login_addr,
                tls: self.login_tls.is_some(),
                description: String::new(),
            }),
            private_endpoints,
            data,
            data_listener,
        })
    }

    /// Serves every listener until `stop` turns true; returns when all have finished.
    pub async fn serve(
        self,
        state: AppState,
        config: ListenerConfig,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let app = berth_server::router(state.clone());
        let gate: Arc<dyn Gate> = Arc::new(NetworkGate::new(&state));
        let data_app = berth_server::data::router(state);
        let stopped = |mut stop: watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        };
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(berth_server::serve(
            self.login_server,
            app.clone(),
            ListenerConfig {
                endpoint: Endpoint::Public,
                tls: self.login_tls.as_ref().map(ReloadingCert::acceptor),
                gate: Some(Arc::clone(&gate)),
                ..config.clone()
            },
            stopped(stop.clone()),
        ));
        for bound in self.others {
            // The data endpoint's URLs carry their own authorization: no gate there.
            let (app, gate) = match bound.endpoint {
                Endpoint::Data => (data_app.clone(), None),
                _ => (app.clone(), Some(Arc::clone(&gate))),
            };
            tasks.spawn(berth_server::serve(
                bound.listener,
                app,
                ListenerConfig {
                    tls: bound.tls.as_ref().map(ReloadingCert::acceptor),
                    endpoint: bound.endpoint,
                    gate,
                    ..config.clone()
                },
                stopped(stop.clone()),
            ));
        }
        while let Some(served) = tasks.join_next().await {
            served.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
}

/// Records a connection for each configured private endpoint never decided on: `Pending`,
/// or `Approved` when configured pre-approved. Decisions already made stand.
pub async fn seed_private_endpoints(identity: &Identity, config: &Config) -> Result<(), BoxError> {
    let policy = identity.management().network();
    let new: Vec<_> = config
        .private_endpoints
        .iter()
        .filter(|e| !policy.settings.private_endpoints.contains_key(&e.name))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let now = berth_oci::time::unix_now();
    identity
        .management()
        .update_network(|settings| {
            for endpoint in &new {
                let state = if endpoint.approved {
                    ConnectionState::Approved
                } else {
                    ConnectionState::Pending
                };
                let description = Some(endpoint.description.clone());
                settings.set_connection(&endpoint.name, state, description, now);
            }
            Ok(())
        })
        .await?;
    Ok(())
}
