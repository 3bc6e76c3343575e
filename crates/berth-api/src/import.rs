//! `/berth/v1/imports`: images copied into this registry from another registry, by the
//! registry itself, as jobs: `POST` starts one and answers at once (`202`), `GET` follows
//! it, `POST …/cancel` stops it.

use serde::{Deserialize, Serialize};

use crate::error::ErrorItem;

wire_enum! {
    /// Where an import is.
    pub enum ImportState {
        /// Waiting for a turn (a few imports run at once).
        Queued = "Queued",
        /// Copying.
        Running = "Running",
        /// Everything is stored and tagged.
        Succeeded = "Succeeded",
        /// Stopped on an error; `error` says which.
        Failed = "Failed",
        /// Stopped by the admin.
        Cancelled = "Cancelled",
    }
}

/// The body of `POST /berth/v1/imports`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportCreate {
    /// The image to copy: `registry[:port]/repository[:tag][@digest]`, or a Docker Hub
    /// name (`alpine:3.20`); `http://` or `https://` in front names the scheme.
    pub source: String,
    /// Where to: `repository[:tag]`, all in one repository (an image without a tag takes
    /// the source's); empty: the source's repository and tag.
    #[serde(default)]
    pub images: Vec<String>,
    /// User name at the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password (or access token) at the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Copy the referrers (signatures, SBOMs, attestations) too, and theirs.
    #[serde(default)]
    pub include_referrers: bool,
    /// Move a tag that points at another manifest (without it, the import fails).
    #[serde(default)]
    pub force: bool,
    /// Allow plain HTTP to a source that is not on the registry's machine.
    #[serde(default)]
    pub insecure: bool,
    /// PEM CA certificates to trust for the source, beside the system's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
}

/// An import's counters; totals grow while the manifests are read, then hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProgress {
    /// Manifests fetched from the source (the root, an index's children, referrers).
    pub manifests: u64,
    /// Manifests stored here (or found here already).
    pub manifests_done: u64,
    /// Referrers found.
    pub referrers: u64,
    /// Blobs the manifests reference, each once.
    pub blobs: u64,
    /// Blobs in place.
    pub blobs_done: u64,
    /// Blobs this registry held already (in any repository), so not fetched.
    pub blobs_reused: u64,
    /// Bytes of the blobs to fetch.
    pub bytes: u64,
    /// Bytes fetched so far.
    pub bytes_done: u64,
}

/// An import job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportView {
    /// The job's id.
    pub id: String,
    /// Where it is.
    pub state: ImportState,
    /// The source, normalised: `registry/repository[:tag][@digest]`.
    pub source: String,
    /// The local repository.
    pub repository: String,
    /// The tags it sets (none: stored by digest only).
    pub tags: Vec<String>,
    /// Whether it copies referrers.
    pub include_referrers: bool,
    /// Whether it may move tags.
    pub force: bool,
    /// The root manifest's digest, once fetched.
    pub digest: Option<String>,
    /// The root manifest's media type, once fetched.
    pub media_type: Option<String>,
    /// Its counters.
    pub progress: ImportProgress,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// When it started copying.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Why it failed: the spec's codes where they fit (`MANIFEST_UNKNOWN`, `BLOB_UNKNOWN`,
    /// `DIGEST_INVALID`, `SIZE_INVALID`, `MANIFEST_INVALID`, `UNSUPPORTED`,
    /// `TOOMANYREQUESTS`), else `SOURCE_UNREACHABLE`, `SOURCE_UNAUTHORIZED`,
    /// `SOURCE_DENIED`, `SOURCE_INVALID`, `CONFLICT` or `UNKNOWN`; `detail.source` names
    /// the source.
    pub error: Option<ErrorItem>,
}
