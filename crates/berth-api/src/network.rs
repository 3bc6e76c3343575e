//! `/berth/v1/network-rules`, `/berth/v1/private-endpoint-connections` and
//! `/berth/v1/endpoints`: who may reach the registry, and where. (The public switch, the
//! default action and the data endpoint switch are registry settings:
//! [`RegistryUpdate`](crate::RegistryUpdate).)

use serde::{Deserialize, Serialize};

use crate::registry::DefaultAction;

wire_enum! {
    /// A private endpoint connection's state; only `Approved` serves registry traffic.
    pub enum PrivateEndpointState {
        /// Configured, waiting for the owner's approval.
        Pending = "Pending",
        /// Serves.
        Approved = "Approved",
        /// Refused by the owner.
        Rejected = "Rejected",
        /// Deleted by the owner, or no longer configured.
        Disconnected = "Disconnected",
    }
}

/// `GET|POST|DELETE /berth/v1/network-rules`: the login server's access rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRulesView {
    /// Whether the login server's listener serves anyone.
    pub public_network_enabled: bool,
    /// What it does with clients outside every IP rule.
    pub default_action: DefaultAction,
    /// Allowed addresses and ranges, canonical (`203.0.113.7/32`).
    pub ip_rules: Vec<String>,
}

/// The body of `POST|DELETE /berth/v1/network-rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRuleBody {
    /// An address or CIDR range.
    pub ip_address: String,
}

/// A private endpoint connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionView {
    /// The endpoint's name, as configured.
    pub name: String,
    /// Its state.
    pub state: PrivateEndpointState,
    /// The owner's description, else the configured one.
    #[serde(default)]
    pub description: String,
    /// Whether this registry has a listener for it; one that has not is `Disconnected`.
    #[serde(default)]
    pub configured: bool,
    /// Its listener's address.
    #[serde(default)]
    pub address: Option<String>,
    /// The URL clients use.
    pub url: Option<String>,
    /// When its state last changed.
    pub updated_at: Option<String>,
}

/// The body of `POST /berth/v1/private-endpoint-connections/{name}/approve|reject`,
/// which may also be empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Why, in the owner's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `GET /berth/v1/endpoints`: everywhere the registry answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointsView {
    /// The login server.
    pub login_server: LoginServerView,
    /// The private endpoints.
    pub private_endpoints: Vec<ConnectionView>,
    /// The data endpoint.
    pub data_endpoint: DataEndpointView,
}

/// The login server in [`EndpointsView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginServerView {
    /// The URL clients use.
    pub url: Option<String>,
    /// Its listener's address.
    #[serde(default)]
    pub address: Option<String>,
    /// Whether its listener terminates TLS.
    #[serde(default)]
    pub tls: bool,
    /// Whether public network access is on.
    pub public_network_enabled: bool,
    /// What it does with clients outside every IP rule.
    pub default_action: DefaultAction,
    /// How many IP rules there are.
    pub ip_rules: usize,
}

/// The data endpoint in [`EndpointsView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataEndpointView {
    /// Whether one is configured.
    pub configured: bool,
    /// Whether blob downloads redirect to it.
    pub enabled: bool,
    /// Its URL.
    pub url: Option<String>,
    /// Its listener's address.
    #[serde(default)]
    pub address: Option<String>,
    /// How long its signed URLs are valid.
    pub url_ttl_seconds: Option<u64>,
}
