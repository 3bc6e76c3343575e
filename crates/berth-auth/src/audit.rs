//! The audit log's entries: who did which management action, from where, and for settings
//! the value before and after. Kept in the identity store (`IdentityStore::append_audit`),
//! written by the management API, pruned by age.
//!
//! *Invariant*: an entry never holds a secret. The server records names, the client address,
//! the route and the path, and settings views (which hold no password, token secret or
//! webhook secret); never a request body.

use serde::{Deserialize, Serialize};

/// One management action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its number, increasing in the order entries were written (0 before it is stored).
    pub id: i64,
    /// When (Unix seconds).
    pub at: i64,
    /// Who: the admin's user name, or the name of the token that acted.
    pub actor: String,
    /// From where: the client address.
    pub client: String,
    /// What: `<METHOD> <route>`, e.g. `PATCH /berth/v1/tokens/{name}`.
    pub action: String,
    /// On what: the path acted on, e.g. `/berth/v1/tokens/ci-pull`.
    pub resource: String,
    /// The answer's status code.
    pub status: u16,
    /// For settings: the value before the action.
    pub before: Option<serde_json::Value>,
    /// For settings: the value after the action.
    pub after: Option<serde_json::Value>,
}
