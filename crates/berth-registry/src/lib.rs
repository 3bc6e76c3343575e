//! The registry core: everything Berth knows about content, and nothing about HTTP.
//!
//! Layout:
//! - [`blob`]: the [`BlobStore`] seam (content-addressed bytes, upload data) and
//!   [`FsBlobStore`] on local disk;
//! - [`metadata`]: the [`MetadataStore`] seam (repositories, manifests, tags, references,
//!   upload sessions, the change log), [`SqliteMetadata`] (embedded) and
//!   [`PostgresMetadata`] (shared by several nodes);
//! - [`change`]: the change log's entries, [`Change`] (typed: validated names and digests,
//!   an action with exactly its fields) and [`ChangePage`], the gateway's `messages` body;
//! - [`registry`]: [`Registry`], the operations of the distribution API on top of both:
//!   hashing as bytes stream through, digest checks, manifest validation, a read cache, and
//!   each committed content change announced through a [`berth_notify::Notifier`];
//! - [`error`]: [`RegistryError`], what can go wrong, in domain terms;
//! - `contract` (feature `contract-tests`): the suites every store implementation runs.
//!
//! Callers (the HTTP layer, later the sync engine) use [`Registry`] only; the two stores are
//! traits so that object storage and PostgreSQL can replace them without touching callers.

pub mod blob;
mod cache;
pub mod change;
#[cfg(feature = "contract-tests")]
pub mod contract;
pub mod error;
pub mod gc;
pub mod metadata;
pub mod registry;

use std::fmt;
use std::str::FromStr;

pub use blob::{BlobStore, ByteStream, FsBlobStore};
pub use change::{Change, ChangeAction, ChangeEvent, ChangePage, Origin};
pub use error::RegistryError;
pub use metadata::{
    BlobClaim, BlobGeneration, BlobRecord, ContentTotals, Exclusive, ExclusiveGuard, GcRun,
    LinkSource, ManifestDetail, MetadataStore, PostgresMetadata, Referrer, RepositoryRemoval,
    RepositorySummary, Selection, SqliteMetadata, StoredManifest, TagDetail,
};
pub use registry::{
    Blob, ManifestInfo, ManifestPushed, Registry, RegistryConfig, RepositoryDeleted, Uploads,
};

/// The id of an upload session: a random UUID, also its `Docker-Upload-UUID`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    /// A fresh random id.
    pub fn new() -> Self {
        UploadId(uuid::Uuid::new_v4())
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for UploadId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the hyphenated lowercase form we hand out: the id becomes a file name.
        let id = uuid::Uuid::try_parse(s)?;
        if id.hyphenated().to_string() != s {
            return Err(uuid::Uuid::try_parse("not-a-uuid").unwrap_err());
        }
        Ok(UploadId(id))
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
