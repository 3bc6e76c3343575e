//! Who may reach the registry through which listener: the public switch and IP rules on the
//! login server's listener, connection states on private endpoints, and the client address
//! behind trusted proxies.
//!
//! Each listener tags its requests with a [`Via`] and passes them through its [`Gate`]
//! before the router sees them (so before any credential is looked at); [`NetworkGate`]
//! refuses with `403` what the listener must not serve. The settings come from
//! [`berth_auth::Identity::network`], compiled once per change. (A gate in the accept loop
//! rather than an axum middleware: it costs a few atomic operations per request, where a
//! middleware layer cost 12% of the manifest requests per second.)

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use berth_auth::Identity;
use berth_auth::network::{ConnectionState, IpRules};
use berth_metrics::RefusalCause;
use berth_oci::ErrorCode;
use http::{HeaderMap, StatusCode};

use crate::data::DataEndpoint;
use crate::error::ApiError;
use crate::state::AppState;

/// Which kind of listener a request arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The login server's listener: public network rules apply.
    Public,
    /// A named private endpoint: only its connection state applies.
    Private(Arc<str>),
    /// The dedicated data endpoint: serves signed blob URLs only.
    Data,
}

/// How a request arrived: the listener, and whether over TLS. Set by the listener on every
/// request; a request without one (in-process tests) counts as public plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The listener.
    pub endpoint: Endpoint,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Default for Via {
    fn default() -> Self {
        Via {
            endpoint: Endpoint::Public,
            tls: false,
        }
    }
}

impl Via {
    /// The `Via` of a request.
    pub fn of(extensions: &http::Extensions) -> Via {
        extensions.get::<Via>().cloned().unwrap_or_default()
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        scheme(self.tls)
    }
}

/// The URL scheme of a listener with or without TLS.
pub fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// One listener as configured, for `show-endpoints`.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// The private endpoint's name; empty for the login server and the data endpoint.
    pub name: String,
    /// The address bound.
    pub address: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
    /// The private endpoint's description from configuration.
    pub description: String,
}

impl ListenerInfo {
    /// The URL of the listener as bound (`https://10.0.0.5:443`).
    pub fn url(&self) -> String {
        format!("{}://{}", scheme(self.tls), self.address)
    }
}

/// Network configuration fixed at start (the settings that change live are in identities).
#[derive(Default)]
pub struct NetworkConfig {
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: IpRules,
    /// The login server's listener.
    pub login_server: Option<ListenerInfo>,
    /// Private endpoints' listeners.
    pub private_endpoints: Vec<ListenerInfo>,
    /// The data endpoint's signer, when configured.
    pub data: Option<DataEndpoint>,
    /// The data endpoint's listener, when configured.
    pub data_listener: Option<ListenerInfo>,
}

impl NetworkConfig {
    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` (else `Forwarded: for=`) that is not itself a trusted
    /// proxy.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted_proxies.contains(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| parse_hop(hop.trim()))
            .collect();
        if hops.is_empty() {
            hops = headers
                .get_all(http::header::FORWARDED)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|element| {
                    element.split(';').find_map(|pair| {
                        let (key, value) = pair.trim().split_once('=')?;
                        key.eq_ignore_ascii_case("for")
                            .then(|| parse_hop(value.trim().trim_matches('"')))
                            .flatten()
                    })
                })
                .collect();
        }
        // Walk back from the nearest hop: the first one not a trusted proxy is the client.
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !self.trusted_proxies.contains(hop) {
                break;
            }
        }
        client
    }
}

/// One hop of a forwarding header: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`. Obfuscated identifiers (`unknown`, `_hidden`) are skipped.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

fn denied(message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied, message).into_response()
}

/// Decides on each request before the router sees it; the listener calls it.
pub trait Gate: Send + Sync + 'static {
    /// The client's address (see [`NetworkConfig::client_addr`]) when the request may go on,
    /// else the response that refuses it.
    fn admit(
        &self,
        via: &Via,
        peer: SocketAddr,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> Result<SocketAddr, Box<Response>>;
}

/// The network rules of one registry, as a [`Gate`]: refuses with `403 DENIED` what the
/// request's listener must not serve, before any handler (or credential check) runs.
pub struct NetworkGate {
    identity: Arc<Identity>,
    network: Arc<NetworkConfig>,
    metrics: Arc<berth_metrics::Metrics>,
}

impl NetworkGate {
    /// The gate of the registry whose state is `state`.
    pub fn new(state: &AppState) -> Self {
        NetworkGate {
            identity: Arc::clone(&state.identity),
            network: Arc::clone(&state.network),
            metrics: Arc::clone(&state.metrics),
        }
    }
}

impl Gate for NetworkGate {
    fn admit(
        &self,
        via: &Via,
        peer: SocketAddr,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> Result<SocketAddr, Box<Response>> {
        let client = self.network.client_addr(peer.ip(), headers);
        match &via.endpoint {
            Endpoint::Public => {
                // The owner is never locked out: the management API answers on the login
                // server to callers on this machine (still only to the admin), and so do the
                // health checks (a probe on the machine, whatever the rules). The client
                // address, not the peer: a proxy on this machine does not make its clients
                // local.
                let path = uri.path();
                let local_exempt = client.to_canonical().is_loopback()
                    && (path.starts_with("/berth/v1/") || path == "/healthz" || path == "/readyz");
                if !local_exempt
                    && let Err(refusal) = self.identity.management().network().admit_public(client)
                {
                    tracing::debug!(%client, %refusal, "refused by network rules");
                    self.metrics.network_refused(match refusal {
                        berth_auth::network::Refusal::PublicNetworkDisabled => {
                            RefusalCause::PublicNetworkDisabled
                        }
                        berth_auth::network::Refusal::NotAllowed(_) => RefusalCause::IpNotAllowed,
                    });
                    return Err(Box::new(denied(refusal.to_string())));
                }
            }
            Endpoint::Private(name) => {
                let connection = self
                    .identity
                    .management()
                    .network()
                    .private_endpoint_state(name);
                if connection != ConnectionState::Approved {
                    self.metrics
                        .network_refused(RefusalCause::PrivateEndpointNotApproved);
                    return Err(Box::new(denied(format!(
                        "private endpoint `{name}` is {connection}: only an Approved private endpoint serves; the registry's owner approves it with `berth private-endpoint-connection approve --name {name}`"
                    ))));
                }
            }
            Endpoint::Data => {}
        }
        Ok(SocketAddr::new(client, peer.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(proxies: &[&str]) -> NetworkConfig {
        let rules: Vec<String> = proxies
            .iter()
            .map(|p| berth_auth::network::parse_ip_rule(p).unwrap().to_string())
            .collect();
        NetworkConfig {
            trusted_proxies: IpRules::compile(&rules),
            ..NetworkConfig::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_are_believed_only_from_trusted_proxies() {
        let c = config(&["10.0.0.1", "10.0.1.0/24"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.1.7")]);
        assert_eq!(c.client_addr(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        assert_eq!(
            c.client_addr(ip("198.51.100.1"), &h),
            ip("198.51.100.1"),
            "an untrusted peer's header is ignored"
        );
        // A client cannot smuggle an address in front of the real one.
        let h = headers(&[("x-forwarded-for", "10.0.0.99, 203.0.113.9")]);
        assert_eq!(c.client_addr(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        // No header: the proxy itself.
        assert_eq!(
            c.client_addr(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        assert_eq!(
            config(&[]).client_addr(ip("10.0.0.1"), &h),
            ip("10.0.0.1"),
            "no trusted proxies, no headers believed"
        );
    }

    #[test]
    fn forwarded_rfc7239_and_ipv6_hops() {
        let c = config(&["::1"]);
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"",
        )]);
        assert_eq!(c.client_addr(ip("::1"), &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("x-forwarded-for", "2001:db8::5")]);
        assert_eq!(c.client_addr(ip("::1"), &h), ip("2001:db8::5"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(c.client_addr(ip("::1"), &h), ip("::1"));
    }
}
