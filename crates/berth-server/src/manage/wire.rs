//! Domain to wire and back: the management API's views built from `berth-auth`'s types,
//! and the rules of request bodies turned into the domain's. The wire types are
//! `berth-api`'s, shared with the CLI; this module is the one place that knows both sides,
//! so a change of the domain shows here, as a compile error, and not on the wire.
//!
//! Enums are converted by exhaustive matches: a value the domain gains must be given its
//! wire spelling (in `berth-api`, and in `docs/openapi.json`) before this builds.

use berth_api as api;
use berth_auth::connected::{ConnectedRegistry, LogLevel, Mode, SyncSettings};
use berth_auth::hierarchy::{self, Leftovers, connection_state};
use berth_auth::network::{self, DefaultAction};
use berth_auth::{
    GatewayRule, GeneratedPassword, IdentityError, RepositoryRule, ScopeMap, Slot, Token,
    TokenStatus,
};
use berth_oci::time::unix_now;

use super::time;

/// What the login server does with clients outside every IP rule.
pub(super) fn default_action(action: DefaultAction) -> api::DefaultAction {
    match action {
        DefaultAction::Allow => api::DefaultAction::Allow,
        DefaultAction::Deny => api::DefaultAction::Deny,
    }
}

/// A private endpoint connection's state.
pub(super) fn endpoint_state(state: network::ConnectionState) -> api::PrivateEndpointState {
    match state {
        network::ConnectionState::Pending => api::PrivateEndpointState::Pending,
        network::ConnectionState::Approved => api::PrivateEndpointState::Approved,
        network::ConnectionState::Rejected => api::PrivateEndpointState::Rejected,
        network::ConnectionState::Disconnected => api::PrivateEndpointState::Disconnected,
    }
}

fn token_status(status: TokenStatus) -> api::TokenStatus {
    match status {
        TokenStatus::Enabled => api::TokenStatus::Enabled,
        TokenStatus::Disabled => api::TokenStatus::Disabled,
    }
}

fn password_slot(slot: Slot) -> api::PasswordSlot {
    match slot {
        Slot::One => api::PasswordSlot::Password1,
        Slot::Two => api::PasswordSlot::Password2,
    }
}

fn mode(mode: Mode) -> api::Mode {
    match mode {
        Mode::ReadWrite => api::Mode::ReadWrite,
        Mode::ReadOnly => api::Mode::ReadOnly,
    }
}

fn log_level(level: LogLevel) -> api::LogLevel {
    match level {
        LogLevel::Debug => api::LogLevel::Debug,
        LogLevel::Information => api::LogLevel::Information,
        LogLevel::Warning => api::LogLevel::Warning,
        LogLevel::Error => api::LogLevel::Error,
        LogLevel::None => api::LogLevel::None,
    }
}

fn registry_state(state: hierarchy::ConnectionState) -> api::ConnectionState {
    match state {
        hierarchy::ConnectionState::Online => api::ConnectionState::Online,
        hierarchy::ConnectionState::Syncing => api::ConnectionState::Syncing,
        hierarchy::ConnectionState::Unhealthy => api::ConnectionState::Unhealthy,
        hierarchy::ConnectionState::Offline => api::ConnectionState::Offline,
    }
}

fn repository_rule(rule: RepositoryRule) -> api::RepositoryRule {
    api::RepositoryRule {
        repository: rule.repository,
        actions: rule.actions.iter().map(|a| a.as_str().to_owned()).collect(),
    }
}

fn gateway_rule(rule: GatewayRule) -> api::GatewayRule {
    api::GatewayRule {
        connected_registry: rule.connected_registry,
        actions: rule.actions.iter().map(|a| a.as_str().to_owned()).collect(),
    }
}

/// A request's repository rules, their actions parsed (the domain checks the rest).
pub(super) fn domain_repository_rules(
    rules: Vec<api::RepositoryRule>,
) -> Result<Vec<RepositoryRule>, IdentityError> {
    rules
        .into_iter()
        .map(|rule| RepositoryRule::parse(rule.repository, &rule.actions))
        .collect()
}

/// A request's gateway rules, their actions parsed (the domain checks the rest).
pub(super) fn domain_gateway_rules(
    rules: Vec<api::GatewayRule>,
) -> Result<Vec<GatewayRule>, IdentityError> {
    rules
        .into_iter()
        .map(|rule| GatewayRule::parse(rule.connected_registry, &rule.actions))
        .collect()
}

/// A scope map; a built-in one has no creation time.
pub(super) fn scope_map_view(map: ScopeMap) -> api::ScopeMapView {
    api::ScopeMapView {
        actions: map.action_strings(),
        created_at: (!map.built_in).then(|| time(map.created_at)),
        name: map.name,
        description: map.description,
        built_in: map.built_in,
        repositories: map.repositories.into_iter().map(repository_rule).collect(),
        gateways: map.gateways.into_iter().map(gateway_rule).collect(),
    }
}

/// A token with its filled password slots (never their hashes), expired or not as of now.
pub(super) fn token_view(token: Token) -> api::TokenView {
    let now = unix_now();
    let passwords = Slot::BOTH
        .into_iter()
        .filter_map(|slot| {
            token.slot(slot).map(|p| api::PasswordView {
                name: password_slot(slot),
                created_at: time(p.created_at),
                expiry: p.expiry.map(time),
                expired: p.expired(now),
            })
        })
        .collect();
    api::TokenView {
        created_at: time(token.created_at),
        name: token.name,
        scope_map: token.scope_map,
        status: token_status(token.status),
        passwords,
    }
}

/// A password just generated, with its value.
pub(super) fn new_password(password: GeneratedPassword) -> api::NewPassword {
    api::NewPassword {
        name: password_slot(password.slot),
        value: password.value,
        created_at: time(password.created_at),
        expiry: password.expiry.map(time),
    }
}

/// A connected registry's sync settings, as the wire carries them.
fn sync_settings_view(sync: SyncSettings) -> api::SyncSettingsView {
    api::SyncSettingsView {
        schedule: sync.schedule.as_str().to_owned(),
        window: sync.window.map(|w| w.as_str().to_owned()),
        message_ttl: sync.message_ttl.as_str().to_owned(),
        bandwidth: sync.bandwidth,
        concurrency: Some(sync.concurrency),
    }
}

/// A connected registry with its instance's status as of now.
pub(super) fn connected_registry_view(r: ConnectedRegistry) -> api::ConnectedRegistryView {
    let state = connection_state(&r, unix_now());
    let status = r.status.clone().unwrap_or_default();
    api::ConnectedRegistryView {
        activation: if r.activation.is_some() {
            api::Activation::Active
        } else {
            api::Activation::Inactive
        },
        connection_state: registry_state(state),
        last_sync: status.last_sync.map(time),
        status_details: status
            .details
            .into_iter()
            .map(|d| api::StatusDetailView {
                code: d.code,
                description: d.description,
                at: time(d.at),
                resolved_at: d.resolved_at.map(time),
            })
            .collect(),
        version: Some(status.version).filter(|v| !v.is_empty()),
        login_server: Some(status.login_server).filter(|v| !v.is_empty()),
        last_gc: status.last_gc.map(|gc| api::LastGcView {
            at: time(gc.at),
            outcome: gc.outcome,
            blobs_removed: gc.blobs_removed,
            bytes_freed: gc.bytes_freed,
        }),
        gc: api::GcSettingsView {
            enabled: r.gc.enabled,
            schedule: r.gc.schedule.as_str().to_owned(),
        },
        created_at: time(r.created_at),
        name: r.name,
        mode: mode(r.mode),
        parent: r.parent,
        repositories: r.repositories,
        sync_token: r.sync_token,
        client_tokens: r.client_tokens,
        sync: sync_settings_view(r.sync),
        log_level: log_level(r.log_level),
        notifications: r.notifications,
    }
}

/// What deleting a connected registry left behind.
pub(super) fn leftovers(leftovers: Leftovers) -> api::Leftovers {
    api::Leftovers {
        tokens: leftovers.tokens,
        scope_maps: leftovers.scope_maps,
    }
}
