//! `/berth/v1/registry`: the registry's own settings.

use serde::{Deserialize, Serialize};

wire_enum! {
    /// What the login server does with a client no IP rule allows.
    pub enum DefaultAction {
        /// Every client may connect (IP rules are not consulted).
        Allow = "Allow",
        /// Only clients inside an IP rule may connect.
        Deny = "Deny",
    }
}

/// `GET|PATCH /berth/v1/registry`: the registry's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryView {
    /// The admin's user name.
    pub admin_username: String,
    /// Whether anyone may pull without credentials.
    pub anonymous_pull_enabled: bool,
    /// Whether the login server's listener serves anyone.
    pub public_network_enabled: bool,
    /// What the login server does with clients outside every IP rule.
    pub default_action: DefaultAction,
    /// Whether blob downloads redirect to the data endpoint.
    pub data_endpoint_enabled: bool,
    /// The registry's Berth version.
    pub version: String,
}

/// The body of `PATCH /berth/v1/registry`; what is left out is unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryUpdate {
    /// Let anyone pull without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_pull_enabled: Option<bool>,
    /// Serve the login server's listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_enabled: Option<bool>,
    /// `Allow` or `Deny`, case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<String>,
    /// Redirect blob downloads to the data endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_endpoint_enabled: Option<bool>,
}
