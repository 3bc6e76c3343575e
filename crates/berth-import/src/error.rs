//! What can go wrong in an import, in the distribution spec's vocabulary where it has a
//! word for it (`MANIFEST_UNKNOWN`, `DIGEST_INVALID`, …) and in Berth's own where it has not
//! (`SOURCE_UNREACHABLE`, `SOURCE_UNAUTHORIZED`, …). Every error about the source names it.
//!
//! The codes are vocabulary, like `berth_oci::ErrorCode`; the status an error travels with,
//! when it is the answer to a request at all, is `berth-server`'s to decide. An error that
//! ends a job is kept in the job as a code, a message and a detail (see [`ImportError::code`]).

use berth_oci::manifest::ManifestError;
use berth_oci::{Digest, ErrorCode};
use berth_registry::RegistryError;
use serde_json::{Value, json};

/// Why an import could not start, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The request itself is wrong: a source or image that does not parse, plain HTTP
    /// without `insecure`, a CA bundle without a certificate.
    #[error("{0}")]
    Invalid(String),
    /// A tag to set points at another manifest already, and `force` was not given.
    #[error("{0}")]
    Conflict(String),
    /// Too many imports are waiting already.
    #[error("{0}")]
    Busy(String),
    /// The source could not be reached, or kept failing (5xx, cut connections) after retries.
    #[error("the source `{source_registry}` is unreachable: {why}")]
    Unreachable {
        /// The source registry, as the request named it.
        source_registry: String,
        /// What happened, for people.
        why: String,
    },
    /// The source asked for credentials and refused (or was given none).
    #[error("the source `{source_registry}` refused access: {why}")]
    Unauthorized {
        /// The source registry.
        source_registry: String,
        /// What happened, for people.
        why: String,
    },
    /// The source authenticated the caller but denies the repository (`403`).
    #[error("the source `{source_registry}` denied access: {why}")]
    Denied {
        /// The source registry.
        source_registry: String,
        /// What it said.
        why: String,
    },
    /// The source keeps answering `429 Too Many Requests`.
    #[error("the source `{source_registry}` is rate-limiting this registry: {why}")]
    TooManyRequests {
        /// The source registry.
        source_registry: String,
        /// What it said.
        why: String,
    },
    /// The source does not hold the manifest.
    #[error("manifest `{reference}` is not known to the source `{source_image}`")]
    ManifestUnknown {
        /// The source repository, `registry/repository`.
        source_image: String,
        /// A tag or a digest.
        reference: String,
    },
    /// The source does not hold a blob that one of its manifests references.
    #[error(
        "blob `{digest}` is not known to the source `{source_image}`, though a manifest references it"
    )]
    BlobUnknown {
        /// The source repository.
        source_image: String,
        /// The blob's digest.
        digest: Digest,
    },
    /// What the source sent does not hash to the digest it was asked for (or claimed).
    #[error("{what} from `{source_image}` hashes to `{actual}`, not `{expected}`")]
    DigestMismatch {
        /// The source repository.
        source_image: String,
        /// `blob` or `manifest`, for the message.
        what: &'static str,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// Content larger than its descriptor says, or than this registry accepts.
    #[error("{0}")]
    SizeInvalid(String),
    /// A manifest of the source that this registry cannot store.
    #[error("a manifest of `{source_image}`: {error}")]
    Manifest {
        /// The source repository.
        source_image: String,
        /// Why it was refused.
        error: ManifestError,
    },
    /// The source answered something a registry should not (an unreadable list of
    /// referrers, a token service without a token, an unexpected status).
    #[error("the source `{source_registry}` answered unexpectedly: {why}")]
    SourceInvalid {
        /// The source registry.
        source_registry: String,
        /// What was wrong.
        why: String,
    },
    /// The admin cancelled the import.
    #[error("the import was cancelled")]
    Cancelled,
    /// This registry refused or failed to store what was fetched.
    #[error(transparent)]
    Local(#[from] RegistryError),
}

impl ImportError {
    /// The code of the error as a job reports it (and as `berth-server` writes it when the
    /// error is the answer to the request that started the job).
    pub fn code(&self) -> &'static str {
        use ImportError as E;
        match self {
            E::Invalid(_) => "INVALID",
            E::Conflict(_) => "CONFLICT",
            E::Busy(_) => ErrorCode::TooManyRequests.as_str(),
            E::Unreachable { .. } => "SOURCE_UNREACHABLE",
            E::Unauthorized { .. } => "SOURCE_UNAUTHORIZED",
            E::Denied { .. } => "SOURCE_DENIED",
            E::TooManyRequests { .. } => ErrorCode::TooManyRequests.as_str(),
            E::ManifestUnknown { .. } => ErrorCode::ManifestUnknown.as_str(),
            E::BlobUnknown { .. } => ErrorCode::BlobUnknown.as_str(),
            E::DigestMismatch { .. } => ErrorCode::DigestInvalid.as_str(),
            E::SizeInvalid(_) => ErrorCode::SizeInvalid.as_str(),
            E::Manifest {
                error: ManifestError::Unsupported(_),
                ..
            } => ErrorCode::Unsupported.as_str(),
            E::Manifest { .. } => ErrorCode::ManifestInvalid.as_str(),
            E::SourceInvalid { .. } => "SOURCE_INVALID",
            E::Cancelled => "CANCELLED",
            E::Local(e) => local_code(e),
        }
    }

    /// Structured context: the source, a reference or digest.
    pub fn detail(&self) -> Option<Value> {
        use ImportError as E;
        Some(match self {
            E::Unreachable {
                source_registry, ..
            }
            | E::Unauthorized {
                source_registry, ..
            }
            | E::Denied {
                source_registry, ..
            }
            | E::TooManyRequests {
                source_registry, ..
            }
            | E::SourceInvalid {
                source_registry, ..
            } => json!({ "source": source_registry }),
            E::ManifestUnknown {
                source_image,
                reference,
            } => json!({ "source": source_image, "reference": reference }),
            E::BlobUnknown {
                source_image,
                digest,
            } => json!({ "source": source_image, "digest": digest.to_string() }),
            E::DigestMismatch {
                source_image,
                expected,
                actual,
                ..
            } => json!({
                "source": source_image,
                "expected": expected.to_string(),
                "actual": actual.to_string(),
            }),
            E::Manifest { source_image, .. } => json!({ "source": source_image }),
            _ => return None,
        })
    }

    /// The message a job shows: a failure of this registry's own storage is not described
    /// to the client (it is logged where it happened), as for any request.
    pub fn message(&self) -> String {
        match self {
            ImportError::Local(e) if e.is_internal() => {
                "internal storage error; see the registry's log".to_owned()
            }
            ImportError::Local(RegistryError::StorageFull(_)) => {
                "the registry's storage is full; import again once space is freed".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Whether the failure is this registry's (logged at error level) rather than the
    /// source's or the request's.
    pub fn is_internal(&self) -> bool {
        matches!(self, ImportError::Local(e) if e.is_internal() || matches!(e, RegistryError::StorageFull(_)))
    }
}

/// The code a local refusal carries, as the distribution API would write it.
fn local_code(e: &RegistryError) -> &'static str {
    use RegistryError as E;
    match e {
        E::NameInvalid(_) => ErrorCode::NameInvalid.as_str(),
        E::TagInvalid(_) => ErrorCode::TagInvalid.as_str(),
        E::DigestInvalid(_) | E::DigestMismatch { .. } => ErrorCode::DigestInvalid.as_str(),
        E::ManifestInvalid(ManifestError::Unsupported(_)) => ErrorCode::Unsupported.as_str(),
        E::ManifestInvalid(_) => ErrorCode::ManifestInvalid.as_str(),
        E::ManifestReferenceUnknown(_) => ErrorCode::ManifestBlobUnknown.as_str(),
        E::ManifestTooLarge { .. } => ErrorCode::SizeInvalid.as_str(),
        E::NameUnknown(_) => ErrorCode::NameUnknown.as_str(),
        E::BlobUnknown(_) => ErrorCode::BlobUnknown.as_str(),
        E::ManifestUnknown(_) => ErrorCode::ManifestUnknown.as_str(),
        E::UploadUnknown(_) => ErrorCode::BlobUploadUnknown.as_str(),
        E::UploadRangeInvalid { .. } | E::UploadInvalid(_) => ErrorCode::BlobUploadInvalid.as_str(),
        E::RepositoryBusy(_) => "CONFLICT",
        E::Io(_) | E::StorageFull(_) | E::Metadata(_) | E::BlobCollecting(_) => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_about_the_source_name_it() {
        let e = ImportError::Unauthorized {
            source_registry: "registry.example.com".into(),
            why: "wrong password".into(),
        };
        assert_eq!(e.code(), "SOURCE_UNAUTHORIZED");
        assert!(e.message().contains("registry.example.com"));
        assert_eq!(e.detail(), Some(json!({"source": "registry.example.com"})));
        let e = ImportError::ManifestUnknown {
            source_image: "registry.example.com/app".into(),
            reference: "v9".into(),
        };
        assert_eq!(e.code(), "MANIFEST_UNKNOWN");
        assert_eq!(
            e.message(),
            "manifest `v9` is not known to the source `registry.example.com/app`"
        );
    }

    #[test]
    fn storage_failures_are_not_described() {
        let e = ImportError::Local(RegistryError::Io(std::io::Error::other("disk on fire")));
        assert_eq!(e.code(), "UNKNOWN");
        assert!(!e.message().contains("fire"));
        assert!(e.is_internal());
    }
}
