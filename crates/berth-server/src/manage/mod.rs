//! Berth's management API, `/berth/v1/…`: versioned JSON for the admin, described by
//! `docs/openapi.json` (a test checks the document against [`ROUTES`]).
//!
//! Request and response types are `berth-api`'s, shared with the CLI; `wire` builds them
//! from the domain types of `berth-auth`: times are RFC 3339 strings, password hashes never
//! leave the registry, and a password is in a response only when it was just generated.

use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use berth_api as api;
use berth_auth::network::DefaultAction;
use berth_auth::{NewToken, ScopeMapUpdate, Slot, TokenStatus};
use http::StatusCode;
use http::request::Parts;

pub mod audit;
mod connected;
mod gc;
mod import;
mod keys;
mod network;
mod repositories;
mod webhook;
mod wire;

use crate::auth::authenticate;
use crate::error::ApiError;
pub(crate) use crate::extract::{Body, MaybeBody};
use crate::state::AppState;

/// Every route of the management API: path, and the methods it serves.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/berth/v1/registry", &["GET", "PATCH"]),
    ("/berth/v1/scope-maps", &["GET", "POST"]),
    ("/berth/v1/scope-maps/{name}", &["GET", "PATCH", "DELETE"]),
    ("/berth/v1/tokens", &["GET", "POST"]),
    ("/berth/v1/tokens/{name}", &["GET", "PATCH", "DELETE"]),
    ("/berth/v1/tokens/{name}/credentials", &["POST"]),
    ("/berth/v1/tokens/{name}/credentials/{slot}", &["DELETE"]),
    ("/berth/v1/connected-registries", &["GET", "POST"]),
    (
        "/berth/v1/connected-registries/{name}",
        &["GET", "PATCH", "DELETE"],
    ),
    (
        "/berth/v1/connected-registries/{name}/deactivate",
        &["POST"],
    ),
    (
        "/berth/v1/connected-registries/{name}/client-tokens",
        &["GET"],
    ),
    ("/berth/v1/connected-registries/{name}/settings", &["POST"]),
    (
        "/berth/v1/connected-registries/{name}/permissions",
        &["GET", "PATCH"],
    ),
    ("/berth/v1/network-rules", &["GET", "POST", "DELETE"]),
    ("/berth/v1/endpoints", &["GET"]),
    ("/berth/v1/private-endpoint-connections", &["GET"]),
    (
        "/berth/v1/private-endpoint-connections/{name}",
        &["GET", "DELETE"],
    ),
    (
        "/berth/v1/private-endpoint-connections/{name}/approve",
        &["POST"],
    ),
    (
        "/berth/v1/private-endpoint-connections/{name}/reject",
        &["POST"],
    ),
    ("/berth/v1/keys", &["GET"]),
    ("/berth/v1/keys/rotate", &["POST"]),
    ("/berth/v1/gc/runs", &["GET", "POST"]),
    ("/berth/v1/gc/runs/{id}", &["GET"]),
    ("/berth/v1/gc/runs/{id}/stop", &["POST"]),
    // Served by `repositories`, whose one entry point reads names containing `/`.
    ("/berth/v1/repositories", &["GET"]),
    ("/berth/v1/repositories/{name}", &["GET", "DELETE"]),
    ("/berth/v1/repositories/{name}/_tags", &["GET"]),
    (
        "/berth/v1/repositories/{name}/_tags/{tag}",
        &["GET", "DELETE"],
    ),
    ("/berth/v1/repositories/{name}/_manifests", &["GET"]),
    (
        "/berth/v1/repositories/{name}/_manifests/{digest}",
        &["GET", "DELETE"],
    ),
    ("/berth/v1/imports", &["GET", "POST"]),
    ("/berth/v1/imports/{id}", &["GET"]),
    ("/berth/v1/imports/{id}/cancel", &["POST"]),
    ("/berth/v1/audit", &["GET"]),
    ("/berth/v1/webhooks", &["GET", "POST"]),
    ("/berth/v1/webhooks/{name}", &["GET", "PATCH", "DELETE"]),
    ("/berth/v1/webhooks/{name}/ping", &["POST"]),
    ("/berth/v1/webhooks/{name}/events", &["GET"]),
];

/// The management routes (with their admin check in each handler's extractor).
pub fn router() -> Router<AppState> {
    let routes: [(&str, MethodRouter<AppState>); 24] = [
        (ROUTES[0].0, get(show_registry).patch(update_registry)),
        (ROUTES[1].0, get(list_scope_maps).post(create_scope_map)),
        (
            ROUTES[2].0,
            get(show_scope_map)
                .patch(update_scope_map)
                .delete(delete_scope_map),
        ),
        (ROUTES[3].0, get(list_tokens).post(create_token)),
        (
            ROUTES[4].0,
            get(show_token).patch(update_token).delete(delete_token),
        ),
        (ROUTES[5].0, post(generate_credentials)),
        (ROUTES[6].0, delete(delete_credential)),
        (ROUTES[7].0, get(connected::list).post(connected::create)),
        (
            ROUTES[8].0,
            get(connected::show)
                .patch(connected::update)
                .delete(connected::delete),
        ),
        (ROUTES[9].0, post(connected::deactivate)),
        (ROUTES[10].0, get(connected::client_tokens)),
        (ROUTES[11].0, post(connected::settings)),
        (
            ROUTES[12].0,
            get(connected::permissions).patch(connected::update_permissions),
        ),
        (
            ROUTES[13].0,
            get(network::list_rules)
                .post(network::add_rule)
                .delete(network::remove_rule),
        ),
        (ROUTES[14].0, get(network::endpoints)),
        (ROUTES[15].0, get(network::list_connections)),
        (
            ROUTES[16].0,
            get(network::show_connection).delete(network::delete_connection),
        ),
        (ROUTES[17].0, post(network::approve)),
        (ROUTES[18].0, post(network::reject)),
        (ROUTES[19].0, get(keys::list)),
        (ROUTES[20].0, post(keys::rotate)),
        (ROUTES[21].0, get(gc::list).post(gc::start)),
        (ROUTES[22].0, get(gc::show)),
        (ROUTES[23].0, post(gc::stop)),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, method_router)| {
            router.route(path, method_router)
        })
        .route("/berth/v1/repositories", repositories::list_route())
        .route(
            "/berth/v1/repositories/{*path}",
            repositories::entry_route(),
        )
        .merge(import::router())
        .route("/berth/v1/audit", get(audit::list))
        .merge(webhook::router())
}

/// The admin, authenticated: every management handler takes this, so none can forget it.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(state, parts).await?;
        crate::observe::CallerNote::mark(parts, &caller.principal);
        caller.require_admin()?;
        if let Some(note) = parts.extensions.get::<audit::AuditNote>() {
            note.mark(state.identity.checks().admin_username());
        }
        Ok(Admin)
    }
}

/// The admin, authenticated, about to change identities (tokens, scope maps, connected
/// registries): refused on a connected registry, whose identities come from its parent and
/// are replaced by the next configuration it receives.
pub struct IdentityAdmin;

impl FromRequestParts<AppState> for IdentityAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Admin::from_request_parts(parts, state).await?;
        if let Some(site) = &state.site {
            return Err(berth_auth::IdentityError::ManagedByParent {
                registry: site.registry.clone(),
                parent: site.parent.clone(),
            }
            .into());
        }
        Ok(IdentityAdmin)
    }
}

/// A time as the API writes it: RFC 3339, UTC.
fn time(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A listing's `limit` query: 100 when absent, 1 to 1000.
pub(super) fn listing_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::management(
            StatusCode::BAD_REQUEST,
            "INVALID",
            "`limit` must be 1 to 1000",
        ));
    }
    Ok(limit)
}

pub(super) fn parse_time(field: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| {
            ApiError::management(
                StatusCode::BAD_REQUEST,
                "INVALID",
                format!("`{field}` must be a UTC time such as 2027-01-31T00:00:00Z ({e})"),
            )
        })
}

// ----- registry settings -----

pub(super) fn registry_view(state: &AppState) -> api::RegistryView {
    let network = state.identity.management().network();
    api::RegistryView {
        admin_username: state.identity.checks().admin_username(),
        anonymous_pull_enabled: state
            .identity
            .management()
            .settings()
            .anonymous_pull_enabled,
        public_network_enabled: network.settings.public_network_enabled,
        default_action: wire::default_action(network.settings.default_action),
        data_endpoint_enabled: network.settings.data_endpoint_enabled,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

async fn show_registry(_: Admin, State(state): State<AppState>) -> Json<api::RegistryView> {
    Json(registry_view(&state))
}

async fn update_registry(
    _: Admin,
    State(state): State<AppState>,
    Body(update): Body<api::RegistryUpdate>,
) -> Result<Json<api::RegistryView>, ApiError> {
    let default_action = update
        .default_action
        .as_deref()
        .map(str::parse::<DefaultAction>)
        .transpose()?;
    if update.data_endpoint_enabled == Some(true)
        && state.network.data.is_none()
        && !state.registry.signs_blob_urls()
    {
        return Err(ApiError::management(
            StatusCode::CONFLICT,
            "CONFLICT",
            "this registry has no data endpoint: configure [data_endpoint] (or --data-endpoint-listen), or keep blobs in object storage (--storage-url), and restart, then enable it",
        ));
    }
    if update.public_network_enabled.is_some()
        || default_action.is_some()
        || update.data_endpoint_enabled.is_some()
    {
        state
            .identity
            .management()
            .update_network(|s| {
                if let Some(enabled) = update.public_network_enabled {
                    s.public_network_enabled = enabled;
                }
                if let Some(action) = default_action {
                    s.default_action = action;
                }
                if let Some(enabled) = update.data_endpoint_enabled {
                    s.data_endpoint_enabled = enabled;
                }
                Ok(())
            })
            .await?;
    }
    if let Some(enabled) = update.anonymous_pull_enabled {
        state
            .identity
            .management()
            .set_anonymous_pull(enabled)
            .await?;
    }
    Ok(Json(registry_view(&state)))
}

// ----- scope maps -----

async fn list_scope_maps(_: Admin, State(state): State<AppState>) -> Json<Vec<api::ScopeMapView>> {
    Json(
        state
            .identity
            .management()
            .scope_maps()
            .into_iter()
            .map(wire::scope_map_view)
            .collect(),
    )
}

async fn show_scope_map(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::ScopeMapView>, ApiError> {
    Ok(Json(wire::scope_map_view(
        state.identity.management().scope_map(&name)?,
    )))
}

async fn create_scope_map(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Body(body): Body<api::ScopeMapCreate>,
) -> Result<Response, ApiError> {
    let map = state
        .identity
        .management()
        .create_scope_map(
            &body.name,
            &body.description,
            &wire::domain_repository_rules(body.repositories)?,
            &wire::domain_gateway_rules(body.gateways)?,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(wire::scope_map_view(map))).into_response())
}

async fn update_scope_map(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<api::ScopeMapPatch>,
) -> Result<Json<api::ScopeMapView>, ApiError> {
    let update = ScopeMapUpdate {
        description: body.description,
        add_repositories: wire::domain_repository_rules(body.add_repositories)?,
        remove_repositories: wire::domain_repository_rules(body.remove_repositories)?,
        add_gateways: wire::domain_gateway_rules(body.add_gateways)?,
        remove_gateways: wire::domain_gateway_rules(body.remove_gateways)?,
    };
    Ok(Json(wire::scope_map_view(
        state
            .identity
            .management()
            .update_scope_map(&name, update)
            .await?,
    )))
}

async fn delete_scope_map(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.identity.management().delete_scope_map(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- tokens -----

async fn list_tokens(_: Admin, State(state): State<AppState>) -> Json<Vec<api::TokenView>> {
    Json(
        state
            .identity
            .management()
            .tokens()
            .into_iter()
            .map(wire::token_view)
            .collect(),
    )
}

async fn show_token(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<api::TokenView>, ApiError> {
    Ok(Json(wire::token_view(
        state.identity.management().token(&name)?,
    )))
}

async fn create_token(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Body(body): Body<api::TokenCreate>,
) -> Result<Response, ApiError> {
    let disabled = match body.status.as_deref() {
        None => false,
        Some(s) => TokenStatus::parse(s)? == TokenStatus::Disabled,
    };
    let expiry = body
        .expiry
        .as_deref()
        .map(|e| parse_time("expiry", e))
        .transpose()?;
    let new = NewToken {
        name: body.name,
        scope_map: body.scope_map,
        repositories: wire::domain_repository_rules(body.repositories)?,
        gateways: wire::domain_gateway_rules(body.gateways)?,
        disabled,
        no_passwords: body.no_passwords,
        expiry,
    };
    let (token, passwords) = state.identity.management().create_token(new).await?;
    let created = api::TokenCreated {
        token: wire::token_view(token),
        passwords: passwords.into_iter().map(wire::new_password).collect(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn update_token(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<api::TokenPatch>,
) -> Result<Json<api::TokenView>, ApiError> {
    let status = body.status.as_deref().map(TokenStatus::parse).transpose()?;
    Ok(Json(wire::token_view(
        state
            .identity
            .management()
            .update_token(&name, body.scope_map.as_deref(), status)
            .await?,
    )))
}

async fn delete_token(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.identity.management().delete_token(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn generate_credentials(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<api::CredentialsGenerate>,
) -> Result<Json<api::CredentialsGenerated>, ApiError> {
    let slots: Vec<Slot> = match (body.password1, body.password2) {
        (false, false) | (true, true) => Slot::BOTH.to_vec(),
        (true, false) => vec![Slot::One],
        (false, true) => vec![Slot::Two],
    };
    let expiry = body
        .expiry
        .as_deref()
        .map(|e| parse_time("expiry", e))
        .transpose()?;
    let passwords = state
        .identity
        .management()
        .generate_passwords(&name, &slots, expiry)
        .await?;
    Ok(Json(api::CredentialsGenerated {
        passwords: passwords.into_iter().map(wire::new_password).collect(),
    }))
}

async fn delete_credential(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path((name, slot)): Path<(String, String)>,
) -> Result<Json<api::TokenView>, ApiError> {
    let slot = Slot::parse(&slot).ok_or_else(|| {
        ApiError::management(
            StatusCode::BAD_REQUEST,
            "INVALID",
            format!("`{slot}` is not a password slot; use password1 or password2"),
        )
    })?;
    Ok(Json(wire::token_view(
        state
            .identity
            .management()
            .delete_password(&name, slot)
            .await?,
    )))
}
