//! Where an image comes from: `--source` in the forms people write, read the way docker
//! reads them.
//!
//! - `registry.example.com[:port]/team/app:1.0`: a registry (the first component, when it
//!   has a `.` or a `:`, is `localhost`, or has uppercase letters), a repository and a tag;
//! - `…/app@sha256:…`, or `…/app:1.0@sha256:…`: by digest (the digest wins; the tag names
//!   the default target);
//! - `alpine:3.20`, `library/alpine`, `docker.io/alpine`: Docker Hub, whose one-component
//!   names live under `library/`, served from `registry-1.docker.io`;
//! - no tag and no digest means `latest`;
//! - `http://` or `https://` in front names the scheme; without one, HTTPS is used, except
//!   for loopback addresses and with `insecure`, which use plain HTTP (as `berth login`
//!   does). Plain HTTP to a host that is not loopback needs `insecure`: credentials and
//!   content would cross the network unprotected. `docker://` in front is ignored.
//!
//! "Loopback" is seen from the registry, which is what connects.

use std::fmt;
use std::net::IpAddr;

use berth_oci::name::DEFAULT_MAX_NAME_LENGTH;
use berth_oci::{Digest, Reference, RepositoryName, Tag};
use reqwest::Url;

use crate::error::ImportError;

/// Docker Hub as people name it.
const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed `--source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReference {
    /// The registry as named (`registry.example.com:5000`, `docker.io`).
    pub registry: String,
    /// Where its registry API answers: `https://registry-1.docker.io`.
    pub base: Url,
    /// The repository at the source.
    pub repository: RepositoryName,
    /// The tag, if one was named (or implied: `latest`).
    pub tag: Option<Tag>,
    /// The digest, if one was named.
    pub digest: Option<Digest>,
}

impl SourceReference {
    /// Parses `input`; `insecure` allows plain HTTP to a registry that is not loopback.
    pub fn parse(input: &str, insecure: bool) -> Result<Self, ImportError> {
        let invalid = |why: String| {
            ImportError::Invalid(format!(
                "the source `{input}` is not an image reference: {why}"
            ))
        };
        let mut rest = input.trim();
        rest = rest.strip_prefix("docker://").unwrap_or(rest);
        let scheme = ["http", "https"].into_iter().find(|s| {
            rest.len() > s.len() + 3 && rest[..s.len() + 3].eq_ignore_ascii_case(&format!("{s}://"))
        });
        if let Some(s) = scheme {
            rest = &rest[s.len() + 3..];
        }
        if rest.is_empty() {
            return Err(invalid("it is empty".into()));
        }
        let (named, digest) = match rest.split_once('@') {
            Some((named, digest)) => {
                let digest = digest
                    .parse::<Digest>()
                    .map_err(|e| invalid(format!("`{digest}` is not a digest ({e})")))?;
                (named, Some(digest))
            }
            None => (rest, None),
        };
        // The registry: a first component that cannot be a repository's.
        let (registry, path) = match named.split_once('/') {
            Some((first, path))
                if scheme.is_some()
                    || first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_owned(), path)
            }
            _ if scheme.is_some() => {
                return Err(invalid(
                    "name a repository after the registry, e.g. `https://registry.example.com/team/app:1.0`".into(),
                ));
            }
            _ => (DOCKER_HUB.to_owned(), named),
        };
        let registry = if registry.eq_ignore_ascii_case("index.docker.io") {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        // The tag: after a `:` of the last path component (a port's `:` is in the registry).
        let (path, tag) = match path.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') => {
                let tag = Tag::parse(tag).map_err(|e| invalid(e.to_string()))?;
                (path, Some(tag))
            }
            _ => (path, None),
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        let repository = RepositoryName::parse(&path, DEFAULT_MAX_NAME_LENGTH)
            .map_err(|e| invalid(e.to_string()))?;
        let tag = match (tag, &digest) {
            (None, None) => Some(Tag::parse("latest").expect("`latest` is a tag")),
            (tag, _) => tag,
        };
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry.as_str()
        };
        let loopback = is_loopback(host);
        let scheme = match scheme {
            Some(s) => s,
            None if loopback || insecure => "http",
            None => "https",
        };
        if scheme == "http" && !loopback && !insecure {
            return Err(ImportError::Invalid(format!(
                "refusing plain HTTP to `{registry}`, which is not on this registry's machine: credentials and content would cross the network unprotected; use https://, or pass insecure (--source-insecure) to accept it"
            )));
        }
        let base = Url::parse(&format!("{scheme}://{host}"))
            .map_err(|e| invalid(format!("`{registry}` is not a registry address ({e})")))?;
        if base.host_str().is_none() || !base.username().is_empty() || base.path() != "/" {
            return Err(invalid(format!("`{registry}` is not a registry address")));
        }
        Ok(SourceReference {
            registry,
            base,
            repository,
            tag,
            digest,
        })
    }

    /// What to fetch: the digest when one was named, else the tag.
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => Reference::Digest(digest.clone()),
            (None, Some(tag)) => Reference::Tag(tag.clone()),
            (None, None) => unreachable!("a source without a digest has a tag"),
        }
    }

    /// `registry/repository`, for messages.
    pub fn image(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether the registry is reached over plain HTTP.
    pub fn is_plain_http(&self) -> bool {
        self.base.scheme() == "http"
    }
}

impl fmt::Display for SourceReference {
    /// `registry/repository[:tag][@digest]`, with `http://` in front for plain HTTP to a
    /// host that is not loopback.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_plain_http() && !is_loopback(&self.registry) {
            f.write_str("http://")?;
        }
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `host` (with an optional port) names this machine.
pub fn is_loopback(host: &str) -> bool {
    let host = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SourceReference {
        SourceReference::parse(s, false).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn registry_repository_and_tag() {
        let s = parse("registry.example.com:5000/team/app:1.0");
        assert_eq!(s.registry, "registry.example.com:5000");
        assert_eq!(s.base.as_str(), "https://registry.example.com:5000/");
        assert_eq!(s.repository.as_str(), "team/app");
        assert_eq!(s.reference().to_string(), "1.0");
        assert_eq!(s.to_string(), "registry.example.com:5000/team/app:1.0");
        let s = parse("registry.example.com/app");
        assert_eq!(s.tag.unwrap().as_str(), "latest");
    }

    #[test]
    fn digests_win_over_tags() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let s = parse(&format!("127.0.0.1:5001/app@{digest}"));
        assert_eq!(s.tag, None);
        assert_eq!(s.reference().to_string(), digest);
        let s = parse(&format!("127.0.0.1:5001/app:v1@{digest}"));
        assert_eq!(s.tag.as_ref().unwrap().as_str(), "v1");
        assert_eq!(s.reference().to_string(), digest);
        assert!(SourceReference::parse("127.0.0.1:5001/app@sha256:abc", false).is_err());
    }

    #[test]
    fn docker_hub_names() {
        for input in [
            "alpine",
            "alpine:latest",
            "library/alpine",
            "docker.io/alpine",
            "docker.io/library/alpine:latest",
            "index.docker.io/library/alpine",
            "docker://alpine",
        ] {
            let s = parse(input);
            assert_eq!(s.registry, "docker.io", "{input}");
            assert_eq!(s.repository.as_str(), "library/alpine", "{input}");
            assert_eq!(s.base.as_str(), "https://registry-1.docker.io/", "{input}");
            assert_eq!(s.to_string(), "docker.io/library/alpine:latest", "{input}");
        }
        let s = parse("bitnami/redis:7.2");
        assert_eq!(s.registry, "docker.io");
        assert_eq!(s.repository.as_str(), "bitnami/redis");
    }

    #[test]
    fn schemes_and_loopback() {
        assert_eq!(
            parse("127.0.0.1:5001/app:v1").base.as_str(),
            "http://127.0.0.1:5001/"
        );
        assert_eq!(
            parse("localhost:5001/app").base.as_str(),
            "http://localhost:5001/"
        );
        assert_eq!(parse("[::1]:5001/app").base.as_str(), "http://[::1]:5001/");
        assert_eq!(parse("localhost/app").base.as_str(), "http://localhost/");
        assert_eq!(
            parse("https://127.0.0.1:5001/app").base.as_str(),
            "https://127.0.0.1:5001/"
        );
        // Plain HTTP elsewhere only when asked for.
        let refused = SourceReference::parse("http://10.0.0.5:5000/app", false).unwrap_err();
        assert!(
            refused.to_string().contains("refusing plain HTTP"),
            "{refused}"
        );
        let s = SourceReference::parse("http://10.0.0.5:5000/app", true).unwrap();
        assert!(s.is_plain_http());
        assert_eq!(s.to_string(), "http://10.0.0.5:5000/app:latest");
        let s = SourceReference::parse("10.0.0.5:5000/app", true).unwrap();
        assert!(s.is_plain_http());
        assert!(!parse("10.0.0.5:5000/app").is_plain_http());
    }

    #[test]
    fn malformed_sources() {
        for input in [
            "",
            "https://registry.example.com",
            "registry.example.com/App",
            "registry.example.com/app:bad tag",
            "registry.example.com//app",
            "user:pass@registry.example.com/app",
            "registry.example.com:port/app",
        ] {
            let e = SourceReference::parse(input, false)
                .err()
                .unwrap_or_else(|| panic!("`{input}` must be refused"));
            assert_eq!(e.code(), "INVALID", "{input}");
        }
    }
}
