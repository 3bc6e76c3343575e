//! Content digests (`algorithm:hex`) and incremental hashing.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

/// First byte of a saved SHA-256 hasher state.
const STATE_SHA256: u8 = 1;
/// First byte of a saved SHA-512 hasher state.
const STATE_SHA512: u8 = 2;

/// A digest algorithm the registry verifies content with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 lowercase hex characters.
    Sha256,
    /// SHA-512, 128 lowercase hex characters.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:e3b0…`.
///
/// Only `sha256` and `sha512` with lowercase hex of the right length are accepted, so the
/// string form is safe to use as a file name component.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a string is not a digest this registry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The string has no `algorithm:` prefix.
    #[error("digest `{0}` is not of the form `algorithm:hex`")]
    Malformed(String),
    /// The algorithm is well-formed but not one the registry verifies.
    #[error("digest algorithm `{0}` is not supported (use sha256 or sha512)")]
    UnsupportedAlgorithm(String),
    /// The encoded part has the wrong length or characters.
    #[error("digest `{0}` does not have the hex length its algorithm needs")]
    BadHex(String),
}

impl Digest {
    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a byte slice with the given algorithm.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    /// SHA-256 digest of a byte slice.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_owned()))?;
        // The spec's grammar: algorithm-component [+._-] ..., then `:` and [a-zA-Z0-9=_-]+.
        let grammar_ok = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
            && !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-');
        if !grammar_ok {
            return Err(DigestError::Malformed(s.to_owned()));
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::BadHex(s.to_owned()));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Three writes, not `write!`: a digest is formatted into headers on every manifest
        // and blob request, and the formatting machinery cost more than the copy.
        f.write_str(self.algorithm.as_str())?;
        f.write_str(":")?;
        f.write_str(&self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for one [`Algorithm`], fed as bytes arrive.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far; the hasher itself is left untouched.
    pub fn peek(&self) -> Digest {
        self.clone().finish()
    }

    /// The hasher's state, to keep and continue from later, in this process or another
    /// (a chunked upload between requests): about 110 bytes, an algorithm byte then
    /// sha2's serialised state. Stable within sha2 0.11.
    pub fn save(&self) -> Vec<u8> {
        let (tag, state) = match self {
            Hasher::Sha256(h) => (STATE_SHA256, h.serialize().to_vec()),
            Hasher::Sha512(h) => (STATE_SHA512, h.serialize().to_vec()),
        };
        let mut saved = Vec::with_capacity(1 + state.len());
        saved.push(tag);
        saved.extend_from_slice(&state);
        saved
    }

    /// A hasher continuing from [`Hasher::save`]'s output; `None` if `saved` is not one
    /// (corrupt, or from an incompatible version), in which case the caller hashes the
    /// data again.
    pub fn restore(saved: &[u8]) -> Option<Self> {
        let (&tag, state) = saved.split_first()?;
        match tag {
            STATE_SHA256 => {
                let state = SerializedState::<sha2::Sha256>::try_from(state).ok()?;
                sha2::Sha256::deserialize(&state).ok().map(Hasher::Sha256)
            }
            STATE_SHA512 => {
                let state = SerializedState::<sha2::Sha512>::try_from(state).ok()?;
                sha2::Sha512::deserialize(&state).ok().map(Hasher::Sha512)
            }
            _ => None,
        }
    }

    /// Consumes the hasher and returns the digest.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_saved_hasher_continues_where_it_stopped() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
            // Cut inside a block, on a block boundary, and at the start.
            for cut in [0, 64, 100, 128, 999] {
                let mut h = Hasher::new(algorithm);
                h.update(&data[..cut]);
                let saved = h.save();
                assert!(saved.len() < 256, "{} bytes", saved.len());
                let mut restored = Hasher::restore(&saved).expect("restores");
                restored.update(&data[cut..]);
                assert_eq!(restored.finish(), Digest::of(algorithm, &data));
            }
        }
        assert!(Hasher::restore(&[]).is_none());
        assert!(Hasher::restore(&[1, 2, 3]).is_none());
        let mut saved = Hasher::new(Algorithm::Sha256).save();
        saved[0] = 9;
        assert!(Hasher::restore(&saved).is_none());
    }

    /// Saved states outlive the process that wrote them (they are in the database): a sha2
    /// upgrade that changes their layout must be noticed here, not by uploads failing.
    #[test]
    fn the_saved_state_layout_is_stable() {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(&[0x13; 100]);
        assert_eq!(
            hex::encode(h.save()),
            "01ca01b8b161490f9889c64c64f9036cb73322c40ec8c6a2d7da3ee8877247c253010000000000000024131313131313131313131313131313131313131313131313131313131313131313131313000000000000000000000000000000000000000000000000000000"
        );
    }

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(Digest::sha256(b""), d);
    }

    #[test]
    fn sha512_of_empty() {
        let d = Digest::of(Algorithm::Sha512, b"");
        assert!(d.to_string().starts_with("sha512:cf83e1357eefb8bd"));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"hello ");
        assert_eq!(h.peek(), Digest::sha256(b"hello "));
        h.update(b"world");
        assert_eq!(h.finish(), Digest::sha256(b"hello world"));
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm("md5".into()))
        );
    }
}
