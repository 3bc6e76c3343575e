//! Management of network access: IP rules, private endpoint connections, and the list of
//! endpoints. (The public switch, default action and data endpoint switch are registry
//! settings, changed through `PATCH /berth/v1/registry`.)

use axum::Json;
use axum::extract::{Path, State};
use berth_api as api;
use berth_auth::IdentityError;
use berth_auth::network::{ConnectionState, NetworkSettings, PrivateEndpointConnection};
use berth_oci::time::unix_now;
use http::StatusCode;

use super::{Admin, Body, MaybeBody, time, wire};
use crate::error::ApiError;
use crate::network::ListenerInfo;
use crate::state::AppState;

// ----- IP rules -----

pub(super) fn rules_view(settings: &NetworkSettings) -> api::NetworkRulesView {
    api::NetworkRulesView {
        public_network_enabled: settings.public_network_enabled,
        default_action: wire::default_action(settings.default_action),
        ip_rules: settings.ip_rules.clone(),
    }
}

pub(crate) async fn list_rules(
    _: Admin,
    State(state): State<AppState>,
) -> Json<api::NetworkRulesView> {
    Json(rules_view(&state.identity.management().network().settings))
}

pub(crate) async fn add_rule(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body<api::IpRuleBody>,
) -> Result<Json<api::NetworkRulesView>, ApiError> {
    let settings = state
        .identity
        .management()
        .update_network(|s| s.add_rule(&body.ip_address).map(drop))
        .await?;
    Ok(Json(rules_view(&settings)))
}

pub(crate) async fn remove_rule(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body<api::IpRuleBody>,
) -> Result<Json<api::NetworkRulesView>, ApiError> {
    let settings = state
        .identity
        .management()
        .update_network(|s| s.remove_rule(&body.ip_address))
        .await?;
    Ok(Json(rules_view(&settings)))
}

// ----- private endpoint connections -----

fn connection_view(
    listener: Option<&ListenerInfo>,
    record: Option<&PrivateEndpointConnection>,
    name: &str,
) -> api::ConnectionView {
    // A connection whose listener is gone from configuration no longer connects anything.
    let state = match (listener, record) {
        (None, _) => ConnectionState::Disconnected,
        (Some(_), Some(r)) => r.state,
        (Some(_), None) => ConnectionState::Pending,
    };
    api::ConnectionView {
        name: name.to_owned(),
        state: wire::endpoint_state(state),
        description: record
            .map(|r| r.description.clone())
            .filter(|d| !d.is_empty())
            .or_else(|| listener.map(|l| l.description.clone()))
            .unwrap_or_default(),
        configured: listener.is_some(),
        address: listener.map(|l| l.address.to_string()),
        url: listener.map(ListenerInfo::url),
        updated_at: record.map(|r| time(r.updated_at)),
    }
}

fn connections(state: &AppState) -> Vec<api::ConnectionView> {
    let policy = state.identity.management().network();
    let records = &policy.settings.private_endpoints;
    let listeners = &state.network.private_endpoints;
    let mut views: Vec<api::ConnectionView> = listeners
        .iter()
        .map(|l| connection_view(Some(l), records.get(&l.name), &l.name))
        .collect();
    views.extend(
        records
            .values()
            .filter(|r| !listeners.iter().any(|l| l.name == r.name))
            .map(|r| connection_view(None, Some(r), &r.name)),
    );
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

fn connection(state: &AppState, name: &str) -> Result<api::ConnectionView, ApiError> {
    connections(state)
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            IdentityError::NotFound {
                kind: "private endpoint connection",
                name: name.to_owned(),
            }
            .into()
        })
}

pub(crate) async fn list_connections(
    _: Admin,
    State(state): State<AppState>,
) -> Json<Vec<api::ConnectionView>> {
    Json(connections(&state))
}

pub(crate) async fn show_connection(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::ConnectionView>, ApiError> {
    Ok(Json(connection(&state, &name)?))
}

async fn decide(
    state: &AppState,
    name: &str,
    to: ConnectionState,
    description: Option<String>,
) -> Result<Json<api::ConnectionView>, ApiError> {
    let current = connection(state, name)?;
    if !current.configured {
        return Err(ApiError::management(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!(
                "private endpoint `{name}` has no listener in this registry's configuration; add it under [[private_endpoints]] and restart, or delete the connection"
            ),
        ));
    }
    state
        .identity
        .management()
        .update_network(|s| {
            s.set_connection(name, to, description.clone(), unix_now());
            Ok(())
        })
        .await?;
    tracing::info!(endpoint = name, state = %to, "private endpoint connection changed");
    Ok(Json(connection(state, name)?))
}

pub(crate) async fn approve(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    MaybeBody(body): MaybeBody<api::DecisionBody>,
) -> Result<Json<api::ConnectionView>, ApiError> {
    decide(&state, &name, ConnectionState::Approved, body.description).await
}

pub(crate) async fn reject(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    MaybeBody(body): MaybeBody<api::DecisionBody>,
) -> Result<Json<api::ConnectionView>, ApiError> {
    decide(&state, &name, ConnectionState::Rejected, body.description).await
}

/// Deletes a connection: a configured endpoint becomes `Disconnected` (and serves nothing
/// until approved again); the record of an unconfigured one is forgotten.
pub(crate) async fn delete_connection(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let current = connection(&state, &name)?;
    state
        .identity
        .management()
        .update_network(|s| {
            if current.configured {
                s.set_connection(&name, ConnectionState::Disconnected, None, unix_now());
            } else {
                s.private_endpoints.remove(&name);
            }
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- endpoints -----

pub(crate) async fn endpoints(_: Admin, State(state): State<AppState>) -> Json<api::EndpointsView> {
    let policy = state.identity.management().network();
    let settings = &policy.settings;
    let login = state.network.login_server.as_ref();
    let data = state.network.data.as_ref();
    Json(api::EndpointsView {
        login_server: api::LoginServerView {
            url: state
                .public_url
                .as_deref()
                .map(str::to_owned)
                .or_else(|| login.map(ListenerInfo::url)),
            address: login.map(|l| l.address.to_string()),
            tls: login.is_some_and(|l| l.tls),
            public_network_enabled: settings.public_network_enabled,
            default_action: wire::default_action(settings.default_action),
            ip_rules: settings.ip_rules.len(),
        },
        private_endpoints: connections(&state),
        data_endpoint: api::DataEndpointView {
            configured: data.is_some(),
            enabled: data.is_some() && settings.data_endpoint_enabled,
            url: data.map(|d| d.url.clone()),
            address: state
                .network
                .data_listener
                .as_ref()
                .map(|l| l.address.to_string()),
            url_ttl_seconds: data.map(|d| d.ttl.as_secs()),
        },
    })
}
