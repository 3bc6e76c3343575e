//! The signature a receiver checks: `X-Berth-Signature: sha256=<hex>`, the HMAC-SHA256 of
//! the exact body with the webhook's secret (as GitHub's `X-Hub-Signature-256`).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const HEADER: &str = "X-Berth-Signature";

/// The header's value for `body` signed with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A new secret: 256 random bits, hex.
pub fn generate_secret() -> String {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the operating system's random source works");
    hex::encode(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // RFC 4231 test case 2.
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            format!("sha256={expected}")
        );
    }

    #[test]
    fn secrets_differ() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_ne!(sign(&a, b"x"), sign(&b, b"x"));
    }
}
