//! `/berth/v1/connected-registries`: connected registries as resources of the root, with
//! their instance's status, connection string and permissions.
//!
//! The sync settings travel as the registry documents them: schedule, window and message
//! TTL as strings (cron, ISO-8601 durations), bandwidth in bytes per second, concurrency as
//! a count. In a request, the bandwidth is a string such as `20M` and an empty window or
//! bandwidth removes it.

use serde::{Deserialize, Serialize};

use crate::scope_map::ScopeMapView;
use crate::token::NewPassword;

wire_enum! {
    /// What local clients of a connected registry may do.
    pub enum Mode {
        /// Local clients push and pull; local pushes flow up to the parent.
        ReadWrite = "ReadWrite",
        /// A pull-only mirror.
        ReadOnly = "ReadOnly",
    }
}

wire_enum! {
    /// The instance's log level.
    pub enum LogLevel {
        /// Everything.
        Debug = "Debug",
        /// The default.
        Information = "Information",
        /// Warnings and errors.
        Warning = "Warning",
        /// Errors only.
        Error = "Error",
        /// Nothing.
        None = "None",
    }
}

wire_enum! {
    /// Whether an instance holds the connected registry.
    pub enum Activation {
        /// An instance activated it and was not deactivated since.
        Active = "Active",
        /// No instance holds it: never activated, or deactivated.
        Inactive = "Inactive",
    }
}

wire_enum! {
    /// How the instance is connected, as the root sees it.
    pub enum ConnectionState {
        /// Reporting: all well.
        Online = "Online",
        /// Reporting: content is moving, or a scheduled run is on.
        Syncing = "Syncing",
        /// Reporting: something is wrong (see the status details).
        Unhealthy = "Unhealthy",
        /// Not reporting: never activated, deactivated, or silent for too long.
        Offline = "Offline",
    }
}

/// When, for how long and how fast the instance syncs with its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncSettingsView {
    /// 5-field cron; `* * * * *` is continuous.
    pub schedule: String,
    /// ISO-8601 duration of each scheduled run; `null` with the continuous schedule.
    pub window: Option<String>,
    /// ISO-8601 duration: how long changes wait for an offline instance.
    pub message_ttl: String,
    /// Most bytes per second content sync uses on the link; `null`: unlimited.
    #[serde(default)]
    pub bandwidth: Option<u64>,
    /// Most blob transfers at once on the link (a registry older than the setting leaves
    /// it out).
    #[serde(default)]
    pub concurrency: Option<u32>,
}

/// A problem reported by a connected registry's instance, current or past.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDetailView {
    /// Machine-readable, e.g. `DISK_FULL`.
    pub code: String,
    /// For people.
    #[serde(default)]
    pub description: String,
    /// When it started.
    #[serde(default)]
    pub at: String,
    /// When it ended; `null` while it lasts.
    #[serde(default)]
    pub resolved_at: Option<String>,
}

/// A connected registry: the resource, and its instance's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectedRegistryView {
    /// Its name.
    pub name: String,
    /// What its local clients may do.
    pub mode: Mode,
    /// Its parent connected registry; `null` for a child of the root.
    pub parent: Option<String>,
    /// The repositories it syncs.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Its sync token.
    pub sync_token: String,
    /// The client tokens its instance accepts.
    #[serde(default)]
    pub client_tokens: Vec<String>,
    /// Its sync settings.
    pub sync: SyncSettingsView,
    /// The instance's log level.
    pub log_level: LogLevel,
    /// Notification patterns.
    #[serde(default)]
    pub notifications: Vec<String>,
    /// Creation time.
    pub created_at: String,
    /// Whether an instance holds it.
    pub activation: Activation,
    /// How its instance is connected.
    pub connection_state: ConnectionState,
    /// The end of its last successful sync.
    pub last_sync: Option<String>,
    /// Problems its instance reported: current ones first, then the last past ones.
    #[serde(default)]
    pub status_details: Vec<StatusDetailView>,
    /// The instance's Berth version.
    pub version: Option<String>,
    /// The address its local clients use, as the instance reports it.
    pub login_server: Option<String>,
    /// Garbage collection on site.
    #[serde(default)]
    pub gc: GcSettingsView,
    /// What the instance's last garbage collection did.
    #[serde(default)]
    pub last_gc: Option<LastGcView>,
}

/// Whether and when a connected registry's instance collects garbage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcSettingsView {
    /// Collects on its schedule.
    pub enabled: bool,
    /// When: a 5-field cron expression, UTC.
    pub schedule: String,
}

/// An instance's last garbage collection, as it reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastGcView {
    /// When it ended (RFC 3339).
    pub at: String,
    /// `finished`, `stopped`, or `failed: <why>`.
    pub outcome: String,
    /// Blobs whose bytes it removed.
    pub blobs_removed: u64,
    /// Bytes it freed.
    pub bytes_freed: u64,
}

/// The query of `GET /berth/v1/connected-registries`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectedRegistryListQuery {
    /// Only the connected registries under this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Only direct children (of `parent`, or of the root).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_children: bool,
}

/// The query of `DELETE /berth/v1/connected-registries/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectedRegistryDeleteQuery {
    /// Also delete its sync token and sync scope map, and take its rights out of its
    /// ancestors' sync scope maps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleanup: bool,
}

/// The body of `POST /berth/v1/connected-registries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectedRegistryCreate {
    /// Its name.
    pub name: String,
    /// `ReadWrite` or `ReadOnly` (the default), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Its parent connected registry; none: the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Repositories to sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Instead of repositories: an existing token to use as the sync token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    /// Client tokens the instance accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_tokens: Vec<String>,
    /// Notification patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<String>,
    /// Its sync settings, log level and garbage collection; what is left out takes the
    /// default.
    #[serde(flatten)]
    pub settings: InstanceSettings,
}

/// What a connected registry's instance runs with, as a request sets it (in
/// [`ConnectedRegistryCreate`], what is left out takes the default; in
/// [`ConnectedRegistryPatch`], it is unchanged). Written flat into those bodies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceSettings {
    /// 5-field cron; `* * * * *` (the default) syncs continuously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_schedule: Option<String>,
    /// ISO-8601 duration of each scheduled run; empty removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_window: Option<String>,
    /// ISO-8601 duration: how long changes wait for an offline instance (default `P2D`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_message_ttl: Option<String>,
    /// Bytes per second, e.g. `20M`; empty removes the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_bandwidth: Option<String>,
    /// Blob transfers at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_concurrency: Option<u32>,
    /// `Debug`, `Information` (the default), `Warning`, `Error` or `None`,
    /// case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Garbage collection on site (default: on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_enabled: Option<bool>,
    /// When it collects, a 5-field cron expression (default `30 3 * * *`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_schedule: Option<String>,
}

impl InstanceSettings {
    /// Whether it sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == InstanceSettings::default()
    }
}

/// The body of `PATCH /berth/v1/connected-registries/{name}`; what is left out is
/// unchanged (the mode is fixed at creation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectedRegistryPatch {
    /// Client tokens to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_client_tokens: Vec<String>,
    /// Client tokens to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_client_tokens: Vec<String>,
    /// Notification patterns to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_notifications: Vec<String>,
    /// Notification patterns to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_notifications: Vec<String>,
    /// New sync settings, log level and garbage collection; what is left out is unchanged.
    #[serde(flatten)]
    pub settings: InstanceSettings,
}

/// The answer to `DELETE /berth/v1/connected-registries/{name}`: what is left to remove
/// by hand (nothing with `cleanup`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Leftovers {
    /// Tokens left.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Scope maps left.
    #[serde(default)]
    pub scope_maps: Vec<String>,
}

/// The body of `POST /berth/v1/connected-registries/{name}/settings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsRequest {
    /// `http` or `https` (the default): how the instance reaches its parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_protocol: Option<String>,
    /// Generate a new sync-token password in slot 1 or 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_password: Option<u8>,
    /// The parent's address as the instance reaches it, `host[:port]`, instead of the one
    /// the registry knows (the root's, or the parent instance's reported login server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_gateway_endpoint: Option<String>,
}

/// The answer to `POST /berth/v1/connected-registries/{name}/settings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsView {
    /// `ConnectedRegistryName=…;SyncTokenName=…;…`, what `berth serve
    /// --connection-string` takes.
    pub connection_string: String,
    /// The sync token.
    pub sync_token: String,
    /// The password just generated, if one was asked for (shown this once).
    pub password: Option<NewPassword>,
}

/// `GET|PATCH /berth/v1/connected-registries/{name}/permissions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionsView {
    /// The repositories the connected registry syncs.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Its sync scope map: its own rights and those of its descendants.
    pub sync_scope_map: ScopeMapView,
}

/// The body of `PATCH /berth/v1/connected-registries/{name}/permissions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsPatch {
    /// Repositories to add, to it and its ancestors.
    #[serde(default)]
    pub add: Vec<String>,
    /// Repositories to remove, from it and its descendants.
    #[serde(default)]
    pub remove: Vec<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The shared settings are written flat, as the fields always were, and a body still
    /// refuses a field it does not know (flattening must not open it).
    #[test]
    fn instance_settings_travel_flat_and_bodies_stay_closed() {
        let patch = ConnectedRegistryPatch {
            add_notifications: vec!["*:*".into()],
            settings: InstanceSettings {
                sync_window: Some(String::new()),
                gc_enabled: Some(false),
                ..InstanceSettings::default()
            },
            ..ConnectedRegistryPatch::default()
        };
        let value = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            value,
            json!({"add_notifications": ["*:*"], "sync_window": "", "gc_enabled": false})
        );
        assert_eq!(
            serde_json::from_value::<ConnectedRegistryPatch>(value).unwrap(),
            patch
        );
        let create: ConnectedRegistryCreate = serde_json::from_value(
            json!({"name": "factory", "repositories": ["*"], "sync_concurrency": 8}),
        )
        .unwrap();
        assert_eq!(create.settings.sync_concurrency, Some(8));
        for (body, field) in [
            (json!({"sync_windw": "PT1H"}), "sync_windw"),
            (json!({"name": "factory", "gc_enable": true}), "gc_enable"),
        ] {
            let e = if body.get("name").is_some() {
                serde_json::from_value::<ConnectedRegistryCreate>(body).map(|_| ())
            } else {
                serde_json::from_value::<ConnectedRegistryPatch>(body).map(|_| ())
            }
            .unwrap_err()
            .to_string();
            assert!(e.contains(&format!("unknown field `{field}`")), "{e}");
        }
    }
}
