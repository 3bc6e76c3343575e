//! `/berth/v1/gc/runs`: garbage collections, started on demand or by the schedule, watched
//! while they run, and stopped.

use serde::{Deserialize, Serialize};

/// One collection: what it removed (or, for a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcRunView {
    /// Its number.
    pub id: i64,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339); `null` while it runs.
    pub finished_at: Option<String>,
    /// A dry run removes nothing: its counts are what a collection would remove now.
    pub dry_run: bool,
    /// `running`, `finished`, `stopped`, or `failed: <why>`.
    pub outcome: String,
    /// Blobs whose bytes were removed.
    pub blobs_removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Manifests deleted by retention rules.
    pub manifests_removed: u64,
    /// Tags removed by retention rules.
    pub tags_removed: u64,
    /// Abandoned upload sessions and orphan upload files removed.
    pub uploads_removed: u64,
}

/// The body of `POST /berth/v1/gc/runs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRunRequest {
    /// Only count what would be removed.
    #[serde(default)]
    pub dry_run: bool,
}
