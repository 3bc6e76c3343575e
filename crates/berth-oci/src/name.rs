//! Repository names, tags and manifest references, with the spec's grammars.
//!
//! Names are the one place where a client's string becomes a path component on disk and a
//! key in the database, so the grammar is checked strictly: lowercase components of
//! `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`, separated by single `/`. That rules
//! out `..`, empty components, leading or trailing slashes and anything outside ASCII.

use std::fmt;

use crate::digest::{Digest, DigestError};

/// The default maximum length of a repository name, in bytes.
pub const DEFAULT_MAX_NAME_LENGTH: usize = 255;

/// Why a name, tag or reference is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The repository name is empty.
    #[error("repository name is empty")]
    Empty,
    /// The repository name is longer than the configured limit.
    #[error("repository name is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Actual length.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// A path component is empty (`a//b`, a leading or trailing `/`).
    #[error("repository name `{0}` has an empty path component")]
    EmptyComponent(String),
    /// A path component breaks the spec's grammar.
    #[error(
        "repository name component `{component}` is invalid: use lowercase letters and digits, \
         separated by `.`, `_`, `__` or `-`"
    )]
    InvalidComponent {
        /// The offending component.
        component: String,
    },
    /// A tag breaks the spec's grammar.
    #[error(
        "tag `{0}` is invalid: up to 128 characters of `[A-Za-z0-9_.-]`, not starting with `.` or `-`"
    )]
    InvalidTag(String),
    /// A reference that looks like a digest is not a valid one.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A validated repository name such as `library/hello-world`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    /// Validates `name` against the spec's grammar and a maximum length.
    pub fn parse(name: &str, max_len: usize) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > max_len {
            return Err(NameError::TooLong {
                len: name.len(),
                max: max_len,
            });
        }
        for component in name.split('/') {
            if component.is_empty() {
                return Err(NameError::EmptyComponent(name.to_owned()));
            }
            if !valid_component(component) {
                return Err(NameError::InvalidComponent {
                    component: component.to_owned(),
                });
            }
        }
        Ok(RepositoryName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            expect_alnum = false;
            i += 1;
            continue;
        }
        if expect_alnum {
            return false;
        }
        // A separator: `.`, `_`, `__` or one or more `-`.
        let sep_len = match bytes[i] {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|&&b| b == b'-').count(),
            _ => return false,
        };
        i += sep_len;
        expect_alnum = true;
    }
    !expect_alnum
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A validated tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates a tag.
    pub fn parse(tag: &str) -> Result<Self, NameError> {
        let bytes = tag.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 128
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(tag.to_owned()))
        } else {
            Err(NameError::InvalidTag(tag.to_owned()))
        }
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What `/v2/<name>/manifests/<reference>` names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag, which may move.
    Tag(Tag),
    /// A digest, which names immutable content.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything containing `:` must be a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Result<RepositoryName, NameError> {
        RepositoryName::parse(s, DEFAULT_MAX_NAME_LENGTH)
    }

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "hello-world",
            "library/ubuntu",
            "a/b/c/d",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "0",
            "x9/y-8.z__1",
        ] {
            assert!(name(ok).is_ok(), "{ok:?} should be accepted");
        }
    }

    #[test]
    fn refuses_path_tricks_and_bad_grammar() {
        for bad in [
            "", "/", "a/", "/a", "a//b", "..", "a/../b", ".", "a/./b", "A", "a.", ".a", "a-", "-a",
            "a_", "a___b", "a..b", "a._b", "a b", "a\\b", "a%2fb", "é", "a/B",
        ] {
            assert!(name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn enforces_length() {
        let long = "a".repeat(256);
        assert_eq!(name(&long), Err(NameError::TooLong { len: 256, max: 255 }));
        assert!(name(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.0", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129), "ü"] {
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn references() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse(
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            Ok(Reference::Digest(_))
        ));
        assert!(Reference::parse("sha256:nothex").is_err());
    }
}
