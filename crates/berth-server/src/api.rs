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
use crate::handlers::{QueryParams, blobs, listing, manifests, uploads};
use crate::route::Route;
use crate::state::AppState;

/// The router of the distribution API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(entry))
        .route("/v2/", any(entry))
        .route("/v2/{*rest}", any(entry))
        .with_state(state)
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
    let params = QueryParams::parse(parts.uri.query());
    let headers = &parts.headers;
    let method = &parts.method;
    let head = method == Method::HEAD;

    match route {
        Route::Base => match *method {
            Method::GET | Method::HEAD => Ok(json_ok("{}")),
            _ => Err(ApiError::method_not_allowed(method)),
        },
        Route::Catalog => match *method {
            Method::GET => listing::catalog(state, &params).await,
            _ => Err(ApiError::method_not_allowed(method)),
        },
        Route::Tags { name: n } => {
            let n = name(state, n)?;
            match *method {
                Method::GET => listing::tags(state, &n, &params).await,
                _ => Err(ApiError::method_not_allowed(method)),
            }
        }
        Route::Manifest { name: n, reference } => {
            let n = name(state, n)?;
            match *method {
                Method::GET | Method::HEAD => {
                    manifests::get(state, &n, reference, headers, head).await
                }
                Method::PUT => manifests::put(state, &n, reference, &params, headers, body).await,
                Method::DELETE => manifests::delete(state, &n, reference).await,
                _ => Err(ApiError::method_not_allowed(method)),
            }
        }
        Route::Blob { name: n, digest } => {
            let n = name(state, n)?;
            let digest = Registry::digest(digest)?;
            match *method {
                Method::GET | Method::HEAD => blobs::get(state, &n, &digest, headers, head).await,
                Method::DELETE => blobs::delete(state, &n, &digest).await,
                _ => Err(ApiError::method_not_allowed(method)),
            }
        }
        Route::UploadStart { name: n } => {
            let n = name(state, n)?;
            match *method {
                Method::POST => uploads::start(state, &n, &params, body).await,
                _ => Err(ApiError::method_not_allowed(method)),
            }
        }
        Route::Upload { name: n, id } => {
            let n = name(state, n)?;
            match *method {
                Method::PATCH => uploads::patch(state, &n, id, headers, body).await,
                Method::PUT => uploads::put(state, &n, id, &params, headers, body).await,
                Method::GET => uploads::status(state, &n, id).await,
                Method::DELETE => uploads::cancel(state, &n, id).await,
                _ => Err(ApiError::method_not_allowed(method)),
            }
        }
        Route::Referrers { name: n, digest } => {
            let n = name(state, n)?;
            let digest = Registry::digest(digest)?;
            match *method {
                Method::GET => listing::referrers(state, &n, &digest, &params).await,
                _ => Err(ApiError::method_not_allowed(method)),
            }
        }
    }
}

fn json_ok(body: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid response parts")
}
