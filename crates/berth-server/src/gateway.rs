//! The gateway: the parent side of the link with connected registries.
//!
//! Routes, under `/berth/gateway/v1/<connected registry>/`:
//! - `POST activate` (`config/read`): become the active instance; answers the configuration
//!   document, or `409 ALREADY_ACTIVATED`;
//! - `GET config?since=<etag>&wait=<seconds>&instance=<id>` (`config/read`): a long poll that
//!   answers the configuration document as soon as it differs from `since`, or `304` after
//!   `wait`; `409 INSTANCE_DEACTIVATED` (or `INSTANCE_NOT_ACTIVE`) as soon as instance `id` is
//!   no longer the active one;
//! - `POST status` (`config/write`): the instance's status report (refused the same way);
//! - `POST events` (`config/write`): events the registry raised from its notification
//!   patterns (`EventsReport`); the root stores them for its webhooks, a relay passes them
//!   up and answers once its parent took them;
//!
//! A connected registry that does not exist (deleted) is `404 CONNECTED_REGISTRY_UNKNOWN`,
//! which its instance takes as final.
//! - `GET messages?after=<seq>&wait=<seconds>` (`message/read`): the content changes of this
//!   registry's change log after `seq`, limited to what the caller's sync token may pull; a
//!   long poll when there are none yet. Every registry (root or connected) serves its own log,
//!   so each level of the tree syncs content from its direct parent.
//!
//! Callers authenticate with their sync token; the gateway actions of its scope map say which
//! connected registries it may act for (its own, and for ancestors, their descendants').
//! Where the answers come from is a [`Gateway`] (defined with the domain, in `berth-auth`):
//! on the root, `RootGateway` reads the identities; on a connected registry, a relay serves
//! its children from the document it received and forwards activations and reports to its
//! own parent. This module is only their HTTP face.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_auth::gateway::{
    ActivateRequest, ConfigDocument, EventsReport, Gateway, GatewayError, StatusReport,
};
use berth_auth::{GatewayAction, IdentityError};
use http::{StatusCode, header};
use serde::Deserialize;

use crate::auth::authenticate;
use crate::error::ApiError;
use crate::extract::{Body, Query};
use crate::state::AppState;

/// The longest a config long poll may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The gateway routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/berth/gateway/v1/{name}/activate", post(activate))
        .route("/berth/gateway/v1/{name}/config", get(config))
        .route("/berth/gateway/v1/{name}/status", post(status))
        .route("/berth/gateway/v1/{name}/events", post(events))
        .route("/berth/gateway/v1/{name}/messages", get(messages))
}

/// Checks that the caller's sync token may perform `action` for connected registry `name`.
async fn authorize(
    state: &AppState,
    parts: &Parts,
    name: &str,
    action: GatewayAction,
) -> Result<(Arc<dyn Gateway>, crate::auth::Caller), ApiError> {
    let caller = authenticate(state, parts).await?;
    crate::observe::CallerNote::mark(parts, &caller.principal);
    caller.require_login(None)?;
    if !state
        .identity
        .checks()
        .gateway_actions(&caller.principal, name)
        .contains(&action)
    {
        return Err(ApiError::management(
            StatusCode::FORBIDDEN,
            "DENIED",
            format!(
                "`{}` may not use the gateway of connected registry `{name}` ({action})",
                caller.principal.display_name()
            ),
        ));
    }
    Ok((Arc::clone(&state.gateway), caller))
}

fn gateway_error(e: GatewayError) -> ApiError {
    match e {
        // Its own code, so an instance can tell "my registry was deleted" (final) from any
        // other 404 (a proxy's, say).
        GatewayError::Identity(
            e @ IdentityError::NotFound {
                kind: "connected registry",
                ..
            },
        ) => ApiError::management(
            StatusCode::NOT_FOUND,
            "CONNECTED_REGISTRY_UNKNOWN",
            e.to_string(),
        ),
        GatewayError::Identity(e) => e.into(),
        GatewayError::Unavailable(message) => ApiError::management(
            StatusCode::SERVICE_UNAVAILABLE,
            "PARENT_UNREACHABLE",
            format!("the parent registry is unreachable: {message}"),
        ),
    }
}

fn document_response(document: &ConfigDocument) -> Response {
    let etag = document.etag();
    ([(header::ETAG, etag)], Json(document)).into_response()
}

async fn activate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    Body(request): Body<ActivateRequest>,
) -> Result<Response, ApiError> {
    let (gateway, _) = authorize(&state, &parts, &name, GatewayAction::ConfigRead).await?;
    let document = gateway
        .activate(&name, request)
        .await
        .map_err(gateway_error)?;
    Ok(document_response(&document))
}

#[derive(Deserialize)]
struct ConfigQuery {
    since: Option<String>,
    wait: Option<u64>,
    instance: Option<String>,
}

async fn config(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ConfigQuery>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let (gateway, _) = authorize(&state, &parts, &name, GatewayAction::ConfigRead).await?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    // A long poll ends early when the registry shuts down, so shutdown never waits for it.
    let mut stopping = state.stopping.clone();
    let answer = tokio::select! {
        answer = gateway.config(&name, q.since.as_deref(), q.instance.as_deref(), wait) => answer.map_err(gateway_error)?,
        () = stopped(&mut stopping) => None,
    };
    match answer {
        Some(document) => Ok(document_response(&document)),
        None => Ok(StatusCode::NOT_MODIFIED.into_response()),
    }
}

async fn status(
    State(state): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    Body(report): Body<StatusReport>,
) -> Result<StatusCode, ApiError> {
    let (gateway, _) = authorize(&state, &parts, &name, GatewayAction::ConfigWrite).await?;
    gateway.status(&name, report).await.map_err(gateway_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Events in one `events` call at most.
const EVENTS_PER_CALL: usize = 1000;

async fn events(
    State(state): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    Body(report): Body<EventsReport>,
) -> Result<StatusCode, ApiError> {
    let (gateway, _) = authorize(&state, &parts, &name, GatewayAction::ConfigWrite).await?;
    if report.events.len() > EVENTS_PER_CALL {
        return Err(ApiError::management(
            StatusCode::PAYLOAD_TOO_LARGE,
            "INVALID",
            format!("at most {EVENTS_PER_CALL} events per call"),
        ));
    }
    gateway.events(&name, report).await.map_err(gateway_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes returned by one `messages` call at most.
const MESSAGES_PER_CALL: u32 = 500;

#[derive(Deserialize)]
struct MessagesQuery {
    after: Option<i64>,
    wait: Option<u64>,
}

async fn messages(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<MessagesQuery>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let (_, caller) = authorize(&state, &parts, &name, GatewayAction::MessageRead).await?;
    let after = q.after.unwrap_or(0).max(0);
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changed = state.registry.subscribe_changes();
    let (oldest, latest) = state.registry.change_bounds().await?;
    if oldest > after.saturating_add(1) {
        return Ok(Json(berth_registry::ChangePage {
            events: Vec::new(),
            last: latest,
            expired: true,
        })
        .into_response());
    }
    let mut lag_recorded = false;
    loop {
        changed.mark_unchanged();
        let changes = state.registry.changes(after, MESSAGES_PER_CALL).await?;
        if !std::mem::replace(&mut lag_recorded, true) {
            // The child asks from where it stands: what lies after that is its lag (counted
            // over the whole log, changes it may not see included), and this poll says it
            // applied everything before.
            let link = format!("child/{name}");
            let now = berth_oci::time::unix_now();
            let oldest_at = changes.first().map_or(now, |c| c.at);
            let metrics = &state.metrics;
            metrics.sync_lag(
                &link,
                u64::try_from(latest - after).unwrap_or(0),
                u64::try_from(now - oldest_at).unwrap_or(0),
            );
            metrics.sync_succeeded(&link, now);
        }
        if let Some(last) = changes.last().map(|c| c.seq) {
            let events = changes
                .into_iter()
                .filter(|c| {
                    caller
                        .actions(&state, c.repository.as_str())
                        .contains(berth_auth::RepositoryAction::ContentRead)
                })
                .collect();
            return Ok(Json(berth_registry::ChangePage {
                events,
                last,
                expired: false,
            })
            .into_response());
        }
        let mut stopping = state.stopping.clone();
        let woken = tokio::select! {
            changed = tokio::time::timeout_at(deadline, changed.changed()) => changed.is_ok(),
            // A long poll ends early when the registry shuts down.
            () = stopped(&mut stopping) => false,
        };
        if !woken {
            return Ok(Json(berth_registry::ChangePage {
                events: Vec::new(),
                last: after,
                expired: false,
            })
            .into_response());
        }
    }
}

/// Completes when the registry starts shutting down (never, if nothing can tell it to).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
