//! Authentication and authorization of registry requests.
//!
//! Every request is authenticated once, in [`authenticate`]: Basic credentials (a token or
//! the admin), a Bearer access token issued by `/oauth2/token`, or nothing (anonymous).
//! Then [`Caller::require`] checks one repository action. The rules:
//! - no or wrong credentials: `401` with a `WWW-Authenticate: Bearer` challenge naming the
//!   realm, the service and the scope the request needs, so Docker-style clients fetch a token;
//! - a Bearer token that does not carry the action, for a caller who has it: `401` with the
//!   challenge too (the client asks for a token with that scope);
//! - an authenticated caller who lacks the action: `403 DENIED`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use base64::Engine as _;
use berth_auth::{Access, Actions, LoginError, Principal, RepositoryAction};
use berth_oci::ErrorCode;
use http::request::Parts;
use http::{StatusCode, header};
use serde_json::json;

use crate::error::ApiError;
use crate::network::{Endpoint, Via};
use crate::state::AppState;

/// How a request authenticated.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Nothing.
    None,
    /// `Authorization: Basic`.
    Basic,
    /// `Authorization: Bearer`, with what the token grants.
    Bearer(Vec<Access>),
}

/// Who sent a request, and how.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal.
    pub principal: Principal,
    /// How it authenticated.
    pub credential: Credential,
    /// Where the caller would log in, for challenges.
    site: LoginSite,
}

/// Where clients log in (the token realm) and the service their tokens name, as a request
/// shows them. The strings are made only when needed (a challenge, a Bearer token's check):
/// most requests need neither, and formatting them was ~7% of a manifest GET's instructions.
#[derive(Debug, Clone)]
pub struct LoginSite {
    /// `https://registry.example.com` (the configured public URL) or `scheme://host` of the
    /// request, in parts.
    scheme: &'static str,
    host: LoginHost,
}

#[derive(Debug, Clone)]
enum LoginHost {
    /// The configured public URL, whole (scheme included).
    Public(std::sync::Arc<str>),
    /// The request's `Host`, or its authority, or `localhost`.
    Request(http::HeaderValue),
}

impl LoginSite {
    /// The site for this request: from the configured public URL on the login server, else
    /// (and always on a private endpoint) from the request's `Host` and listener's scheme.
    pub fn of(state: &AppState, parts: &Parts) -> Self {
        let via = Via::of(&parts.extensions);
        let host = match &state.public_url {
            Some(url) if via.endpoint == Endpoint::Public => LoginHost::Public(Arc::clone(url)),
            _ => LoginHost::Request(
                parts
                    .headers
                    .get(header::HOST)
                    .filter(|h| h.to_str().is_ok())
                    .cloned()
                    .or_else(|| {
                        let authority = parts.uri.authority()?;
                        http::HeaderValue::from_str(authority.as_str()).ok()
                    })
                    .unwrap_or(http::HeaderValue::from_static("localhost")),
            ),
        };
        LoginSite {
            scheme: via.scheme(),
            host,
        }
    }

    /// `https://host` (no trailing slash).
    fn base(&self) -> String {
        match &self.host {
            LoginHost::Public(url) => url.trim_end_matches('/').to_owned(),
            LoginHost::Request(host) => {
                // Only `Host` values that are text are kept (see `of`).
                format!("{}://{}", self.scheme, host.to_str().unwrap_or_default())
            }
        }
    }

    /// The service name tokens are issued for: the site without its scheme.
    pub fn service(&self) -> String {
        service_of(&self.base()).to_owned()
    }

    /// `(realm, service)`: the token endpoint's URL, and the service name.
    pub fn realm_and_service(&self) -> (String, String) {
        let base = self.base();
        let service = service_of(&base).to_owned();
        (format!("{base}/oauth2/token"), service)
    }

    /// A `401` challenging for `scope` at this site.
    pub fn challenge(
        &self,
        scope: Option<&str>,
        message: &str,
        detail: serde_json::Value,
    ) -> ApiError {
        let (realm, service) = self.realm_and_service();
        challenge(&realm, &service, scope, message, detail)
    }
}

/// `host[:port][/path]` of `scheme://host[:port][/path]`.
fn service_of(base: &str) -> &str {
    base.split("://").nth(1).unwrap_or(base)
}

/// The client's address, from the listener (loopback-unspecified when called in process).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// `(realm, service)` for this request: from the configured public URL on the login server,
/// else (and always on a private endpoint) from the request's `Host` and listener's scheme.
pub fn realm_and_service(state: &AppState, parts: &Parts) -> (String, String) {
    LoginSite::of(state, parts).realm_and_service()
}

/// Refuses a request whose host could be read two ways: more than one `Host` header, or a
/// `Host` that names another host or port than the request's authority (HTTP/2's
/// `:authority`, or an absolute-form URI in HTTP/1). The service name, the token realm and a
/// proxy's routing could each read a different one.
pub fn single_host(parts: &Parts) -> Result<(), ApiError> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::Unsupported,
            "the request has more than one Host header",
        ));
    }
    if let (Some(host), Some(authority)) = (host, parts.uri.authority())
        && !same_host(host.as_bytes(), authority, parts.uri.scheme_str())
    {
        return Err(ApiError::bad_request(
            ErrorCode::Unsupported,
            format!(
                "the Host header `{}` differs from the request's authority `{authority}`",
                String::from_utf8_lossy(host.as_bytes())
            ),
        ));
    }
    Ok(())
}

/// Whether a `Host` header names the same host and port as `authority` (host names compared
/// without case, a port left out standing for `scheme`'s default one).
fn same_host(host: &[u8], authority: &http::uri::Authority, scheme: Option<&str>) -> bool {
    let Ok(host) = http::uri::Authority::try_from(host) else {
        return false;
    };
    let default_port = match scheme {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    };
    host.host().eq_ignore_ascii_case(authority.host())
        && host.port_u16().or(default_port) == authority.port_u16().or(default_port)
}

/// Decodes `Authorization: Basic`.
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A `401` for this request, challenging for `scope`.
pub fn challenge(
    realm: &str,
    service: &str,
    scope: Option<&str>,
    message: &str,
    detail: serde_json::Value,
) -> ApiError {
    let mut value = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
        .with_detail(detail)
        .with_header(header::WWW_AUTHENTICATE, value)
}

/// Maps a failed login to its response: `429` when rate-limited, else a `401` challenge;
/// counts it in the metrics.
pub fn login_failure(state: &AppState, error: LoginError, realm: &str, service: &str) -> ApiError {
    match &error {
        LoginError::RateLimited(_) => state.metrics.login_rate_limited(),
        LoginError::Invalid => state.metrics.login_failed(),
    }
    match error {
        LoginError::RateLimited(retry) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            error.to_string(),
        )
        .with_header(header::RETRY_AFTER, retry.as_secs().to_string()),
        LoginError::Invalid => challenge(
            realm,
            service,
            None,
            &error.to_string(),
            serde_json::Value::Null,
        ),
    }
}

/// Brings this node's identities up to the store's before credentials are checked
/// (`Identity::catch_up`: nothing to do unless other nodes share the store). A store that
/// cannot be read is logged, and the last identities read stand.
pub async fn catch_up(state: &AppState) {
    if let Err(e) = state.identity.catch_up().await {
        tracing::warn!(error = %e, "could not read identity changes made by other nodes; checking against the last ones read");
    }
}

/// Authenticates a request. Wrong credentials are refused here; missing ones make an
/// anonymous caller, whose rights [`Caller::require`] decides.
pub async fn authenticate(state: &AppState, parts: &Parts) -> Result<Caller, ApiError> {
    single_host(parts)?;
    catch_up(state).await;
    let site = LoginSite::of(state, parts);
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let (principal, credential) = match authorization {
        None => (Principal::Anonymous, Credential::None),
        Some(value) if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") => match state
            .identity
            .checks()
            .verify_access_token(value[7..].trim(), &site.service())
        {
            Ok((principal, access)) => (principal, Credential::Bearer(access)),
            Err(e) => {
                return Err(site.challenge(
                    None,
                    &format!("{e}; log in again"),
                    serde_json::Value::Null,
                ));
            }
        },
        Some(value) => {
            let Some((user, password)) = basic_credentials(value) else {
                return Err(site.challenge(
                    None,
                    "the Authorization header is malformed",
                    serde_json::Value::Null,
                ));
            };
            let principal = state
                .identity
                .checks()
                .login(&user, &password, client_ip(parts))
                .await
                .map_err(|e| {
                    let (realm, service) = site.realm_and_service();
                    login_failure(state, e, &realm, &service)
                })?;
            (principal, Credential::Basic)
        }
    };
    Ok(Caller {
        principal,
        credential,
        site,
    })
}

impl Caller {
    /// Whether the caller presented credentials (a Bearer token counts, even anonymous).
    pub fn authenticated(&self) -> bool {
        !matches!(self.credential, Credential::None)
    }

    /// The actions the caller may use on `repository` now: its rights, narrowed by what its
    /// Bearer token carries.
    pub fn actions(&self, state: &AppState, repository: &str) -> Actions {
        let rights = state
            .identity
            .checks()
            .repository_actions(&self.principal, repository);
        match &self.credential {
            Credential::Bearer(access) => rights.intersection(token_actions(access, repository)),
            _ => rights,
        }
    }

    /// Requires `action` on `repository`.
    pub fn require(
        &self,
        state: &AppState,
        repository: &str,
        action: RepositoryAction,
    ) -> Result<(), ApiError> {
        if self.actions(state, repository).contains(action) {
            return Ok(());
        }
        let scope = format!("repository:{repository}:{}", scope_actions(action));
        let detail =
            json!([{ "Type": "repository", "Name": repository, "Action": action.docker_name() }]);
        let has_right = state
            .identity
            .checks()
            .repository_actions(&self.principal, repository)
            .contains(action);
        // Anonymous callers, even with an (anonymous) access token, have no credentials:
        // they are challenged to log in rather than denied.
        let needs_login = self.principal == Principal::Anonymous;
        if needs_login || (has_right && matches!(self.credential, Credential::Bearer(_))) {
            let message = format!(
                "authentication required to {} `{repository}`",
                action.docker_name()
            );
            return Err(self.site.challenge(Some(&scope), &message, detail));
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Denied,
            format!(
                "`{}` may not {} repository `{repository}` ({action})",
                self.principal.display_name(),
                action.docker_name()
            ),
        )
        .with_detail(detail))
    }

    /// Requires any valid credentials (the `/v2/` check, and the catalog).
    pub fn require_login(&self, scope: Option<&str>) -> Result<(), ApiError> {
        if self.authenticated() {
            return Ok(());
        }
        Err(self
            .site
            .challenge(scope, "authentication required", serde_json::Value::Null))
    }

    /// Requires the catalog scope for Bearer tokens (`registry:catalog:*`).
    pub fn require_catalog(&self) -> Result<(), ApiError> {
        const SCOPE: &str = "registry:catalog:*";
        self.require_login(Some(SCOPE))?;
        match &self.credential {
            Credential::Bearer(access)
                if !access
                    .iter()
                    .any(|a| a.kind == "registry" && a.name == "catalog") =>
            {
                Err(self.site.challenge(
                    Some(SCOPE),
                    "a token with the catalog scope is required",
                    serde_json::Value::Null,
                ))
            }
            _ => Ok(()),
        }
    }

    /// Requires the admin, with Basic credentials or a Bearer token scoped to the
    /// management API (`registry:management:*`): an admin token obtained to pull does not
    /// manage.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.principal {
            Principal::Admin => match &self.credential {
                Credential::Bearer(access)
                    if !access
                        .iter()
                        .any(|a| a.kind == "registry" && a.name == "management") =>
                {
                    Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        ErrorCode::Denied,
                        "this access token is not scoped to the management API: use Basic credentials, or a token for `registry:management:*`",
                    ))
                }
                _ => Ok(()),
            },
            Principal::Anonymous if !self.authenticated() => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "the management API needs the admin's credentials",
            )
            .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"berth\"")),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Denied,
                "only the admin may use the management API",
            )),
        }
    }
}

/// What a Bearer token's access list grants on a repository.
fn token_actions(access: &[Access], repository: &str) -> Actions {
    let granted = access
        .iter()
        .filter(|a| a.kind == "repository" && a.name == repository)
        .fold(Actions::NONE, |set, a| {
            set.union(Actions::from_docker(&a.actions.join(",")))
        });
    // Docker clients (skopeo among them) list tags with a `pull` token and never ask for
    // `metadata_read`; a pull grant therefore carries listing, which the caller's own rights
    // still have to allow (metadata/read in its scope map).
    if granted.contains(RepositoryAction::ContentRead) {
        granted.with(RepositoryAction::MetadataRead)
    } else {
        granted
    }
}

/// The scope actions to challenge for: a push also needs pull, as Docker clients ask.
fn scope_actions(action: RepositoryAction) -> &'static str {
    match action {
        RepositoryAction::ContentWrite => "pull,push",
        other => other.docker_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_decoding() {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("robot:pa:ss")
        );
        assert_eq!(
            basic_credentials(&value),
            Some(("robot".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials("Basic !!!"), None);
        assert_eq!(basic_credentials("Digest x"), None);
    }
}
