//! Parsing `/v2/…` paths into routes.
//!
//! Repository names contain `/`, so the router hands everything under `/v2/` to
//! [`Route::parse`], which reads the path from its end, where the grammar is fixed: the last
//! segments name the endpoint and everything before them is the repository name. The name
//! itself is validated later, by the registry, against the spec's grammar.

/// An endpoint of the distribution API, with the raw (not yet validated) path parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags {
        /// Repository name.
        name: &'a str,
    },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        /// Repository name.
        name: &'a str,
        /// Tag or digest.
        reference: &'a str,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob {
        /// Repository name.
        name: &'a str,
        /// Digest.
        digest: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart {
        /// Repository name.
        name: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload {
        /// Repository name.
        name: &'a str,
        /// Session id.
        id: &'a str,
    },
    /// `/v2/<name>/referrers/<digest>`
    Referrers {
        /// Repository name.
        name: &'a str,
        /// Subject digest.
        digest: &'a str,
    },
}

impl<'a> Route<'a> {
    /// Parses the part of the path after `/v2/`. Returns `None` for paths that are no endpoint.
    pub fn parse(rest: &'a str) -> Option<Route<'a>> {
        if rest.is_empty() {
            return Some(Route::Base);
        }
        if rest == "_catalog" {
            return Some(Route::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return nonempty(name).map(|name| Route::Tags { name });
        }
        if let Some(name) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return nonempty(name).map(|name| Route::UploadStart { name });
        }
        let (head, last) = rest.rsplit_once('/')?;
        let (name, kind) = head.rsplit_once('/')?;
        let name = nonempty(name)?;
        if last.is_empty() {
            return None;
        }
        match kind {
            "manifests" => Some(Route::Manifest {
                name,
                reference: last,
            }),
            "referrers" => Some(Route::Referrers { name, digest: last }),
            "uploads" => match name.strip_suffix("/blobs") {
                Some(name) if !name.is_empty() => Some(Route::Upload { name, id: last }),
                // `<name>/uploads/<digest>` is a blob of a repository named `…/uploads`.
                _ => None,
            },
            "blobs" => Some(Route::Blob { name, digest: last }),
            _ => None,
        }
    }
}

fn nonempty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(Route::parse(""), Some(Route::Base));
        assert_eq!(Route::parse("_catalog"), Some(Route::Catalog));
        assert_eq!(
            Route::parse("a/b/tags/list"),
            Some(Route::Tags { name: "a/b" })
        );
        assert_eq!(
            Route::parse("a/manifests/latest"),
            Some(Route::Manifest {
                name: "a",
                reference: "latest"
            })
        );
        assert_eq!(
            Route::parse(&format!("a/b/c/blobs/{D}")),
            Some(Route::Blob {
                name: "a/b/c",
                digest: D
            })
        );
        assert_eq!(
            Route::parse("a/b/blobs/uploads/"),
            Some(Route::UploadStart { name: "a/b" })
        );
        assert_eq!(
            Route::parse("a/b/blobs/uploads"),
            Some(Route::UploadStart { name: "a/b" })
        );
        assert_eq!(
            Route::parse("a/blobs/uploads/1234"),
            Some(Route::Upload {
                name: "a",
                id: "1234"
            })
        );
        assert_eq!(
            Route::parse(&format!("x/referrers/{D}")),
            Some(Route::Referrers {
                name: "x",
                digest: D
            })
        );
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        assert_eq!(
            Route::parse("blobs/manifests/tags/list"),
            Some(Route::Tags {
                name: "blobs/manifests"
            })
        );
        assert_eq!(
            Route::parse("manifests/blobs/manifests/v1"),
            Some(Route::Manifest {
                name: "manifests/blobs",
                reference: "v1"
            })
        );
        assert_eq!(
            Route::parse(&format!("x/blobs/uploads/blobs/{D}")),
            Some(Route::Blob {
                name: "x/blobs/uploads",
                digest: D
            })
        );
    }

    #[test]
    fn refuses_non_endpoints() {
        for bad in [
            "a",
            "a/b",
            "/manifests/x",
            "a/manifests/",
            "manifests/x",
            "tags/list",
            "a/unknown/x",
            "blobs/uploads/",
            "a/uploads/x",
        ] {
            assert_eq!(Route::parse(bad), None, "{bad:?}");
        }
    }
}
