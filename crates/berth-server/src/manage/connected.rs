//! `/berth/v1/connected-registries/…`: connected registries as resources of the root.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use berth_api as api;
use berth_auth::connected::{
    GcChange, GcSettings, LogLevel, Mode, SettingsChange, SyncChange, SyncSettings,
};
use berth_auth::error::Choice;
use berth_auth::hierarchy::{ConnectedRegistryUpdate, NewConnectedRegistry};
use berth_auth::{IdentityError, Slot};
use http::StatusCode;

use super::{Admin, Body, IdentityAdmin, wire};
use crate::auth::realm_and_service;
use crate::error::ApiError;
use crate::extract::Query;
use crate::state::AppState;

pub(crate) async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<api::ConnectedRegistryListQuery>,
) -> Result<Json<Vec<api::ConnectedRegistryView>>, ApiError> {
    let registries = state
        .identity
        .hierarchy()
        .list_connected_registries(q.parent.as_deref(), q.no_children)
        .await?;
    Ok(Json(
        registries
            .into_iter()
            .map(wire::connected_registry_view)
            .collect(),
    ))
}

pub(crate) async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::ConnectedRegistryView>, ApiError> {
    Ok(Json(wire::connected_registry_view(
        state.identity.hierarchy().connected_registry(&name).await?,
    )))
}

pub(crate) async fn create(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Body(body): Body<api::ConnectedRegistryCreate>,
) -> Result<Response, ApiError> {
    let settings = settings_change(&body.settings)?;
    let mode = body
        .mode
        .as_deref()
        .map(Mode::parse)
        .transpose()?
        .unwrap_or_default();
    let mut gc = GcSettings::default();
    gc.apply(&settings.gc);
    let sync = SyncSettings::from_change(&settings.sync)?;
    let new = NewConnectedRegistry {
        gc,
        name: body.name,
        mode,
        parent: body.parent,
        repositories: body.repositories,
        sync_token: body.sync_token,
        client_tokens: body.client_tokens,
        sync,
        log_level: settings.log_level.unwrap_or_default(),
        notifications: body.notifications,
    };
    let created = state
        .identity
        .hierarchy()
        .create_connected_registry(new)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::connected_registry_view(created)),
    )
        .into_response())
}

pub(crate) async fn update(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<api::ConnectedRegistryPatch>,
) -> Result<Json<api::ConnectedRegistryView>, ApiError> {
    let update = ConnectedRegistryUpdate {
        settings: settings_change(&body.settings)?,
        add_client_tokens: body.add_client_tokens,
        remove_client_tokens: body.remove_client_tokens,
        add_notifications: body.add_notifications,
        remove_notifications: body.remove_notifications,
    };
    state
        .identity
        .hierarchy()
        .update_connected_registry(&name, update)
        .await?;
    // Read back with the instance's live status, so the answer is what `show` gives.
    Ok(Json(wire::connected_registry_view(
        state.identity.hierarchy().connected_registry(&name).await?,
    )))
}

/// Parses a request's instance settings, each value once, before anything is read or
/// written; how they go together with the registry's current settings is checked when they
/// are applied.
fn settings_change(settings: &api::InstanceSettings) -> Result<SettingsChange, IdentityError> {
    Ok(SettingsChange {
        gc: GcChange::parse(settings.gc_enabled, settings.gc_schedule.as_deref())?,
        sync: SyncChange::parse(
            settings.sync_schedule.as_deref(),
            settings.sync_window.as_deref(),
            settings.sync_message_ttl.as_deref(),
            settings.sync_bandwidth.as_deref(),
            settings.sync_concurrency,
        )?,
        log_level: settings
            .log_level
            .as_deref()
            .map(LogLevel::parse)
            .transpose()?,
    })
}

pub(crate) async fn delete(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<api::ConnectedRegistryDeleteQuery>,
) -> Result<Json<api::Leftovers>, ApiError> {
    Ok(Json(wire::leftovers(
        state
            .identity
            .hierarchy()
            .delete_connected_registry(&name, q.cleanup)
            .await?,
    )))
}

pub(crate) async fn deactivate(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::ConnectedRegistryView>, ApiError> {
    Ok(Json(wire::connected_registry_view(
        state
            .identity
            .hierarchy()
            .instances()
            .deactivate(&name)
            .await?,
    )))
}

pub(crate) async fn client_tokens(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<api::TokenView>>, ApiError> {
    let registry = state.identity.hierarchy().connected_registry(&name).await?;
    let tokens = registry
        .client_tokens
        .iter()
        .filter_map(|t| state.identity.management().token(t).ok())
        .map(wire::token_view)
        .collect();
    Ok(Json(tokens))
}

pub(crate) async fn settings(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    Body(body): Body<api::SettingsRequest>,
) -> Result<Json<api::SettingsView>, ApiError> {
    let protocol = body.parent_protocol.unwrap_or_else(|| "https".into());
    let slot = match body.generate_password {
        None => None,
        Some(n) => Some(Slot::from_number(n).ok_or_else(|| {
            ApiError::from(IdentityError::UnknownChoice {
                setting: Choice::PasswordSlot,
                value: n.to_string(),
            })
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
    Ok(Json(api::SettingsView {
        connection_string,
        sync_token,
        password: password.map(wire::new_password),
    }))
}

pub(crate) async fn permissions(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::PermissionsView>, ApiError> {
    let registry = state.identity.hierarchy().connected_registry(&name).await?;
    let token = state.identity.management().token(&registry.sync_token)?;
    let map = state.identity.management().scope_map(&token.scope_map)?;
    Ok(Json(api::PermissionsView {
        repositories: registry.repositories,
        sync_scope_map: wire::scope_map_view(map),
    }))
}

pub(crate) async fn update_permissions(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<api::PermissionsPatch>,
) -> Result<Json<api::PermissionsView>, ApiError> {
    state
        .identity
        .hierarchy()
        .update_connected_permissions(&name, &body.add, &body.remove)
        .await?;
    permissions(Admin, State(state), Path(name)).await
}
