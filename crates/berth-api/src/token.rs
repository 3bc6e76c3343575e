//! `/berth/v1/tokens`: tokens, their two password slots, and passwords just generated.
//!
//! A password's value is in an answer only when it was just generated; the registry keeps
//! only hashes.

use serde::{Deserialize, Serialize};

use crate::scope_map::{GatewayRule, RepositoryRule};

wire_enum! {
    /// Whether a token may log in.
    pub enum TokenStatus {
        /// It may.
        Enabled = "enabled",
        /// It may not, anywhere, from its very next request.
        Disabled = "disabled",
    }
}

wire_enum! {
    /// One of a token's two password slots.
    pub enum PasswordSlot {
        /// The first slot.
        Password1 = "password1",
        /// The second slot.
        Password2 = "password2",
    }
}

/// A filled password slot (never its value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordView {
    /// The slot.
    pub name: PasswordSlot,
    /// When the password was generated.
    pub created_at: String,
    /// When it stops working; `null`: never.
    pub expiry: Option<String>,
    /// Whether it has stopped working.
    #[serde(default)]
    pub expired: bool,
}

/// A token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    /// Its name, the user name of `docker login`.
    pub name: String,
    /// The scope map it is bound to.
    pub scope_map: String,
    /// Whether it may log in.
    pub status: TokenStatus,
    /// Creation time.
    pub created_at: String,
    /// The filled password slots.
    #[serde(default)]
    pub passwords: Vec<PasswordView>,
}

impl TokenView {
    /// The password in `slot`, if it is filled.
    pub fn password(&self, slot: PasswordSlot) -> Option<&PasswordView> {
        self.passwords.iter().find(|p| p.name == slot)
    }
}

/// A password just generated: the only time its value is seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPassword {
    /// The slot it fills.
    pub name: PasswordSlot,
    /// The password.
    pub value: String,
    /// When it was generated.
    #[serde(default)]
    pub created_at: String,
    /// When it stops working; `null`: never.
    pub expiry: Option<String>,
}

/// The body of `POST /berth/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// Its name.
    pub name: String,
    /// An existing scope map; or none, and rules for a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_map: Option<String>,
    /// Instead of `scope_map`: the rules of a scope map `<name>-scope-map`, created with
    /// the token.
    #[serde(default)]
    pub repositories: Vec<RepositoryRule>,
    /// Gateway rules of that scope map.
    #[serde(default)]
    pub gateways: Vec<GatewayRule>,
    /// `enabled` (the default) or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Create the token without passwords.
    #[serde(default)]
    pub no_passwords: bool,
    /// Expiry of the generated passwords (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
}

/// The answer to `POST /berth/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token.
    pub token: TokenView,
    /// Its passwords, shown this once.
    #[serde(default)]
    pub passwords: Vec<NewPassword>,
}

/// The body of `PATCH /berth/v1/tokens/{name}`; what is left out is unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPatch {
    /// Bind the token to this scope map instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_map: Option<String>,
    /// `enabled` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The body of `POST /berth/v1/tokens/{name}/credentials`: which slots to fill with new
/// passwords (neither named: both).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsGenerate {
    /// Generate password1.
    #[serde(default)]
    pub password1: bool,
    /// Generate password2.
    #[serde(default)]
    pub password2: bool,
    /// Expiry of the new passwords (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
}

/// The answer to `POST /berth/v1/tokens/{name}/credentials`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialsGenerated {
    /// The new passwords, shown this once.
    pub passwords: Vec<NewPassword>,
}
