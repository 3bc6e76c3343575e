//! What can go wrong in the registry core, in domain terms. The HTTP layer maps each variant
//! to the distribution spec's error code and status, in one place.

use berth_oci::manifest::ManifestError;
use berth_oci::{Digest, NameError};

use crate::UploadId;
use crate::metadata::{MetadataError, Target};

/// An error of a [`crate::Registry`] operation.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository name breaks the grammar or the length limit.
    #[error(transparent)]
    NameInvalid(NameError),
    /// The tag breaks the grammar.
    #[error(transparent)]
    TagInvalid(NameError),
    /// A digest in the request is malformed or of an unsupported algorithm.
    #[error("{0}")]
    DigestInvalid(String),
    /// The repository does not exist.
    #[error("repository `{0}` is not known to this registry")]
    NameUnknown(String),
    /// The blob is not in the repository.
    #[error("blob `{0}` is not in the repository")]
    BlobUnknown(Digest),
    /// The manifest (by tag or digest) is not in the repository.
    #[error("manifest `{0}` is not in the repository")]
    ManifestUnknown(String),
    /// The upload session does not exist (or belongs to another repository, or expired).
    #[error("upload `{0}` is not known")]
    UploadUnknown(UploadId),
    /// A chunk does not start where the upload's data ends.
    #[error("the upload's data ends at byte {offset}; the next chunk must start there")]
    UploadRangeInvalid {
        /// Bytes the session holds.
        offset: u64,
    },
    /// An upload request is malformed.
    #[error("{0}")]
    UploadInvalid(String),
    /// The uploaded bytes do not hash to the digest the client named.
    #[error("the content's digest is `{actual}`, not `{expected}`")]
    DigestMismatch {
        /// Digest the client named.
        expected: Digest,
        /// Digest of what arrived.
        actual: Digest,
    },
    /// The manifest bytes are not an acceptable manifest.
    #[error(transparent)]
    ManifestInvalid(ManifestError),
    /// The manifest references content the repository does not have.
    #[error("the manifest references {0}, which is not in the repository; push it first")]
    ManifestReferenceUnknown(TargetDisplay),
    /// The manifest is larger than the configured limit.
    #[error("the manifest is {size} bytes; the limit is {max}")]
    ManifestTooLarge {
        /// Size sent.
        size: usize,
        /// Configured limit.
        max: usize,
    },
    /// Reading or writing blob bytes failed.
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
    /// Blob storage is full (no space or quota left): the server's problem, to retry later.
    #[error("the registry's storage is full: {0}")]
    StorageFull(std::io::Error),
    /// A garbage collection is deleting this blob's bytes at this moment: the push (or
    /// mount) cannot use them; pushing the blob again in a moment works.
    #[error("blob `{0}` is being garbage-collected at this moment; push it again")]
    BlobCollecting(Digest),
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// A manifest reference target, printed for people.
#[derive(Debug)]
pub struct TargetDisplay(pub Target);

impl std::fmt::Display for TargetDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Target::Blob(d) => write!(f, "blob `{d}`"),
            Target::Manifest(d) => write!(f, "manifest `{d}`"),
        }
    }
}

impl RegistryError {
    /// Whether this is the server's fault (storage failure) rather than the request's.
    pub fn is_internal(&self) -> bool {
        matches!(self, RegistryError::Io(_) | RegistryError::Metadata(_))
    }
}
