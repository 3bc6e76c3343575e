//! `/berth/v1/webhooks`: webhooks (`berth webhook …`), over `AppState.webhooks`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_api as api;
use berth_auth::webhook::{Delivery, DeliveryStatus, Webhook, WebhookAction, WebhookStatus};
use berth_events::{NewWebhook, WebhookUpdate};
use http::StatusCode;

use super::{Admin, Body, time};
use crate::error::ApiError;
use crate::extract::Query;
use crate::state::AppState;

/// The webhook routes.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/berth/v1/webhooks", get(list).post(create))
        .route(
            "/berth/v1/webhooks/{name}",
            get(show).patch(update).delete(delete),
        )
        .route("/berth/v1/webhooks/{name}/ping", post(ping))
        .route("/berth/v1/webhooks/{name}/events", get(events))
}

/// The wire view of a webhook; its secret only when `with_secret` (the answer to its
/// creation), its headers by name only.
pub(super) fn view(webhook: Webhook, with_secret: bool) -> api::WebhookView {
    api::WebhookView {
        name: webhook.name,
        uri: webhook.uri,
        actions: webhook
            .actions
            .into_iter()
            .map(|a| match a {
                WebhookAction::Push => api::WebhookAction::Push,
                WebhookAction::Delete => api::WebhookAction::Delete,
            })
            .collect(),
        scope: webhook.scope,
        headers: webhook.headers.into_keys().collect(),
        status: match webhook.status {
            WebhookStatus::Enabled => api::WebhookStatus::Enabled,
            WebhookStatus::Disabled => api::WebhookStatus::Disabled,
        },
        created_at: time(webhook.created_at),
        secret: with_secret.then_some(webhook.secret),
    }
}

fn event_view(delivery: Delivery) -> api::WebhookEventView {
    api::WebhookEventView {
        id: delivery.id,
        action: delivery.action,
        repository: delivery.repository,
        tag: delivery.tag,
        digest: delivery.digest,
        source: delivery.source,
        status: match delivery.status {
            DeliveryStatus::Succeeded => api::DeliveryStatus::Succeeded,
            DeliveryStatus::Failed => api::DeliveryStatus::Failed,
            DeliveryStatus::Retrying => api::DeliveryStatus::Retrying,
        },
        response_code: delivery.response_code,
        error: delivery.error,
        attempts: delivery.attempts,
        at: time(delivery.at),
    }
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Vec<api::WebhookView>>, ApiError> {
    let webhooks = state.webhooks.list().await?;
    Ok(Json(webhooks.into_iter().map(|w| view(w, false)).collect()))
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body<api::WebhookCreate>,
) -> Result<Response, ApiError> {
    let webhook = state
        .webhooks
        .create(NewWebhook {
            name: body.name,
            uri: body.uri,
            actions: body.actions,
            scope: body.scope,
            headers: body.headers,
            status: body.status,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view(webhook, true))).into_response())
}

async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::WebhookView>, ApiError> {
    Ok(Json(view(state.webhooks.show(&name).await?, false)))
}

async fn update(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<api::WebhookPatch>,
) -> Result<Json<api::WebhookView>, ApiError> {
    let webhook = state
        .webhooks
        .update(
            &name,
            WebhookUpdate {
                uri: body.uri,
                actions: body.actions,
                scope: body.scope,
                headers: body.headers,
                status: body.status,
            },
        )
        .await?;
    Ok(Json(view(webhook, false)))
}

async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.webhooks.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn ping(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::WebhookEventView>, ApiError> {
    Ok(Json(event_view(state.webhooks.ping(&name).await?)))
}

async fn events(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<api::WebhookEventsQuery>,
) -> Result<Json<Vec<api::WebhookEventView>>, ApiError> {
    let limit = super::listing_limit(query.limit)?;
    let deliveries = state.webhooks.events(&name, limit).await?;
    Ok(Json(deliveries.into_iter().map(event_view).collect()))
}
