//! Request and response bodies of the management API (`/berth/v1/…`), as the command
//! line sends and reads them. Unknown response fields are ignored, so a newer registry
//! can add fields without breaking an older `berth`.

use serde::{Deserialize, Serialize};

/// Actions granted on repositories matching a pattern (`name`, `prefix/*` or `*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryRule {
    /// The repository pattern.
    pub repository: String,
    /// `content/read` and the like.
    pub actions: Vec<String>,
}

/// Gateway actions granted on a connected registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayRule {
    /// The connected registry's name.
    pub connected_registry: String,
    /// `config/read` and the like.
    pub actions: Vec<String>,
}

/// `GET /berth/v1/registry`.
#[derive(Debug, Deserialize)]
pub struct RegistryView {
    /// The admin's user name.
    pub admin_username: String,
    /// Whether anyone may pull without credentials.
    pub anonymous_pull_enabled: bool,
    /// Whether the login server's listener serves anyone.
    pub public_network_enabled: bool,
    /// `Allow` or `Deny`: what the login server does with clients outside every IP rule.
    pub default_action: String,
    /// Whether blob downloads redirect to the data endpoint.
    pub data_endpoint_enabled: bool,
    /// The registry's version.
    pub version: String,
}

/// `PATCH /berth/v1/registry`.
#[derive(Debug, Serialize)]
pub struct RegistryUpdate {
    /// New anonymous pull setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_pull_enabled: Option<bool>,
    /// New public network access setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_network_enabled: Option<bool>,
    /// New default action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_action: Option<String>,
    /// New data endpoint setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_endpoint_enabled: Option<bool>,
}

/// `GET /berth/v1/network-rules`.
#[derive(Debug, Deserialize)]
pub struct NetworkRulesView {
    /// Whether the login server's listener serves anyone.
    pub public_network_enabled: bool,
    /// `Allow` or `Deny`.
    pub default_action: String,
    /// Allowed addresses and ranges.
    pub ip_rules: Vec<String>,
}

/// The body of `POST|DELETE /berth/v1/network-rules`.
#[derive(Debug, Serialize)]
pub struct IpRuleBody {
    /// An address or CIDR range.
    pub ip_address: String,
}

/// A private endpoint connection as the API shows it.
#[derive(Debug, Deserialize)]
pub struct ConnectionView {
    /// The endpoint's name.
    pub name: String,
    /// `Pending`, `Approved`, `Rejected` or `Disconnected`.
    pub state: String,
    /// The owner's description.
    #[serde(default)]
    pub description: String,
    /// Its URL.
    pub url: Option<String>,
    /// When its state last changed.
    pub updated_at: Option<String>,
}

/// The body of `POST .../approve|reject`.
#[derive(Debug, Serialize)]
pub struct DecisionBody {
    /// Why, in the owner's words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `GET /berth/v1/endpoints`.
#[derive(Debug, Deserialize)]
pub struct EndpointsView {
    /// The login server.
    pub login_server: LoginServerView,
    /// Private endpoints.
    pub private_endpoints: Vec<ConnectionView>,
    /// The data endpoint.
    pub data_endpoint: DataEndpointView,
}

/// The login server in [`EndpointsView`].
#[derive(Debug, Deserialize)]
pub struct LoginServerView {
    /// URL clients use.
    pub url: Option<String>,
    /// Whether public network access is on.
    pub public_network_enabled: bool,
    /// `Allow` or `Deny`.
    pub default_action: String,
    /// How many IP rules there are.
    pub ip_rules: usize,
}

/// The data endpoint in [`EndpointsView`].
#[derive(Debug, Deserialize)]
pub struct DataEndpointView {
    /// Whether one is configured.
    pub configured: bool,
    /// Whether blob downloads redirect to it.
    pub enabled: bool,
    /// Its URL.
    pub url: Option<String>,
    /// Validity of its signed URLs.
    pub url_ttl_seconds: Option<u64>,
}

/// A scope map as the API shows it.
#[derive(Debug, Deserialize)]
pub struct ScopeMapView {
    /// Its name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Built-in scope maps are read-only.
    #[serde(default)]
    pub built_in: bool,
    /// Creation time (RFC 3339); none for built-ins.
    pub created_at: Option<String>,
    /// Repository rules.
    #[serde(default)]
    pub repositories: Vec<RepositoryRule>,
    /// Gateway rules.
    #[serde(default)]
    pub gateways: Vec<GatewayRule>,
}

/// `POST /berth/v1/scope-maps`.
#[derive(Debug, Serialize)]
pub struct ScopeMapCreate {
    /// Its name.
    pub name: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Repository rules.
    pub repositories: Vec<RepositoryRule>,
    /// Gateway rules.
    pub gateways: Vec<GatewayRule>,
}

/// `PATCH /berth/v1/scope-maps/{name}`.
#[derive(Debug, Serialize)]
pub struct ScopeMapPatch {
    /// New description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Rules to add (actions merge with existing ones).
    pub add_repositories: Vec<RepositoryRule>,
    /// Actions to take away.
    pub remove_repositories: Vec<RepositoryRule>,
    /// Gateway rules to add.
    pub add_gateways: Vec<GatewayRule>,
    /// Gateway actions to take away.
    pub remove_gateways: Vec<GatewayRule>,
}

/// A password slot as the API shows it (never its value).
#[derive(Debug, Deserialize)]
pub struct PasswordView {
    /// `password1` or `password2`.
    pub name: String,
    /// When it was generated (RFC 3339).
    pub created_at: String,
    /// When it stops working, if ever.
    pub expiry: Option<String>,
    /// Whether it has stopped working.
    #[serde(default)]
    pub expired: bool,
}

/// A token as the API shows it.
#[derive(Debug, Deserialize)]
pub struct TokenView {
    /// Its name, the user name of `docker login`.
    pub name: String,
    /// The scope map it is bound to.
    pub scope_map: String,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// The filled password slots.
    #[serde(default)]
    pub passwords: Vec<PasswordView>,
}

impl TokenView {
    /// The slot named `name`, if filled.
    pub fn password(&self, name: &str) -> Option<&PasswordView> {
        self.passwords.iter().find(|p| p.name == name)
    }
}

/// A password just generated: the only time its value is seen.
#[derive(Debug, Deserialize)]
pub struct NewPassword {
    /// `password1` or `password2`.
    pub name: String,
    /// The password.
    pub value: String,
    /// When it stops working, if ever.
    pub expiry: Option<String>,
}

/// `POST /berth/v1/tokens`.
#[derive(Debug, Serialize)]
pub struct TokenCreate {
    /// Its name.
    pub name: String,
    /// An existing scope map, or none when rules are given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_map: Option<String>,
    /// Rules for a new scope map `<name>-scope-map`.
    pub repositories: Vec<RepositoryRule>,
    /// Gateway rules for that scope map.
    pub gateways: Vec<GatewayRule>,
    /// `enabled` or `disabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Create the token without passwords.
    pub no_passwords: bool,
    /// Expiry of the generated passwords (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
}

/// The answer to `POST /berth/v1/tokens`.
#[derive(Debug, Deserialize)]
pub struct TokenCreated {
    /// The token.
    pub token: TokenView,
    /// Its passwords, shown this once.
    #[serde(default)]
    pub passwords: Vec<NewPassword>,
}

/// `PATCH /berth/v1/tokens/{name}`.
#[derive(Debug, Serialize)]
pub struct TokenPatch {
    /// New scope map.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_map: Option<String>,
    /// New status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `POST /berth/v1/tokens/{name}/credentials`.
#[derive(Debug, Serialize)]
pub struct CredentialsGenerate {
    /// Regenerate password1.
    pub password1: bool,
    /// Regenerate password2.
    pub password2: bool,
    /// Expiry of the new passwords (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
}

/// The answer to `POST /berth/v1/tokens/{name}/credentials`.
#[derive(Debug, Deserialize)]
pub struct CredentialsGenerated {
    /// The new passwords, shown this once.
    pub passwords: Vec<NewPassword>,
}

/// A connected registry's sync settings as the API shows them.
#[derive(Debug, Deserialize)]
pub struct SyncSettingsView {
    /// 5-field cron; `* * * * *` is continuous.
    pub schedule: String,
    /// ISO-8601 duration, with a non-continuous schedule.
    pub window: Option<String>,
    /// ISO-8601 duration: how long messages wait for an offline instance.
    pub message_ttl: String,
    /// Most bytes per second content sync uses on the link; none: unlimited.
    #[serde(default)]
    pub bandwidth: Option<u64>,
    /// Most blob transfers at once on the link.
    #[serde(default)]
    pub concurrency: Option<u32>,
}

/// A typed problem reported by a connected registry's instance.
#[derive(Debug, Deserialize)]
pub struct StatusDetailView {
    /// Machine-readable code, e.g. `DISK_FULL`.
    pub code: String,
    /// For people.
    #[serde(default)]
    pub description: String,
    /// When it started (RFC 3339).
    #[serde(default)]
    pub at: String,
    /// When it ended (RFC 3339); none while it lasts.
    #[serde(default)]
    pub resolved_at: Option<String>,
}

/// A connected registry as the API shows it: the resource and its instance's status.
#[derive(Debug, Deserialize)]
pub struct ConnectedRegistryView {
    /// Its name.
    pub name: String,
    /// `ReadWrite` or `ReadOnly`.
    pub mode: String,
    /// Its parent connected registry; none for a child of the root.
    pub parent: Option<String>,
    /// The repositories it syncs.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Its sync token.
    pub sync_token: String,
    /// The client tokens its instance accepts.
    #[serde(default)]
    pub client_tokens: Vec<String>,
    /// Schedule, window and message TTL.
    pub sync: SyncSettingsView,
    /// The instance's log level.
    pub log_level: String,
    /// Notification patterns.
    #[serde(default)]
    pub notifications: Vec<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// `Active` or `Inactive`.
    pub activation: String,
    /// `Online`, `Syncing`, `Unhealthy` or `Offline`.
    pub connection_state: String,
    /// Last successful sync (RFC 3339).
    pub last_sync: Option<String>,
    /// Typed problems the instance reported.
    #[serde(default)]
    pub status_details: Vec<StatusDetailView>,
    /// The instance's Berth version.
    pub version: Option<String>,
    /// The address local clients use.
    pub login_server: Option<String>,
}

/// `POST /berth/v1/connected-registries`.
#[derive(Debug, Serialize)]
pub struct ConnectedRegistryCreate {
    /// Its name.
    pub name: String,
    /// `ReadWrite` or `ReadOnly` (the registry's default: ReadOnly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Its parent connected registry; none for the root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Repositories to sync.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Instead of repositories: an existing token to use as the sync token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    /// Client tokens the instance accepts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_tokens: Vec<String>,
    /// 5-field cron.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_schedule: Option<String>,
    /// ISO-8601 duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_window: Option<String>,
    /// ISO-8601 duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_message_ttl: Option<String>,
    /// Bytes per second, e.g. `20M`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_bandwidth: Option<String>,
    /// Blob transfers at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_concurrency: Option<u32>,
    /// `Debug`, `Information`, `Warning`, `Error` or `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Notification patterns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<String>,
}

/// `PATCH /berth/v1/connected-registries/{name}`.
#[derive(Debug, Serialize)]
pub struct ConnectedRegistryPatch {
    /// Client tokens to add.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_client_tokens: Vec<String>,
    /// Client tokens to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_client_tokens: Vec<String>,
    /// New schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_schedule: Option<String>,
    /// New window; empty clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_window: Option<String>,
    /// New message TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_message_ttl: Option<String>,
    /// New bandwidth limit; empty removes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_bandwidth: Option<String>,
    /// New number of blob transfers at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_concurrency: Option<u32>,
    /// New log level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Notification patterns to add.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_notifications: Vec<String>,
    /// Notification patterns to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_notifications: Vec<String>,
}

/// The answer to `DELETE /berth/v1/connected-registries/{name}`: what is left to remove
/// by hand (nothing with `cleanup`).
#[derive(Debug, Deserialize)]
pub struct Leftovers {
    /// Tokens left.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Scope maps left.
    #[serde(default)]
    pub scope_maps: Vec<String>,
}

/// `POST /berth/v1/connected-registries/{name}/settings`.
#[derive(Debug, Serialize)]
pub struct SettingsRequest {
    /// `http` or `https`.
    pub parent_protocol: String,
    /// Generate a new sync-token password in slot 1 or 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate_password: Option<u8>,
    /// The parent's address, `host[:port]`, instead of the one the registry knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_gateway_endpoint: Option<String>,
}

/// The answer to `POST /berth/v1/connected-registries/{name}/settings`.
#[derive(Debug, Deserialize)]
pub struct SettingsView {
    /// `ConnectedRegistryName=…;SyncTokenName=…;…`.
    pub connection_string: String,
    /// The sync token.
    pub sync_token: String,
    /// The password just generated, if any (shown this once).
    pub password: Option<NewPassword>,
}

/// `GET /berth/v1/connected-registries/{name}/permissions`.
#[derive(Debug, Deserialize)]
pub struct PermissionsView {
    /// The repositories the connected registry syncs.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Its sync scope map (its own rights and those of its descendants).
    pub sync_scope_map: ScopeMapView,
}

/// `PATCH /berth/v1/connected-registries/{name}/permissions`.
#[derive(Debug, Serialize)]
pub struct PermissionsPatch {
    /// Repositories to add (to it and its ancestors).
    pub add: Vec<String>,
    /// Repositories to remove (from it and its descendants).
    pub remove: Vec<String>,
}
