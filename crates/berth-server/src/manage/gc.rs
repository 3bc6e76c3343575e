//! `/berth/v1/gc/runs`: garbage collections. A collection started here runs in the
//! background (it can take minutes on a large registry); the answer is its record, which
//! `GET` follows until `finished_at` is set.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use berth_api as api;
use berth_registry::GcRun;
use berth_registry::gc::GcStartError;
use http::StatusCode;

use super::{Admin, MaybeBody, time};
use crate::error::ApiError;
use crate::state::AppState;

fn view(run: GcRun) -> api::GcRunView {
    api::GcRunView {
        id: run.id,
        started_at: time(run.started_at),
        finished_at: run.finished_at.map(time),
        dry_run: run.dry_run,
        outcome: run.outcome,
        blobs_removed: run.blobs_removed,
        bytes_freed: run.bytes_freed,
        manifests_removed: run.manifests_removed,
        tags_removed: run.tags_removed,
        uploads_removed: run.uploads_removed,
    }
}

fn running(id: i64) -> ApiError {
    ApiError::management(
        StatusCode::CONFLICT,
        "CONFLICT",
        format!(
            "garbage collection {id} is running; follow it with `berth gc status`, or stop it with `berth gc stop`"
        ),
    )
}

/// `GET /berth/v1/gc/runs`: the last collections, newest first.
pub(crate) async fn list(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Vec<api::GcRunView>>, ApiError> {
    let runs = state.registry.gc().runs(20).await?;
    Ok(Json(runs.into_iter().map(view).collect()))
}

/// `GET /berth/v1/gc/runs/{id}`.
pub(crate) async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<api::GcRunView>, ApiError> {
    let runs = state.registry.gc().runs(50).await?;
    runs.into_iter()
        .find(|r| r.id == id)
        .map(|r| Json(view(r)))
        .ok_or_else(|| {
            ApiError::management(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("garbage collection {id} is not among the last 50"),
            )
        })
}

/// `POST /berth/v1/gc/runs`: starts a collection (one at a time); `202` with its record.
pub(crate) async fn start(
    _: Admin,
    State(state): State<AppState>,
    MaybeBody(request): MaybeBody<api::GcRunRequest>,
) -> Result<Response, ApiError> {
    let handle = match state.registry.gc().start(request.dry_run).await {
        Ok(handle) => handle,
        Err(GcStartError::Running(id)) => return Err(running(id)),
        Err(e @ GcStartError::RunningElsewhere) => {
            return Err(ApiError::management(
                StatusCode::CONFLICT,
                "CONFLICT",
                e.to_string(),
            ));
        }
        Err(GcStartError::Registry(e)) => return Err(e.into()),
    };
    let mut options = (*state.gc).clone();
    options.dry_run = request.dry_run;
    let (registry, run) = (
        std::sync::Arc::clone(&state.registry),
        std::sync::Arc::clone(&handle),
    );
    let metrics = std::sync::Arc::clone(&state.metrics);
    tokio::spawn(async move {
        let run = registry.gc().collect(&run, &options).await;
        if !run.dry_run {
            metrics.gc_finished(&run.outcome, run.blobs_removed, run.bytes_freed);
        }
    });
    Ok((StatusCode::ACCEPTED, Json(view(handle.progress()))).into_response())
}

/// `POST /berth/v1/gc/runs/{id}/stop`: stops the collection under way after the blob it is
/// on; what it removed stays removed.
pub(crate) async fn stop(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<api::GcRunView>, ApiError> {
    match state.registry.gc().current() {
        Some(current) if current.progress().id == id => {
            current.stop();
            Ok(Json(view(current.progress())))
        }
        _ => Err(ApiError::management(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!("garbage collection {id} is not running"),
        )),
    }
}
