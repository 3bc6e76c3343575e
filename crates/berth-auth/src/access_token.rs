//! Access and refresh tokens: JWTs signed with HMAC-SHA256 by a key Berth generates at first
//! start and keeps in its identity store ([`crate::keys`]).
//!
//! Only the registry that issued a token (or, later, the nodes sharing its key) ever
//! verifies it, so a symmetric key does the job of ES256 at a microsecond per check. The
//! header is fixed and checked, so no `alg` confusion is possible.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// Clock skew tolerated on `nbf` and `exp`, in seconds.
const LEEWAY: i64 = 30;

/// What a token grants on one resource, in the Docker token format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name (or `catalog`).
    pub name: String,
    /// Docker action names (`pull`, `push`, ...).
    pub actions: Vec<String>,
}

/// Whether a JWT is an access token or a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Short-lived, sent on registry requests.
    Access,
    /// Long-lived, exchanged for access tokens.
    Refresh,
}

/// The claims Berth puts in its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always `berth`.
    pub iss: String,
    /// The login: the admin's user name, a token's name, or empty for anonymous.
    pub sub: String,
    /// The service (login server) the token was issued for.
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Access or refresh.
    pub kind: TokenKind,
    /// `admin`, `token` or `anonymous`.
    pub who: String,
    /// For tokens: the password slot used to log in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u8>,
    /// For tokens: which password was used (`PasswordSlot::id`), so a new one ends the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd: Option<String>,
    /// What the token grants (access tokens only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<Access>,
}

/// Why a JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT this registry could have issued.
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not check out.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Expired, or not valid yet.
    #[error("the token has expired")]
    Expired,
    /// Issued for another service (audience).
    #[error("the token was issued for the service `{0}`, not this one")]
    Audience(String),
    /// The login it was issued for no longer stands.
    #[error(
        "the login behind this token no longer stands: the token was disabled or deleted, or its password changed or expired"
    )]
    Revoked,
}

/// The key that signs and verifies tokens.
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source works");
        SigningKey(key)
    }

    /// A key of these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SigningKey(bytes)
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads the key at `path` if there is one (a file kept by an earlier version, before keys
    /// lived in the identity store).
    pub fn load(path: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(std::io::Error::other)?;
                let raw = B64.decode(text.trim()).map_err(std::io::Error::other)?;
                let key: [u8; 32] = raw.try_into().map_err(|_| {
                    std::io::Error::other(format!(
                        "`{}` does not hold a 32-byte key",
                        path.display()
                    ))
                })?;
                Ok(Some(SigningKey(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// An HMAC-SHA256 tag over `message` (for signed URLs and the like; callers prefix the
    /// message with their purpose, so one key's tags cannot be replayed elsewhere).
    pub fn tag(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `message`, compared in constant time.
    pub fn verify_tag(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }

    /// Signs claims into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).expect("claims serialise");
        let signing_input = format!("{}.{}", B64.encode(HEADER), B64.encode(payload));
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = mac.finalize().into_bytes();
        format!("{signing_input}.{}", B64.encode(signature))
    }

    /// Verifies a JWT's header, signature and validity period at `now`; returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
        if payload.contains('.')
            || B64.decode(header).map_err(|_| TokenError::Malformed)? != HEADER.as_bytes()
        {
            return Err(TokenError::Malformed);
        }
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.iss != "berth" {
            return Err(TokenError::Malformed);
        }
        if claims.exp + LEEWAY <= now || claims.nbf - LEEWAY > now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "robot".into(),
            aud: "registry".into(),
            iat: 100,
            nbf: 100,
            exp,
            kind: TokenKind::Access,
            who: "token".into(),
            slot: Some(1),
            pwd: Some("0123456789abcdef".into()),
            access: vec![Access {
                kind: "repository".into(),
                name: "a/b".into(),
                actions: vec!["pull".into()],
            }],
        }
    }

    #[test]
    fn sign_and_verify() {
        let key = SigningKey::generate();
        let jwt = key.sign(&claims(400));
        assert_eq!(key.verify(&jwt, 200).unwrap(), claims(400));
        assert_eq!(key.verify(&jwt, 500), Err(TokenError::Expired));
        assert_eq!(
            SigningKey::generate().verify(&jwt, 200),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampering_is_refused() {
        let key = SigningKey::generate();
        let jwt = key.sign(&claims(400));
        let parts: Vec<&str> = jwt.split('.').collect();
        let mut forged = claims(400);
        forged.access[0].actions.push("push".into());
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let forged_jwt = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(key.verify(&forged_jwt, 200), Err(TokenError::BadSignature));
        let none_alg = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(key.verify(&none_alg, 200), Err(TokenError::Malformed));
        assert_eq!(key.verify("garbage", 200), Err(TokenError::Malformed));
        assert_eq!(
            key.verify(&format!("{jwt}.extra"), 200),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_key_file_of_an_earlier_version_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        assert!(SigningKey::load(&path).unwrap().is_none());
        let key = SigningKey::generate();
        std::fs::write(&path, B64.encode(key.0)).unwrap();
        assert_eq!(SigningKey::load(&path).unwrap().unwrap().0, key.0);
        std::fs::write(&path, "short").unwrap();
        assert!(SigningKey::load(&path).is_err());
    }
}
