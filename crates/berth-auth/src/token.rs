//! Tokens: logins for machines and people, each bound to one scope map, with two password
//! slots that rotate independently.
//!
//! Passwords are generated here with 256 bits of randomness and never stored: a slot keeps
//! the SHA-256 of its password. A slow hash protects only guessable passwords; for a random
//! 256-bit secret a plain SHA-256 is as strong and costs under a microsecond to check. The
//! same hash can be handed to a connected registry so it verifies logins offline without
//! ever holding a password in clear.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Choice, IdentityError, NameKind};

/// Whether a token may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    /// It may.
    Enabled,
    /// It may not, anywhere, from its very next request.
    Disabled,
}

impl TokenStatus {
    /// Parses `enabled` or `disabled`.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        match s {
            "enabled" => Ok(TokenStatus::Enabled),
            "disabled" => Ok(TokenStatus::Disabled),
            other => Err(IdentityError::UnknownChoice {
                setting: Choice::TokenStatus,
                value: other.to_owned(),
            }),
        }
    }
}

/// One of a token's two password slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// `password1`.
    #[serde(rename = "password1")]
    One,
    /// `password2`.
    #[serde(rename = "password2")]
    Two,
}

impl Slot {
    /// Both slots.
    pub const BOTH: [Slot; 2] = [Slot::One, Slot::Two];

    /// `password1` or `password2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::One => "password1",
            Slot::Two => "password2",
        }
    }

    /// 1 or 2.
    pub fn number(self) -> u8 {
        match self {
            Slot::One => 1,
            Slot::Two => 2,
        }
    }

    /// From 1 or 2.
    pub fn from_number(n: u8) -> Option<Slot> {
        match n {
            1 => Some(Slot::One),
            2 => Some(Slot::Two),
            _ => None,
        }
    }

    /// Parses `password1`/`password2` (or `1`/`2`).
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "password1" | "1" => Some(Slot::One),
            "password2" | "2" => Some(Slot::Two),
            _ => None,
        }
    }
}

/// A filled password slot: the password's hash, when it was made, when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordSlot {
    /// Lowercase hex SHA-256 of the password.
    pub hash: String,
    /// Creation time, Unix seconds; identifies this password among successive ones.
    pub created_at: i64,
    /// Expiry, Unix seconds; `None` never expires.
    pub expiry: Option<i64>,
}

impl PasswordSlot {
    /// Whether the password has expired at `now`.
    pub fn expired(&self, now: i64) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }

    /// Identifies this password among all passwords the slot ever held: the first 16 hex
    /// digits of its hash. Sessions record it, so a new password (even one created in the
    /// same second, or for a re-created token of the same name) ends the old sessions.
    pub fn id(&self) -> &str {
        &self.hash[..self.hash.len().min(16)]
    }

    /// Whether `password` is this slot's password (constant time).
    pub fn verify(&self, password: &str) -> bool {
        let Ok(stored) = hex::decode(&self.hash) else {
            return false;
        };
        let candidate = Sha256::digest(password.as_bytes());
        stored.as_slice().ct_eq(candidate.as_slice()).into()
    }
}

/// A token as stored (with password hashes, never passwords).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// 5-50 letters, digits and `-`.
    pub name: String,
    /// The scope map it is bound to.
    pub scope_map: String,
    /// Enabled or disabled.
    pub status: TokenStatus,
    /// Slot 1.
    pub password1: Option<PasswordSlot>,
    /// Slot 2.
    pub password2: Option<PasswordSlot>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

impl Token {
    /// The slot's content.
    pub fn slot(&self, slot: Slot) -> Option<&PasswordSlot> {
        match slot {
            Slot::One => self.password1.as_ref(),
            Slot::Two => self.password2.as_ref(),
        }
    }

    /// Sets or empties a slot.
    pub fn set_slot(&mut self, slot: Slot, value: Option<PasswordSlot>) {
        match slot {
            Slot::One => self.password1 = value,
            Slot::Two => self.password2 = value,
        }
    }

    /// The slot whose password `password` is, if the token is enabled and that password has
    /// not expired.
    pub fn check_password(&self, password: &str, now: i64) -> Option<Slot> {
        // Both slots are always checked, and the status after them, so timing tells neither
        // which one matched nor whether the token is disabled.
        let mut found = None;
        for slot in Slot::BOTH {
            if let Some(p) = self.slot(slot)
                && p.verify(password)
                && !p.expired(now)
            {
                found = Some(slot);
            }
        }
        found.filter(|_| self.status == TokenStatus::Enabled)
    }

    /// Whether a login made with `slot`'s password `password_id` ([`PasswordSlot::id`]) still
    /// stands: the token is enabled and the slot still holds that password, unexpired.
    pub fn session_valid(&self, slot: Slot, password_id: &str, now: i64) -> bool {
        self.status == TokenStatus::Enabled
            && self
                .slot(slot)
                .is_some_and(|p| p.id() == password_id && !p.expired(now))
    }
}

/// Validates a token name: 5-50 letters, digits and `-`.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let ok = (5..=50).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidName {
            kind: NameKind::Token,
            name: name.to_owned(),
        })
    }
}

/// A new random password (256 bits, URL-safe base64, 43 characters) and its stored slot.
pub fn generate_password(now: i64, expiry: Option<i64>) -> (String, PasswordSlot) {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source works");
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let hash = hex::encode(Sha256::digest(password.as_bytes()));
    (
        password,
        PasswordSlot {
            hash,
            created_at: now,
            expiry,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(p1: Option<PasswordSlot>, p2: Option<PasswordSlot>) -> Token {
        Token {
            name: "robot".into(),
            scope_map: "m".into(),
            status: TokenStatus::Enabled,
            password1: p1,
            password2: p2,
            created_at: 0,
        }
    }

    #[test]
    fn passwords_are_random_and_verify() {
        let (a, slot_a) = generate_password(10, None);
        let (b, _) = generate_password(10, None);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(slot_a.verify(&a));
        assert!(!slot_a.verify(&b));
        assert!(!slot_a.hash.contains(&a));
    }

    #[test]
    fn slots_expire_and_disable() {
        let (p1, s1) = generate_password(10, Some(100));
        let (p2, s2) = generate_password(10, None);
        let mut t = token(Some(s1), Some(s2));
        assert_eq!(t.check_password(&p1, 50), Some(Slot::One));
        assert_eq!(t.check_password(&p1, 100), None, "expired at its expiry");
        assert_eq!(t.check_password(&p2, 1000), Some(Slot::Two));
        let id2 = t.password2.as_ref().unwrap().id().to_owned();
        assert!(t.session_valid(Slot::Two, &id2, 1000));
        let (_, rotated) = generate_password(10, None);
        t.set_slot(Slot::Two, Some(rotated));
        assert!(
            !t.session_valid(Slot::Two, &id2, 1000),
            "a new password, even of the same second, ends the sessions"
        );
        let (_, s2) = generate_password(10, None);
        let id2 = s2.id().to_owned();
        t.set_slot(Slot::Two, Some(s2));
        t.status = TokenStatus::Disabled;
        assert!(!t.session_valid(Slot::Two, &id2, 50));
    }

    #[test]
    fn names() {
        assert!(validate_name("robot-1").is_ok());
        for bad in ["abcd", "has_underscore", "has space", &"a".repeat(51)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
