//! The distribution API's router: `/v2/` and everything under it.
//!
//! axum cannot route a wildcard in the middle of a path, and repository names contain `/`,
//! so one handler takes `/v2/{*rest}`, [`Route::parse`] decides the endpoint, and
//! [`dispatch`] calls the handler for the endpoint and method.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use berth_oci::RepositoryName;
use berth_registry::Registry;
use http::{HeaderValue, Method, StatusCode, header};

use crate::error::ApiError;
use berth_auth::RepositoryAction as A;

use crate::auth::authenticate;
use crate::handlers::{QueryParams, blobs, listing, manifests, token, uploads};
use crate::observe::Handled;
use crate::route::Route;
use crate::state::AppState;

/// The router of the distribution API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(entry))
        .route("/v2/", any(entry))
        .route("/v2/{*rest}", any(entry))
        .route(
            "/oauth2/token",
            any(token_entry).layer(axum::middleware::from_fn(crate::observe::note_caller)),
        )
        .route("/healthz", axum::routing::get(crate::observe::healthz))
        .route("/readyz", axum::routing::get(crate::observe::readyz))
        .merge(
            crate::manage::router()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::manage::audit::record,
                ))
                .layer(axum::middleware::from_fn(crate::observe::note_caller)),
        )
        .merge(
            crate::gateway::router().layer(axum::middleware::from_fn(crate::observe::note_caller)),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(request: Request) -> Response {
    ApiError::management(
        StatusCode::NOT_FOUND,
        "UNSUPPORTED",
        format!("`{}` is not an endpoint of Berth", request.uri().path()),
    )
    .into_response()
}

async fn token_entry(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = match parts.method {
        Method::GET => token::get(&state, &parts).await,
        Method::POST => token::post(&state, &parts, body).await,
        ref other => Err(ApiError::method_not_allowed(other)),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn entry(State(state): State<AppState>, request: Request) -> Response {
    let mut response = match dispatch(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response.headers_mut().insert(
        "Docker-Distribution-Api-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

fn name(state: &AppState, name: &str) -> Result<RepositoryName, ApiError> {
    Ok(state.registry.repository_name(name)?)
}

async fn dispatch(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let rest = path
        .strip_prefix("/v2")
        .unwrap_or(path)
        .trim_start_matches('/');
    let route = Route::parse(rest).ok_or_else(|| ApiError::not_found(path))?;
    // For the listener's record (metrics, access log), which takes it out again.
    let mut handled = Handled::of(path, &route);
    let mut response = match authenticate(state, &parts).await {
        Ok(caller) => {
            let response = serve(state, &caller, route, &parts, body).await;
            handled.user = Some(caller.principal);
            response.unwrap_or_else(IntoResponse::into_response)
        }
        Err(refused) => refused.into_response(),
    };
    response.extensions_mut().insert(handled);
    Ok(response)
}

async fn serve(
    state: &AppState,
    caller: &crate::auth::Caller,
    route: Route<'_>,
    parts: &http::request::Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(parts.uri.query());
    let headers = &parts.headers;
    let method = &parts.method;
    let head = method == Method::HEAD;
    // Each arm checks the one action its endpoint needs before touching anything. All but
    // the pulls' arms box their futures: this one's size is the largest arm's, and every
    // request's future is moved several times on its way through hyper, tower and axum
    // (memcpy of the unboxed future was ~4% of a manifest GET's instructions).
    let need =
        |repository: &RepositoryName, action: A| {
            caller.require(state, repository.as_str(), action)?;
            // A ReadOnly connected registry is a mirror: nothing local may change it.
            let read_only = state
                .read_only
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            match read_only {
                Some(why) if !matches!(action, A::ContentRead | A::MetadataRead) => Err(
                    ApiError::new(StatusCode::FORBIDDEN, berth_oci::ErrorCode::Denied, why),
                ),
                _ => Ok(()),
            }
        };

    match (route, method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => {
            caller.require_login(None)?;
            Ok(json_ok("{}"))
        }
        (Route::Catalog, Method::GET) => {
            caller.require_catalog()?;
            Box::pin(listing::catalog(state, caller, &params)).await
        }
        (Route::Tags { name: n }, Method::GET) => {
            let n = name(state, n)?;
            need(&n, A::MetadataRead)?;
            Box::pin(listing::tags(state, &n, &params)).await
        }
        (
            Route::Manifest { name: n, reference },
            m @ (Method::GET | Method::HEAD | Method::PUT | Method::DELETE),
        ) => {
            let n = name(state, n)?;
            match m {
                Method::PUT => {
                    need(&n, A::ContentWrite)?;
                    Box::pin(manifests::put(state, &n, reference, &params, headers, body)).await
                }
                Method::DELETE => {
                    need(&n, A::ContentDelete)?;
                    Box::pin(manifests::delete(state, &n, reference)).await
                }
                _ => {
                    need(&n, A::ContentRead)?;
                    manifests::get(state, &n, reference, headers, head).await
                }
            }
        }
        (Route::Blob { name: n, digest }, m @ (Method::GET | Method::HEAD | Method::DELETE)) => {
            let n = name(state, n)?;
            let digest = Registry::digest(digest)?;
            if m == Method::DELETE {
                need(&n, A::ContentDelete)?;
                Box::pin(blobs::delete(state, &n, &digest)).await
            } else {
                need(&n, A::ContentRead)?;
                if !head && let Some(redirect) = crate::data::redirect(state, &n, &digest).await? {
                    return Ok(redirect);
                }
                blobs::get(state, &n, &digest, headers, head).await
            }
        }
        (Route::UploadStart { name: n }, Method::POST) => {
            let n = name(state, n)?;
            need(&n, A::ContentWrite)?;
            // A mount reads `from`: without that right it is a plain upload.
            let may_mount = params
                .get("from")
                .is_some_and(|from| caller.actions(state, from).contains(A::ContentRead));
            Box::pin(uploads::start(state, &n, &params, may_mount, body)).await
        }
        (
            Route::Upload { name: n, id },
            m @ (Method::PATCH | Method::PUT | Method::GET | Method::DELETE),
        ) => {
            let n = name(state, n)?;
            need(&n, A::ContentWrite)?;
            match m {
                Method::PATCH => Box::pin(uploads::patch(state, &n, id, headers, body)).await,
                Method::PUT => Box::pin(uploads::put(state, &n, id, &params, headers, body)).await,
                Method::GET => Box::pin(uploads::status(state, &n, id)).await,
                _ => Box::pin(uploads::cancel(state, &n, id)).await,
            }
        }
        (Route::Referrers { name: n, digest }, Method::GET) => {
            let n = name(state, n)?;
            let digest = Registry::digest(digest)?;
            need(&n, A::ContentRead)?;
            Box::pin(listing::referrers(state, &n, &digest, &params)).await
        }
        _ => Err(ApiError::method_not_allowed(method)),
    }
}

fn json_ok(body: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid response parts")
}
