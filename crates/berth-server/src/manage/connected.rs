//! `/berth/v1/connected-registries/…`: connected registries as resources of the root.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use berth_auth::connected::{ConnectedRegistry, LogLevel, Mode, SyncSettings};
use berth_auth::hierarchy::{
    ConnectedRegistryUpdate, Leftovers, NewConnectedRegistry, connection_state,
};
use berth_auth::{IdentityError, Slot};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Admin, Body, IdentityAdmin, ScopeMapView, TokenView, time};
use crate::auth::realm_and_service;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize)]
pub(crate) struct ConnectedRegistryView {
    name: String,
    mode: Mode,
    parent: Option<String>,
    repositories: Vec<String>,
    sync_token: String,
    client_tokens: Vec<String>,
    sync: SyncSettings,
    log_level: LogLevel,
    notifications: Vec<String>,
    created_at: String,
    activation: &'static str,
    connection_state: berth_auth::hierarchy::ConnectionState,
    last_sync: Option<String>,
    status_details: Vec<StatusDetailView>,
    version: Option<String>,
    login_server: Option<String>,
}

#[derive(Serialize)]
struct StatusDetailView {
    code: String,
    description: String,
    /// When it started.
    at: String,
    /// When it ended; `null` while it lasts.
    resolved_at: Option<String>,
}

impl From<ConnectedRegistry> for ConnectedRegistryView {
    fn from(r: ConnectedRegistry) -> Self {
        let state = connection_state(&r, jiff::Timestamp::now().as_second());
        let status = r.status.clone().unwrap_or_default();
        ConnectedRegistryView {
            activation: if r.activation.is_some() {
                "Active"
            } else {
                "Inactive"
            },
            connection_state: state,
            last_sync: status.last_sync.map(time),
            status_details: status
                .details
                .into_iter()
                .map(|d| StatusDetailView {
                    code: d.code,
                    description: d.description,
                    at: time(d.at),
                    resolved_at: d.resolved_at.map(time),
                })
                .collect(),
            version: Some(status.version).filter(|v| !v.is_empty()),
            login_server: Some(status.login_server).filter(|v| !v.is_empty()),
            created_at: time(r.created_at),
            name: r.name,
            mode: r.mode,
            parent: r.parent,
            repositories: r.repositories,
            sync_token: r.sync_token,
            client_tokens: r.client_tokens,
            sync: r.sync,
            log_level: r.log_level,
            notifications: r.notifications,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    parent: Option<String>,
    #[serde(default)]
    no_children: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
    mode: Option<String>,
    parent: Option<String>,
    #[serde(default)]
    repositories: Vec<String>,
    sync_token: Option<String>,
    #[serde(default)]
    client_tokens: Vec<String>,
    sync_schedule: Option<String>,
    sync_window: Option<String>,
    sync_message_ttl: Option<String>,
    sync_bandwidth: Option<String>,
    sync_concurrency: Option<u32>,
    log_level: Option<String>,
    #[serde(default)]
    notifications: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBody {
    #[serde(default)]
    add_client_tokens: Vec<String>,
    #[serde(default)]
    remove_client_tokens: Vec<String>,
    sync_schedule: Option<String>,
    sync_window: Option<String>,
    sync_message_ttl: Option<String>,
    sync_bandwidth: Option<String>,
    sync_concurrency: Option<u32>,
    log_level: Option<String>,
    #[serde(default)]
    add_notifications: Vec<String>,
    #[serde(default)]
    remove_notifications: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct DeleteQuery {
    #[serde(default)]
    cleanup: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsBody {
    parent_protocol: Option<String>,
    generate_password: Option<u8>,
    /// The parent's address as the instance reaches it, `host[:port]`, instead of the one
    /// Berth knows (the root's, or the parent instance's reported login server).
    parent_gateway_endpoint: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct SettingsView {
    connection_string: String,
    sync_token: String,
    password: Option<super::NewPasswordView>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PermissionsBody {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Serialize)]
pub(crate) struct PermissionsView {
    repositories: Vec<String>,
    sync_scope_map: ScopeMapView,
}

pub(crate) async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ConnectedRegistryView>>, ApiError> {
    let registries = state
        .identity
        .hierarchy()
        .list_connected_registries(q.parent.as_deref(), q.no_children)
        .await?;
    Ok(Json(registries.into_iter().map(Into::into).collect()))
}

pub(crate) async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConnectedRegistryView>, ApiError> {
    Ok(Json(
        state
            .identity
            .hierarchy()
            .connected_registry(&name)
            .await?
            .into(),
    ))
}

pub(crate) async fn create(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Body(body): Body<CreateBody>,
) -> Result<Response, ApiError> {
    let defaults = SyncSettings::default();
    let new = NewConnectedRegistry {
        name: body.name,
        mode: body
            .mode
            .as_deref()
            .map(Mode::parse)
            .transpose()?
            .unwrap_or_default(),
        parent: body.parent,
        repositories: body.repositories,
        sync_token: body.sync_token,
        client_tokens: body.client_tokens,
        sync: SyncSettings {
            schedule: body.sync_schedule.unwrap_or(defaults.schedule),
            window: body.sync_window,
            message_ttl: body.sync_message_ttl.unwrap_or(defaults.message_ttl),
            bandwidth: body
                .sync_bandwidth
                .as_deref()
                .map(berth_auth::connected::parse_bandwidth)
                .transpose()?,
            concurrency: body.sync_concurrency.unwrap_or(defaults.concurrency),
        },
        log_level: body
            .log_level
            .as_deref()
            .map(LogLevel::parse)
            .transpose()?
            .unwrap_or_default(),
        notifications: body.notifications,
    };
    let created = state
        .identity
        .hierarchy()
        .create_connected_registry(new)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ConnectedRegistryView::from(created)),
    )
        .into_response())
}

pub(crate) async fn update(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<UpdateBody>,
) -> Result<Json<ConnectedRegistryView>, ApiError> {
    let update = ConnectedRegistryUpdate {
        add_client_tokens: body.add_client_tokens,
        remove_client_tokens: body.remove_client_tokens,
        sync_schedule: body.sync_schedule,
        sync_window: body.sync_window,
        sync_message_ttl: body.sync_message_ttl,
        sync_bandwidth: body.sync_bandwidth,
        sync_concurrency: body.sync_concurrency,
        log_level: body.log_level.as_deref().map(LogLevel::parse).transpose()?,
        add_notifications: body.add_notifications,
        remove_notifications: body.remove_notifications,
    };
    state
        .identity
        .hierarchy()
        .update_connected_registry(&name, update)
        .await?;
    // Read back with the instance's live status, so the answer is what `show` gives.
    Ok(Json(
        state
            .identity
            .hierarchy()
            .connected_registry(&name)
            .await?
            .into(),
    ))
}

pub(crate) async fn delete(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Leftovers>, ApiError> {
    Ok(Json(
        state
            .identity
            .hierarchy()
            .delete_connected_registry(&name, q.cleanup)
            .await?,
    ))
}

pub(crate) async fn deactivate(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConnectedRegistryView>, ApiError> {
    Ok(Json(
        state
            .identity
            .hierarchy()
            .deactivate_connected_registry(&name)
            .await?
            .into(),
    ))
}

pub(crate) async fn client_tokens(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let registry = state.identity.hierarchy().connected_registry(&name).await?;
    let tokens = registry
        .client_tokens
        .iter()
        .filter_map(|t| state.identity.management().token(t).ok())
        .map(Into::into)
        .collect();
    Ok(Json(tokens))
}

pub(crate) async fn settings(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    Body(body): Body<SettingsBody>,
) -> Result<Json<SettingsView>, ApiError> {
    let protocol = body.parent_protocol.unwrap_or_else(|| "https".into());
    let slot = match body.generate_password {
        None => None,
        Some(n) => Some(Slot::from_number(n).ok_or_else(|| {
            ApiError::from(IdentityError::Invalid(format!(
                "generate_password `{n}` is invalid; use 1 or 2"
            )))
        })?),
    };
    // The root's address as clients reach it: the configured public URL, or this request's Host.
    let (_, root_endpoint) = realm_and_service(&state, &parts);
    let data_endpoint = state
        .network
        .data
        .as_ref()
        .filter(|_| {
            state
                .identity
                .management()
                .network()
                .settings
                .data_endpoint_enabled
        })
        .map(|data| data.host());
    let (connection_string, password) = state
        .identity
        .hierarchy()
        .connection_string(
            &name,
            &protocol,
            body.parent_gateway_endpoint.as_deref(),
            &root_endpoint,
            data_endpoint,
            slot,
        )
        .await?;
    let sync_token = state
        .identity
        .hierarchy()
        .connected_registry(&name)
        .await?
        .sync_token;
    Ok(Json(SettingsView {
        connection_string,
        sync_token,
        password: password.map(Into::into),
    }))
}

pub(crate) async fn permissions(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PermissionsView>, ApiError> {
    let registry = state.identity.hierarchy().connected_registry(&name).await?;
    let token = state.identity.management().token(&registry.sync_token)?;
    let map = state.identity.management().scope_map(&token.scope_map)?;
    Ok(Json(PermissionsView {
        repositories: registry.repositories,
        sync_scope_map: map.into(),
    }))
}

pub(crate) async fn update_permissions(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<PermissionsBody>,
) -> Result<Json<PermissionsView>, ApiError> {
    state
        .identity
        .hierarchy()
        .update_connected_permissions(&name, &body.add, &body.remove)
        .await?;
    permissions(Admin, State(state), Path(name)).await
}
