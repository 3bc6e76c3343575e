//! `/berth/v1/keys`: the registry's secret keys (never their secrets): which signs now, and
//! which still verify what was signed before a rotation.

use serde::{Deserialize, Serialize};

wire_enum! {
    /// What a key signs.
    pub enum KeyPurpose {
        /// Access and refresh tokens.
        Tokens = "tokens",
        /// The data endpoint's signed blob URLs.
        DataUrls = "data-urls",
    }
}

/// One key, as `GET /berth/v1/keys` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    /// A short id, to tell keys apart.
    pub id: String,
    /// What it signs.
    pub purpose: KeyPurpose,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When a newer key replaced it (RFC 3339); `null` for the current key, which signs.
    pub retired_at: Option<String>,
    /// Until when a retired key still verifies (RFC 3339): until what it signed has expired.
    pub verifies_until: Option<String>,
}

/// The body of `POST /berth/v1/keys/rotate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotate {
    /// `tokens` or `data-urls`.
    pub purpose: String,
}
