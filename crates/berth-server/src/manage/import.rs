//! `/berth/v1/imports`: the registry copies an image from another registry, as a job
//! (`berth_import::Imports`). `POST` checks the request and answers `202 Accepted` with the
//! job at once (an import of a large image takes minutes: longer than a request should be
//! held open); `GET /berth/v1/imports/{id}` follows it; `POST …/cancel` stops it.
//!
//! Refused, like every push, on a ReadOnly connected registry (`403 DENIED`, naming the
//! mode). What an import stores is a local push: on a ReadWrite connected registry it goes
//! up to the parent like any other.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_api as api;
use berth_import::{Credentials, ImportError, ImportRequest, JobState, JobView};
use http::{StatusCode, header};

use super::{Admin, Body, time};
use crate::error::ApiError;
use crate::state::AppState;

/// The import routes (the last three of [`super::ROUTES`]).
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/berth/v1/imports", get(list).post(start))
        .route("/berth/v1/imports/{id}", get(show))
        .route("/berth/v1/imports/{id}/cancel", post(cancel))
}

async fn start(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body<api::ImportCreate>,
) -> Result<Response, ApiError> {
    let read_only = state
        .read_only
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(why) = read_only {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            berth_oci::ErrorCode::Denied,
            why,
        ));
    }
    let credentials = match (body.username, body.password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(ApiError::management(
                StatusCode::BAD_REQUEST,
                "INVALID",
                "give `username` and `password` together, or neither for anonymous access",
            ));
        }
    };
    let request = ImportRequest {
        source: body.source,
        images: body.images,
        credentials,
        include_referrers: body.include_referrers,
        force: body.force,
        insecure: body.insecure,
        ca_certificates: body.ca_certificates,
    };
    let job = state.imports.start(request).map_err(refusal)?;
    let location = format!("/berth/v1/imports/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view(job)),
    )
        .into_response())
}

async fn list(_: Admin, State(state): State<AppState>) -> Json<Vec<api::ImportView>> {
    Json(state.imports.list().into_iter().map(view).collect())
}

async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api::ImportView>, ApiError> {
    state
        .imports
        .get(&id)
        .map(|job| Json(view(job)))
        .ok_or_else(|| unknown(&id))
}

async fn cancel(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<api::ImportView>, ApiError> {
    match state.imports.cancel(&id).await {
        Some(Ok(job)) => Ok(Json(view(job))),
        Some(Err(e)) => Err(refusal(e)),
        None => Err(unknown(&id)),
    }
}

fn unknown(id: &str) -> ApiError {
    ApiError::management(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!(
            "import `{id}` is not known: finished imports are kept for a day, and none across a restart of the registry"
        ),
    )
}

/// A request the imports refused before starting a job.
fn refusal(e: ImportError) -> ApiError {
    let message = e.message();
    match e {
        ImportError::Invalid(_) => {
            ApiError::management(StatusCode::BAD_REQUEST, "INVALID", message)
        }
        ImportError::Conflict(_) => ApiError::management(StatusCode::CONFLICT, "CONFLICT", message),
        ImportError::Busy(_) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            berth_oci::ErrorCode::TooManyRequests,
            message,
        )
        .with_header(header::RETRY_AFTER, "30"),
        ImportError::Local(e) => e.into(),
        // The source is the job's business; a request is not refused for it.
        other => ApiError::management(StatusCode::BAD_GATEWAY, other.code(), message),
    }
}

/// The wire form of a job.
fn view(job: JobView) -> api::ImportView {
    let state = match job.state {
        JobState::Queued => api::ImportState::Queued,
        JobState::Running => api::ImportState::Running,
        JobState::Succeeded => api::ImportState::Succeeded,
        JobState::Failed => api::ImportState::Failed,
        JobState::Cancelled => api::ImportState::Cancelled,
    };
    let p = job.progress;
    api::ImportView {
        id: job.id,
        state,
        source: job.source,
        repository: job.repository,
        tags: job.tags,
        include_referrers: job.include_referrers,
        force: job.force,
        digest: job.resolved.as_ref().map(|r| r.digest.to_string()),
        media_type: job.resolved.map(|r| r.media_type),
        progress: api::ImportProgress {
            manifests: p.manifests,
            manifests_done: p.manifests_done,
            referrers: p.referrers,
            blobs: p.blobs,
            blobs_done: p.blobs_done,
            blobs_reused: p.blobs_reused,
            bytes: p.bytes,
            bytes_done: p.bytes_done,
        },
        created_at: time(job.created_at),
        started_at: job.started_at.map(time),
        finished_at: job.finished_at.map(time),
        error: job.error.map(|e| api::ErrorItem {
            code: e.code,
            message: e.message,
            detail: e.detail,
        }),
    }
}
