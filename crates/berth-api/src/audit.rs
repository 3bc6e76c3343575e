//! `/berth/v1/audit`: the audit log, the management actions taken on this registry.

use serde::{Deserialize, Serialize};

/// One management action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntryView {
    /// Its number, increasing in the order actions were recorded.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Who: the admin's user name.
    pub actor: String,
    /// From where: the client address.
    pub client: String,
    /// What: `<METHOD> <route>`, e.g. `PATCH /berth/v1/tokens/{name}`.
    pub action: String,
    /// On what: the path acted on.
    pub resource: String,
    /// The answer's status code (a refused action is recorded too).
    pub status: u16,
    /// For settings: the value before the action; `null` otherwise.
    pub before: Option<serde_json::Value>,
    /// For settings: the value after the action; `null` otherwise.
    pub after: Option<serde_json::Value>,
}

/// The query of `GET /berth/v1/audit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only actions at or after this time (RFC 3339); left out, every one kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only actions whose id is above this one (the last id of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// The most entries: 1 to 1000, 100 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
