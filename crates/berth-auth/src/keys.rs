//! The registry's secret keys, kept in the identity store (so every process sharing it signs
//! and verifies with the same ones) and rotated without downtime.
//!
//! Two purposes, each with one current key: access and refresh tokens ([`KeyPurpose::Tokens`])
//! and the data endpoint's signed URLs ([`KeyPurpose::DataUrls`]). Rotating makes a new
//! current key; the old one keeps verifying (never signing) until whatever it signed has
//! expired: a refresh token's lifetime for tokens, a signed URL's for data URLs. Keys travel
//! through the identity change log like any other identity, but never leave the registry:
//! they are not part of a connected registry's configuration.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::access_token::SigningKey;
use crate::error::{Choice, Corruption, IdentityError};

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyPurpose {
    /// Access and refresh tokens.
    Tokens,
    /// The data endpoint's signed blob URLs.
    DataUrls,
}

impl KeyPurpose {
    /// Both purposes.
    pub const ALL: [KeyPurpose; 2] = [KeyPurpose::Tokens, KeyPurpose::DataUrls];

    /// Its name on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Tokens => "tokens",
            KeyPurpose::DataUrls => "data-urls",
        }
    }

    /// Parses `tokens` or `data-urls`.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        KeyPurpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| IdentityError::UnknownChoice {
                setting: Choice::KeyPurpose,
                value: s.to_owned(),
            })
    }
}

/// A key as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// A short random id, to tell keys apart in listings and logs.
    pub id: String,
    /// What it signs.
    pub purpose: KeyPurpose,
    /// The 32-byte secret, base64 (URL-safe, no padding).
    pub secret: String,
    /// When it was made, Unix seconds.
    pub created_at: i64,
    /// When a newer key replaced it, Unix seconds; `None` for the current key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("purpose", &self.purpose)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl StoredKey {
    /// `key` stored as the current key for `purpose`.
    pub fn new(purpose: KeyPurpose, key: &SigningKey, now: i64) -> Self {
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).expect("the operating system's random source works");
        StoredKey {
            id: hex::encode(id),
            purpose,
            secret: B64.encode(key.bytes()),
            created_at: now,
            retired_at: None,
        }
    }

    /// The key itself.
    pub fn key(&self) -> Result<SigningKey, IdentityError> {
        let raw = B64
            .decode(&self.secret)
            .map_err(|_| Corruption::KeyNotBase64(self.id.clone()))?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| Corruption::KeyLength(self.id.clone()))?;
        Ok(SigningKey::from_bytes(bytes))
    }
}

/// How long a key of `purpose` keeps verifying after it is retired, in seconds: until
/// everything it signed has expired (a refresh token lives `refresh_token_ttl`; a signed
/// data URL at most 30 minutes), with a margin for clock skew.
pub(crate) fn grace(purpose: KeyPurpose, refresh_token_ttl: std::time::Duration) -> i64 {
    match purpose {
        KeyPurpose::Tokens => refresh_token_ttl.as_secs() as i64 + 300,
        KeyPurpose::DataUrls => 3600,
    }
}

/// The keys of one purpose: the current one, which signs, and the retired ones still within
/// their grace, which verify too (newest first).
#[derive(Debug, Clone)]
pub struct KeyRing {
    /// Signs, and verifies first.
    pub current: SigningKey,
    /// Verify what was signed before the last rotations.
    pub previous: Vec<SigningKey>,
}

impl KeyRing {
    /// Every key that verifies, the current one first.
    pub fn verifying(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// Whether `tag` is the tag of `message` under one of the keys that verify.
    pub fn verify_tag(&self, message: &[u8], tag: &[u8]) -> bool {
        self.verifying().any(|k| k.verify_tag(message, tag))
    }
}
