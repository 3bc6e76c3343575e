//! The token endpoint, `/oauth2/token`, as Docker and containerd use it.
//!
//! - `GET` with optional Basic credentials and `service`, `scope` (repeatable), `account`,
//!   `client_id`, `offline_token` query parameters (the Docker token spec);
//! - `POST` with a form body: `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token`), plus `service`, `scope`, `client_id`,
//!   `access_type=offline` (the OAuth2 flow containerd tries first).
//!
//! Both answer with `access_token` (and `token`, for older clients), `expires_in`,
//! `issued_at`, and a `refresh_token` when an offline token is asked for.

use axum::body::Body;
use axum::response::Response;
use berth_auth::{Principal, Scope};
use berth_oci::ErrorCode;
use futures_util::StreamExt;
use http::request::Parts;
use http::{StatusCode, header};
use serde_json::json;

use super::QueryParams;
use crate::auth::{
    basic_credentials, catch_up, challenge, client_ip, login_failure, realm_and_service,
    single_host,
};
use crate::error::ApiError;
use crate::observe::CallerNote;
use crate::state::AppState;

/// Form bodies larger than this are refused.
const MAX_FORM: usize = 64 << 10;

fn issued_at(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn token_response(
    state: &AppState,
    principal: &Principal,
    service: &str,
    scopes: &[Scope],
    refresh: bool,
) -> Response {
    let issued = state
        .identity
        .checks()
        .issue_access_token(principal, service, scopes);
    let mut body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued_at(issued.issued_at),
    });
    if !scopes.is_empty() {
        let granted: Vec<String> = issued
            .access
            .iter()
            .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
            .collect();
        body["scope"] = json!(granted.join(" "));
    }
    if refresh && *principal != Principal::Anonymous {
        body["refresh_token"] = json!(
            state
                .identity
                .checks()
                .issue_refresh_token(principal, service)
        );
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body.to_string()))
        .expect("valid response parts")
}

/// `GET /oauth2/token`.
pub async fn get(state: &AppState, parts: &Parts) -> Result<Response, ApiError> {
    single_host(parts)?;
    catch_up(state).await;
    let (realm, service) = realm_and_service(state, parts);
    let params = QueryParams::parse(parts.uri.query());
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let principal = match authorization {
        None => Principal::Anonymous,
        Some(value) => {
            let (user, password) = basic_credentials(value).ok_or_else(|| {
                challenge(
                    &realm,
                    &service,
                    None,
                    "the Authorization header must be Basic credentials",
                    serde_json::Value::Null,
                )
            })?;
            state
                .identity
                .checks()
                .login(&user, &password, client_ip(parts))
                .await
                .map_err(|e| login_failure(state, e, &realm, &service))?
        }
    };
    // The token's audience is this registry's own service, whatever `service` the client
    // names: it is checked against the service of every request the token is presented to.
    let scopes = Scope::parse_all(params.all("scope"));
    let refresh = params.get("offline_token") == Some("true");
    CallerNote::mark(parts, &principal);
    Ok(token_response(
        state, &principal, &service, &scopes, refresh,
    ))
}

/// `POST /oauth2/token`.
pub async fn post(state: &AppState, parts: &Parts, body: Body) -> Result<Response, ApiError> {
    single_host(parts)?;
    catch_up(state).await;
    let (realm, service) = realm_and_service(state, parts);
    let mut form = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                ErrorCode::Unsupported,
                format!("the form could not be received: {e}"),
            )
        })?;
        form.extend_from_slice(&chunk);
        if form.len() > MAX_FORM {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::SizeInvalid,
                "the token request form is too large",
            ));
        }
    }
    let form = QueryParams::parse(Some(&String::from_utf8_lossy(&form)));
    let unauthorized =
        |message: &str| challenge(&realm, &service, None, message, serde_json::Value::Null);
    let principal = match form.get("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (form.get("username"), form.get("password")) else {
                return Err(ApiError::bad_request(
                    ErrorCode::Unsupported,
                    "grant_type=password needs `username` and `password`",
                ));
            };
            state
                .identity
                .checks()
                .login(user, password, client_ip(parts))
                .await
                .map_err(|e| login_failure(state, e, &realm, &service))?
        }
        Some("refresh_token") => {
            let token = form.get("refresh_token").ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::Unsupported,
                    "grant_type=refresh_token needs `refresh_token`",
                )
            })?;
            state
                .identity
                .checks()
                .verify_refresh_token(token, &service)
                .map_err(|e| unauthorized(&format!("refresh token refused: {e}; log in again")))?
        }
        other => {
            return Err(ApiError::bad_request(
                ErrorCode::Unsupported,
                format!(
                    "grant_type `{}` is not supported; use `password` or `refresh_token`",
                    other.unwrap_or("")
                ),
            ));
        }
    };
    // The audience is this registry's own service (see `get`).
    let scopes = Scope::parse_all(form.all("scope"));
    let refresh = form.get("access_type") == Some("offline");
    CallerNote::mark(parts, &principal);
    Ok(token_response(
        state, &principal, &service, &scopes, refresh,
    ))
}
