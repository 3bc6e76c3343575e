//! Listings: `GET /v2/<name>/tags/list`, `GET /v2/_catalog` (both with `n`, `last` and
//! `Link` pagination) and `GET /v2/<name>/referrers/<digest>`.

use axum::body::Body;
use axum::response::Response;
use berth_oci::{Digest, ErrorCode, RepositoryName, media_type};
use http::{StatusCode, header};
use serde_json::json;

use berth_auth::RepositoryAction;

use super::QueryParams;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The page size asked for with `n`; no `n` means everything.
fn page_size(params: &QueryParams) -> Result<u32, ApiError> {
    match params.get("n") {
        None => Ok(u32::MAX - 1),
        Some(n) => n.parse::<u32>().map(|n| n.min(u32::MAX - 1)).map_err(|_| {
            ApiError::bad_request(
                ErrorCode::Unsupported,
                format!("`n={n}` is not a page size; use a non-negative integer"),
            )
        }),
    }
}

/// Builds a JSON page, with a `Link` to the next one when `items` held more than `n`.
fn page(
    path: &str,
    key: &str,
    mut items: Vec<String>,
    n: u32,
    extra: serde_json::Value,
) -> Response {
    let more = items.len() > n as usize;
    items.truncate(n as usize);
    let mut body = extra;
    body[key] = json!(items);
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json");
    if more && let Some(last) = items.last() {
        let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
        builder = builder.header(
            header::LINK,
            format!("<{path}?n={n}&last={last}>; rel=\"next\""),
        );
    }
    builder
        .body(Body::from(body.to_string()))
        .expect("valid response parts")
}

/// `GET /v2/<name>/tags/list`.
pub async fn tags(
    state: &AppState,
    name: &RepositoryName,
    params: &QueryParams,
) -> Result<Response, ApiError> {
    let n = page_size(params)?;
    let tags = if n == 0 {
        state.registry.tags(name, None, 0).await?
    } else {
        state.registry.tags(name, params.get("last"), n + 1).await?
    };
    Ok(page(
        &format!("/v2/{name}/tags/list"),
        "tags",
        tags,
        n,
        json!({ "name": name.as_str() }),
    ))
}

/// `GET /v2/_catalog`: only the repositories the caller may pull from.
pub async fn catalog(
    state: &AppState,
    caller: &Caller,
    params: &QueryParams,
) -> Result<Response, ApiError> {
    let n = page_size(params)?;
    let mut repositories = Vec::new();
    let mut last = params.get("last").map(str::to_owned);
    // Fetch pages until n + 1 readable names are found (one more tells whether to link on).
    while n > 0 && repositories.len() <= n as usize {
        let want = (n as usize + 1 - repositories.len()).clamp(100, 1000) as u32;
        let page = state.registry.catalog(last.as_deref(), want).await?;
        let exhausted = page.len() < want as usize;
        last = page.last().cloned();
        repositories.extend(page.into_iter().filter(|r| {
            caller
                .actions(state, r)
                .contains(RepositoryAction::ContentRead)
        }));
        if exhausted {
            break;
        }
    }
    Ok(page(
        "/v2/_catalog",
        "repositories",
        repositories,
        n,
        json!({}),
    ))
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=]`: an OCI index of the manifests whose
/// `subject` is `digest`; empty (not 404) when there are none.
pub async fn referrers(
    state: &AppState,
    name: &RepositoryName,
    digest: &Digest,
    params: &QueryParams,
) -> Result<Response, ApiError> {
    let artifact_type = params.get("artifactType");
    let referrers = state
        .registry
        .referrers(name, digest, artifact_type)
        .await?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": referrers,
    });
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type::OCI_INDEX);
    if artifact_type.is_some() {
        builder = builder.header("OCI-Filters-Applied", "artifactType");
    }
    Ok(builder
        .body(Body::from(body.to_string()))
        .expect("valid response parts"))
}
