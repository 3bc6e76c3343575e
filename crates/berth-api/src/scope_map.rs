//! `/berth/v1/scope-maps`: scope maps and their rules.

use serde::{Deserialize, Serialize};

/// Repository actions granted on the repositories a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRule {
    /// `name`, `prefix/*` or `*`.
    pub repository: String,
    /// `content/read` and the like.
    pub actions: Vec<String>,
}

/// Gateway actions granted on a connected registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRule {
    /// The connected registry's name.
    pub connected_registry: String,
    /// `config/read` and the like.
    pub actions: Vec<String>,
}

/// A scope map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeMapView {
    /// Its name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Built-in scope maps are read-only.
    #[serde(default)]
    pub built_in: bool,
    /// Creation time; `null` for built-ins.
    pub created_at: Option<String>,
    /// Repository rules.
    #[serde(default)]
    pub repositories: Vec<RepositoryRule>,
    /// Gateway rules.
    #[serde(default)]
    pub gateways: Vec<GatewayRule>,
    /// Every action it grants, as `repositories/<repo>/<action>` or
    /// `gateway/<name>/<action>`.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// The body of `POST /berth/v1/scope-maps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeMapCreate {
    /// Its name.
    pub name: String,
    /// Free text; empty when left out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Repository rules.
    #[serde(default)]
    pub repositories: Vec<RepositoryRule>,
    /// Gateway rules.
    #[serde(default)]
    pub gateways: Vec<GatewayRule>,
}

/// The body of `PATCH /berth/v1/scope-maps/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeMapPatch {
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Rules to add (actions merge with those already granted).
    #[serde(default)]
    pub add_repositories: Vec<RepositoryRule>,
    /// Actions to take away.
    #[serde(default)]
    pub remove_repositories: Vec<RepositoryRule>,
    /// Gateway rules to add.
    #[serde(default)]
    pub add_gateways: Vec<GatewayRule>,
    /// Gateway actions to take away.
    #[serde(default)]
    pub remove_gateways: Vec<GatewayRule>,
}
