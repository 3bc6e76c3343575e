//! Berth's management API, `/berth/v1/…`: versioned JSON for the admin, described by
//! `docs/openapi.json` (a test checks the document against [`ROUTES`]).
//!
//! Request and response types live here, apart from the domain types of `berth-auth`:
//! times are RFC 3339 strings, password hashes never leave the registry, and a password is
//! in a response only when it was just generated.

use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use berth_auth::network::DefaultAction;
use berth_auth::{
    GatewayRule, GeneratedPassword, NewToken, RepositoryRule, ScopeMap, ScopeMapUpdate, Slot,
    Token, TokenStatus,
};
use http::StatusCode;
use http::request::Parts;
use serde::{Deserialize, Serialize};

mod connected;
mod network;

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
];

/// The management routes (with their admin check in each handler's extractor).
pub fn router() -> Router<AppState> {
    let routes: [(&str, MethodRouter<AppState>); 19] = [
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
    ];
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, method_router)| {
            router.route(path, method_router)
        })
}

/// The admin, authenticated: every management handler takes this, so none can forget it.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(state, parts).await?.require_admin()?;
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

pub(crate) fn time(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn parse_time(field: &str, value: &str) -> Result<i64, ApiError> {
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

#[derive(Serialize)]
struct RegistryView {
    admin_username: String,
    anonymous_pull_enabled: bool,
    public_network_enabled: bool,
    default_action: DefaultAction,
    data_endpoint_enabled: bool,
    version: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryUpdate {
    anonymous_pull_enabled: Option<bool>,
    public_network_enabled: Option<bool>,
    default_action: Option<String>,
    data_endpoint_enabled: Option<bool>,
}

fn registry_view(state: &AppState) -> RegistryView {
    let network = state.identity.management().network();
    RegistryView {
        admin_username: state.identity.checks().admin_username(),
        anonymous_pull_enabled: state
            .identity
            .management()
            .settings()
            .anonymous_pull_enabled,
        public_network_enabled: network.settings.public_network_enabled,
        default_action: network.settings.default_action,
        data_endpoint_enabled: network.settings.data_endpoint_enabled,
        version: env!("CARGO_PKG_VERSION"),
    }
}

async fn show_registry(_: Admin, State(state): State<AppState>) -> Json<RegistryView> {
    Json(registry_view(&state))
}

async fn update_registry(
    _: Admin,
    State(state): State<AppState>,
    Body(update): Body<RegistryUpdate>,
) -> Result<Json<RegistryView>, ApiError> {
    let default_action = update
        .default_action
        .as_deref()
        .map(str::parse::<DefaultAction>)
        .transpose()?;
    if update.data_endpoint_enabled == Some(true) && state.network.data.is_none() {
        return Err(ApiError::management(
            StatusCode::CONFLICT,
            "CONFLICT",
            "this registry has no data endpoint: configure [data_endpoint] (or --data-endpoint-listen) and restart, then enable it",
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

#[derive(Serialize)]
pub(crate) struct ScopeMapView {
    name: String,
    description: String,
    built_in: bool,
    created_at: Option<String>,
    repositories: Vec<RepositoryRule>,
    gateways: Vec<GatewayRule>,
    actions: Vec<String>,
}

impl From<ScopeMap> for ScopeMapView {
    fn from(map: ScopeMap) -> Self {
        ScopeMapView {
            actions: map.action_strings(),
            created_at: (!map.built_in).then(|| time(map.created_at)),
            name: map.name,
            description: map.description,
            built_in: map.built_in,
            repositories: map.repositories,
            gateways: map.gateways,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeMapCreate {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    repositories: Vec<RepositoryRule>,
    #[serde(default)]
    gateways: Vec<GatewayRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeMapPatch {
    description: Option<String>,
    #[serde(default)]
    add_repositories: Vec<RepositoryRule>,
    #[serde(default)]
    remove_repositories: Vec<RepositoryRule>,
    #[serde(default)]
    add_gateways: Vec<GatewayRule>,
    #[serde(default)]
    remove_gateways: Vec<GatewayRule>,
}

async fn list_scope_maps(_: Admin, State(state): State<AppState>) -> Json<Vec<ScopeMapView>> {
    Json(
        state
            .identity
            .management()
            .scope_maps()
            .into_iter()
            .map(Into::into)
            .collect(),
    )
}

async fn show_scope_map(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScopeMapView>, ApiError> {
    Ok(Json(state.identity.management().scope_map(&name)?.into()))
}

async fn create_scope_map(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Body(body): Body<ScopeMapCreate>,
) -> Result<Response, ApiError> {
    let map = state
        .identity
        .management()
        .create_scope_map(
            &body.name,
            &body.description,
            &body.repositories,
            &body.gateways,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(ScopeMapView::from(map))).into_response())
}

async fn update_scope_map(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<ScopeMapPatch>,
) -> Result<Json<ScopeMapView>, ApiError> {
    let update = ScopeMapUpdate {
        description: body.description,
        add_repositories: body.add_repositories,
        remove_repositories: body.remove_repositories,
        add_gateways: body.add_gateways,
        remove_gateways: body.remove_gateways,
    };
    Ok(Json(
        state
            .identity
            .management()
            .update_scope_map(&name, update)
            .await?
            .into(),
    ))
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

#[derive(Serialize)]
struct PasswordView {
    name: &'static str,
    created_at: String,
    expiry: Option<String>,
    expired: bool,
}

#[derive(Serialize)]
pub(crate) struct TokenView {
    name: String,
    scope_map: String,
    status: TokenStatus,
    created_at: String,
    passwords: Vec<PasswordView>,
}

impl From<Token> for TokenView {
    fn from(token: Token) -> Self {
        let now = jiff::Timestamp::now().as_second();
        let passwords = Slot::BOTH
            .into_iter()
            .filter_map(|slot| {
                token.slot(slot).map(|p| PasswordView {
                    name: slot.as_str(),
                    created_at: time(p.created_at),
                    expiry: p.expiry.map(time),
                    expired: p.expired(now),
                })
            })
            .collect();
        TokenView {
            created_at: time(token.created_at),
            name: token.name,
            scope_map: token.scope_map,
            status: token.status,
            passwords,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct NewPasswordView {
    name: &'static str,
    value: String,
    created_at: String,
    expiry: Option<String>,
}

impl From<GeneratedPassword> for NewPasswordView {
    fn from(p: GeneratedPassword) -> Self {
        NewPasswordView {
            name: p.slot.as_str(),
            value: p.value,
            created_at: time(p.created_at),
            expiry: p.expiry.map(time),
        }
    }
}

#[derive(Serialize)]
struct TokenCreated {
    token: TokenView,
    passwords: Vec<NewPasswordView>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenCreate {
    name: String,
    scope_map: Option<String>,
    #[serde(default)]
    repositories: Vec<RepositoryRule>,
    #[serde(default)]
    gateways: Vec<GatewayRule>,
    status: Option<String>,
    #[serde(default)]
    no_passwords: bool,
    expiry: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenPatch {
    scope_map: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CredentialsGenerate {
    #[serde(default)]
    password1: bool,
    #[serde(default)]
    password2: bool,
    expiry: Option<String>,
}

#[derive(Serialize)]
struct CredentialsGenerated {
    passwords: Vec<NewPasswordView>,
}

async fn list_tokens(_: Admin, State(state): State<AppState>) -> Json<Vec<TokenView>> {
    Json(
        state
            .identity
            .management()
            .tokens()
            .into_iter()
            .map(Into::into)
            .collect(),
    )
}

async fn show_token(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    Ok(Json(state.identity.management().token(&name)?.into()))
}

async fn create_token(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Body(body): Body<TokenCreate>,
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
        repositories: body.repositories,
        gateways: body.gateways,
        disabled,
        no_passwords: body.no_passwords,
        expiry,
    };
    let (token, passwords) = state.identity.management().create_token(new).await?;
    let created = TokenCreated {
        token: token.into(),
        passwords: passwords.into_iter().map(Into::into).collect(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn update_token(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<TokenPatch>,
) -> Result<Json<TokenView>, ApiError> {
    let status = body.status.as_deref().map(TokenStatus::parse).transpose()?;
    Ok(Json(
        state
            .identity
            .management()
            .update_token(&name, body.scope_map.as_deref(), status)
            .await?
            .into(),
    ))
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
    Body(body): Body<CredentialsGenerate>,
) -> Result<Json<CredentialsGenerated>, ApiError> {
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
    Ok(Json(CredentialsGenerated {
        passwords: passwords.into_iter().map(Into::into).collect(),
    }))
}

async fn delete_credential(
    _: IdentityAdmin,
    State(state): State<AppState>,
    Path((name, slot)): Path<(String, String)>,
) -> Result<Json<TokenView>, ApiError> {
    let slot = Slot::parse(&slot).ok_or_else(|| {
        ApiError::management(
            StatusCode::BAD_REQUEST,
            "INVALID",
            format!("`{slot}` is not a password slot; use password1 or password2"),
        )
    })?;
    Ok(Json(
        state
            .identity
            .management()
            .delete_password(&name, slot)
            .await?
            .into(),
    ))
}
