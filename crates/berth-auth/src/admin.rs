//! The admin account's password: chosen by a person, so stored as an Argon2id hash.
//!
//! An Argon2id check costs tens of milliseconds by design, and clients send Basic
//! credentials on every request, so a success is remembered briefly: the cache keeps the
//! SHA-256 of the password that matched and the stored hash it matched, so changing the
//! password (a new stored hash) invalidates it at once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// How long a successful admin check is remembered.
const CACHE_TTL: Duration = Duration::from_secs(300);

/// Hashes a password with Argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("Argon2 hashes any password")
        .to_string()
}

/// Checks a password against a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// The work of a wrong admin password, for a login that matched no account: an Argon2
/// check against a hash made once, with the same parameters as the admin's, of a random
/// password that is thrown away.
pub fn check_no_account(password: &str) {
    static NOTHING: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password(&generate_password()));
    std::hint::black_box(verify_password(password, &NOTHING));
}

/// A new random admin password: 24 URL-safe base64 characters (144 bits).
pub fn generate_password() -> String {
    use base64::Engine as _;
    let mut secret = [0u8; 18];
    getrandom::fill(&mut secret).expect("the operating system's random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
}

struct CachedSuccess {
    stored_hash: String,
    password_sha256: [u8; 32],
    at: Instant,
}

/// Remembers the last successful admin check.
#[derive(Default)]
pub struct AdminCache(Mutex<Option<CachedSuccess>>);

impl AdminCache {
    /// Whether `password` recently matched `stored_hash`.
    pub fn hit(&self, stored_hash: &str, password: &str) -> bool {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = cache.as_ref() else {
            return false;
        };
        let sha: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        entry.stored_hash == stored_hash
            && entry.at.elapsed() < CACHE_TTL
            && bool::from(entry.password_sha256.ct_eq(&sha))
    }

    /// Records a successful check.
    pub fn remember(&self, stored_hash: &str, password: &str) {
        let entry = CachedSuccess {
            stored_hash: stored_hash.to_owned(),
            password_sha256: Sha256::digest(password.as_bytes()).into(),
            at: Instant::now(),
        };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip_and_cache() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        let cache = AdminCache::default();
        assert!(!cache.hit(&hash, "correct horse"));
        cache.remember(&hash, "correct horse");
        assert!(cache.hit(&hash, "correct horse"));
        assert!(!cache.hit(&hash, "wrong"));
        assert!(
            !cache.hit(&hash_password("correct horse"), "correct horse"),
            "a new stored hash invalidates"
        );
    }
}
