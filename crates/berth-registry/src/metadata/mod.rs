//! Registry metadata: the second seam.
//!
//! A [`MetadataStore`] records which repositories exist, which blobs each may read,
//! manifests (with their exact bytes), tags, what manifests reference, upload sessions and
//! the change log. Two implementations: [`SqliteMetadata`], embedded (the default), and
//! [`PostgresMetadata`], shared by several nodes; the same SQL where the dialects agree.
//!
//! Architecture invariants, kept by every implementation:
//! - a manifest row exists only if every blob and child manifest it references is present in
//!   the same repository, checked in the same transaction that inserts it;
//! - every change to repository content appends a [`Change`] in the same transaction, with a
//!   strictly increasing sequence number;
//! - a tag always names a manifest of its repository (deleting the manifest deletes its tags).

mod postgres;
mod sql;
mod sqlite;

use async_trait::async_trait;
use berth_oci::{Digest, RepositoryName, Tag};
use bytes::Bytes;
use serde::Serialize;

pub use postgres::PostgresMetadata;
pub use sqlite::SqliteMetadata;

/// What the metadata store holds, in counts ([`MetadataStore::content_totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentTotals {
    /// Repositories.
    pub repositories: u64,
    /// Manifests, in every repository.
    pub manifests: u64,
    /// Distinct blobs whose bytes are stored (not being deleted).
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Upload sessions open.
    pub uploads: u64,
}

pub use crate::change::{Change, ChangeAction, ChangeEvent, Origin};

use crate::UploadId;

/// A failure of the metadata store itself (I/O, corruption): never the caller's fault.
#[derive(Debug, thiserror::Error)]
#[error("metadata store: {0}")]
pub struct MetadataError(#[from] pub Box<dyn std::error::Error + Send + Sync>);

/// Result of a metadata operation.
pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Digest of [`StoredManifest::content`].
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: String,
    /// The exact bytes pushed.
    pub content: Bytes,
}

/// What the referrers API lists for a manifest that has a `subject`.
#[derive(Debug, Clone, Serialize)]
pub struct Referrer {
    /// The referrer's media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The referrer's digest.
    pub digest: Digest,
    /// The referrer's size.
    pub size: u64,
    /// Its `artifactType`, or its config's media type.
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Value>,
}

/// Something a manifest references, which must exist in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A blob (config or layer).
    Blob(Digest),
    /// A child manifest (of an index).
    Manifest(Digest),
}

/// A manifest to store, already parsed and validated.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// Repository it goes to (created if needed).
    pub repository: RepositoryName,
    /// Digest of `content`, verified by the caller.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// The exact bytes pushed.
    pub content: Bytes,
    /// `artifactType`, or the config's media type, for the referrers API.
    pub artifact_type: Option<String>,
    /// The digest of `subject`, if any.
    pub subject: Option<Digest>,
    /// Annotations as JSON, for the referrers API.
    pub annotations: Option<serde_json::Value>,
    /// Everything it references.
    pub references: Vec<Target>,
    /// Tags to point at it, in the same transaction.
    pub tags: Vec<Tag>,
    /// Where the push came from, recorded in the change log.
    pub origin: Origin,
}

/// Why a manifest was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutManifestError {
    /// A referenced blob or manifest is not in the repository.
    #[error("manifest references `{0:?}`, which is not in the repository")]
    UnknownTarget(Target),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] MetadataError),
}

/// An upload session as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// Session id.
    pub id: UploadId,
    /// Repository the upload is for.
    pub repository: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Bytes received so far, as of the last recorded append.
    pub received: u64,
    /// The hash state of exactly those bytes ([`berth_oci::Hasher::save`]); `None` when it
    /// must be rebuilt from the stored bytes.
    pub hash_state: Option<Vec<u8>>,
    /// When the last append was recorded, Unix seconds.
    pub updated_at: Option<i64>,
}

/// A blob as garbage collection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last claimed for storing, or linked, Unix milliseconds.
    pub updated_at: i64,
}

/// Which life of a blob's record a claim was made in. A record gets a new generation
/// whenever its bytes may have been deleted since the last one: when it is created again after
/// a collection forgot it, or taken over from a collection that crashed. Bytes placed under a
/// claim are linked only if the generation is still the same, so a writer never links bytes
/// a collection deleted under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobGeneration(pub i64);

impl BlobGeneration {
    /// A fresh one (random: a record deleted and made again must not get its old one back).
    pub fn fresh() -> Self {
        BlobGeneration(uuid::Uuid::new_v4().as_u64_pair().0 as i64)
    }
}

/// Whether a blob may be stored now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobClaim {
    /// Claimed: no collection will remove it before it is linked (nor for the grace after),
    /// if it is linked with [`LinkSource::Placed`] and this generation.
    Claimed(BlobGeneration),
    /// A collection is deleting its bytes right now: store it again once that is over.
    Collecting,
}

/// What vouches for a blob's bytes when it is linked into a repository: a link is refused
/// (nothing written) unless it still holds in the same transaction.
#[derive(Debug, Clone, Copy)]
pub enum LinkSource<'a> {
    /// Bytes placed in the blob store under this claim (and the upload session they came
    /// from, forgotten in the same step): holds while the record is `present` in the
    /// claim's generation.
    Placed {
        /// The claim made before the bytes were placed.
        claim: BlobGeneration,
        /// The upload session, if any.
        upload: Option<&'a UploadId>,
    },
    /// This repository links the blob (a cross-repository mount): holds while it does.
    Repository(&'a RepositoryName),
    /// Some repository links the blob (a connected registry taking bytes it already has):
    /// holds while one does. A collection removes every link of a blob in the step that
    /// marks it, so a link anywhere means its bytes are there.
    AnyRepository,
}

/// One garbage collection, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct GcRun {
    /// Its number.
    pub id: i64,
    /// When it started, Unix seconds.
    pub started_at: i64,
    /// When it ended, Unix seconds; `None` while it runs.
    pub finished_at: Option<i64>,
    /// A dry run: what it would remove, removing nothing.
    pub dry_run: bool,
    /// `running`, `finished`, `stopped`, or `failed: <why>`.
    pub outcome: String,
    /// Blobs whose bytes were removed (or would be).
    pub blobs_removed: u64,
    /// Bytes freed (or that would be).
    pub bytes_freed: u64,
    /// Manifests deleted by retention rules (or that would be).
    pub manifests_removed: u64,
    /// Tags removed by retention rules (or that would be).
    pub tags_removed: u64,
    /// Abandoned upload sessions and orphan upload files removed.
    pub uploads_removed: u64,
}

/// Which rows of a listing to read: a page in the listing's order, or one row by its key.
///
/// Each listing has a key (a repository's name, a tag, a manifest's digest) and a time (a
/// repository's creation, a tag's last update, a manifest's push).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'a> {
    /// Up to `n` rows whose key comes after `last` (from the start without it), in
    /// lexical order of key.
    Page {
        /// The key the previous page ended with.
        last: Option<&'a str>,
        /// The most rows to read.
        n: u32,
    },
    /// Up to `n` rows in order of time, newest or oldest first, rows of the same time in
    /// lexical order of key; after `last`, the time and key the previous page ended with.
    ByTime {
        /// Newest first (else oldest first).
        newest_first: bool,
        /// The time and key the previous page ended with.
        last: Option<(i64, &'a str)>,
        /// The most rows to read.
        n: u32,
    },
    /// The one row with this key, if there is one.
    One(&'a str),
}

/// A repository as the management API describes it: what it holds, and when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySummary {
    /// Its name.
    pub name: RepositoryName,
    /// When it was created (its first blob or manifest), Unix seconds.
    pub created_at: i64,
    /// When its content last changed as far as the store knows (a push, a tag moved or
    /// removed, a deletion still in the change log), Unix seconds.
    pub updated_at: i64,
    /// How many manifests it holds.
    pub manifest_count: u64,
    /// How many tags it holds.
    pub tag_count: u64,
    /// How many blobs it links.
    pub blob_count: u64,
    /// Bytes of every blob it links (each once) and of its manifests.
    pub size: u64,
}

/// A tag and the manifest it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDetail {
    /// The tag.
    pub tag: Tag,
    /// The manifest it names.
    pub digest: Digest,
    /// That manifest's media type.
    pub media_type: String,
    /// Bytes of that manifest, of the blobs it references and, for an index, of its child
    /// manifests and their blobs (each blob once).
    pub size: u64,
    /// When the tag was last pointed at a manifest, Unix seconds.
    pub updated_at: i64,
}

/// A manifest with what the management API lists of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDetail {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its `artifactType`, or its config's media type.
    pub artifact_type: Option<String>,
    /// The manifest it refers to (signatures, SBOMs), if any.
    pub subject: Option<Digest>,
    /// Bytes of the manifest, of the blobs it references and, for an index, of its child
    /// manifests and their blobs (each blob once).
    pub size: u64,
    /// The tags naming it, in lexical order.
    pub tags: Vec<Tag>,
    /// When it was stored, Unix seconds.
    pub created_at: i64,
    /// Its bytes when it references other manifests (an index), to list its children;
    /// `None` for any other manifest.
    pub index_content: Option<Bytes>,
}

/// What [`MetadataStore::delete_empty_repository`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryRemoval {
    /// The repository is gone, with this many blob links.
    Removed {
        /// Blob links removed with it.
        blob_links: u64,
    },
    /// It still holds manifests (pushed since they were deleted): nothing was removed.
    NotEmpty,
    /// There is no such repository.
    Unknown,
}

/// Background work that runs in one process at a time among all those sharing a store
/// (several nodes on one PostgreSQL database): see [`MetadataStore::try_exclusive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exclusive {
    /// A garbage collection (scheduled or on demand).
    GarbageCollection,
    /// Removing abandoned upload sessions.
    UploadSweep,
    /// Pruning the change log.
    ChangeLogPruning,
    /// Delivering webhooks (`berth-events`): one deliverer follows the log for all nodes.
    WebhookDelivery,
    /// Pruning the audit log (in the identity store, which all nodes share with this one).
    AuditPruning,
}

/// The right to run an [`Exclusive`] task, held until dropped (or until the process dies:
/// a store shared by several processes releases it with the holder's connection).
pub struct ExclusiveGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl ExclusiveGuard {
    /// A guard that releases by dropping `held`.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        ExclusiveGuard(Box::new(held))
    }
}

impl std::fmt::Debug for ExclusiveGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExclusiveGuard")
    }
}

/// Storage for everything but blob bytes.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Whether other processes (other nodes) may write to this store while this one runs:
    /// then nothing read from it may be kept in memory and served later without asking it
    /// again (a client may write through one node and read through another at once).
    fn shared(&self) -> bool {
        false
    }

    /// Takes the right to run `task` if no one else holds it, among every process sharing
    /// this store; `None` if another holds it (skip this turn, or say so).
    async fn try_exclusive(&self, task: Exclusive) -> Result<Option<ExclusiveGuard>>;

    /// Whether the repository exists.
    async fn repository_exists(&self, repository: &RepositoryName) -> Result<bool>;

    /// Up to `n` repository names after `last`, in lexical order.
    async fn repositories(&self, last: Option<&str>, n: u32) -> Result<Vec<String>>;

    /// Makes a blob readable in a repository (creating the repository if needed), and
    /// forgets the upload session it came from, if any, in one transaction; the blob's
    /// garbage-collection clock restarts. Returns `false`, having written nothing, if
    /// `source` no longer vouches for the bytes (a collection is deleting them, or deleted
    /// them since the claim).
    async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        size: u64,
        source: LinkSource<'_>,
    ) -> Result<bool>;

    /// The size of a blob readable in the repository.
    async fn blob_size(&self, repository: &RepositoryName, digest: &Digest) -> Result<Option<u64>>;

    /// Makes a blob unreadable in a repository. Returns whether it was linked.
    async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool>;

    /// Whether any repository still links the blob (its bytes are still needed).
    async fn blob_in_use(&self, digest: &Digest) -> Result<bool>;

    /// Stores a manifest and points its tags at it, after checking its references.
    async fn put_manifest(&self, manifest: NewManifest) -> Result<(), PutManifestError>;

    /// A manifest by digest.
    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>>;

    /// The manifest a tag points to.
    async fn tagged_manifest(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<StoredManifest>>;

    /// Deletes a manifest and every tag pointing at it. Returns whether it existed.
    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        origin: Origin,
    ) -> Result<bool>;

    /// Deletes a tag (not the manifest). Returns whether it existed.
    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        origin: Origin,
    ) -> Result<bool>;

    /// Up to `n` tags after `last`, in lexical order; `None` if the repository is unknown.
    async fn tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        n: u32,
    ) -> Result<Option<Vec<String>>>;

    /// Digests of every manifest of the repository.
    async fn manifest_digests(&self, repository: &RepositoryName) -> Result<Vec<Digest>>;

    /// Manifests of the repository whose `subject` is `digest`.
    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Referrer>>;

    /// Up to `limit` changes with a sequence number greater than `after`, in order.
    async fn changes(&self, after: i64, limit: u32) -> Result<Vec<Change>>;

    /// The digest `tag` of `repository` had as last set by content sync from the parent before
    /// change `before` (`None` if the parent never set it, or deleted it).
    async fn parent_tag_before(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        before: i64,
    ) -> Result<Option<Digest>>;

    /// The first and last sequence numbers the change log holds (0 when it is empty).
    async fn change_bounds(&self) -> Result<(i64, i64)>;

    /// Removes changes older than `before` (Unix seconds), always keeping the last one.
    /// Returns how many were removed.
    async fn prune_changes(&self, before: i64) -> Result<u64>;

    /// Records a new upload session.
    async fn create_upload(&self, id: &UploadId, repository: &RepositoryName) -> Result<()>;

    /// An upload session.
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>>;

    /// Records an upload session's progress, only if it still has `expected` bytes: the
    /// session now holds `received` bytes, whose hash state is `hash_state`. Returns whether
    /// it did (`false`: another writer moved the session on, or it is gone). Called once per
    /// request of a chunked upload, so it may be less durable than other writes (no fsync
    /// of its own; PostgreSQL: `synchronous_commit = off`): a row left behind its bytes by
    /// a power loss is repaired from the bytes.
    async fn update_upload(
        &self,
        id: &UploadId,
        expected: u64,
        received: u64,
        hash_state: Option<&[u8]>,
    ) -> Result<bool>;

    /// Forgets an upload session.
    async fn delete_upload(&self, id: &UploadId) -> Result<()>;

    /// Every recorded upload session.
    async fn uploads(&self) -> Result<Vec<UploadRecord>>;

    // ----- garbage collection -----
    //
    // The protocol (ARCHITECTURE.md, "Garbage collection"): a writer claims a blob before
    // placing its bytes, and links it after; a collection turns a blob to `deleting` only if
    // it is unchanged since seen and nothing references it, deletes the bytes, then forgets
    // the blob. A claim or link meets `deleting` and is refused, never the other way round.

    /// Claims `digest` (of `size` bytes) before its bytes are placed in the blob store: a
    /// collection will not remove it until it is linked, and the grace after. Refused while a
    /// collection deletes it; a `deleting` mark older than `stale_ms` (a collection that
    /// crashed) is taken over, in a new generation.
    async fn claim_blob(&self, digest: &Digest, size: u64, stale_ms: i64) -> Result<BlobClaim>;

    /// Records blob files the store holds that have no record (left by a crash between the
    /// bytes and the record, or from before records were kept), as last changed at the
    /// given time (Unix milliseconds). Known digests are left as they are.
    async fn record_blob_files(&self, files: &[(Digest, u64, i64)]) -> Result<()>;

    /// Up to `limit` blobs after `after` (in digest order) that no manifest references and
    /// that were last claimed or linked before `before_ms` (links with no manifest naming the
    /// blob protect it for the grace only: a push links its blobs before its manifest).
    async fn unreferenced_blobs(
        &self,
        before_ms: i64,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<BlobRecord>>;

    /// Marks each of `blobs` as being deleted, at `now_ms`, and removes its repository
    /// links, if it is exactly as seen (same `updated_at`) and no manifest references it, in
    /// one transaction (each blob is decided on its own). Returns the digests it marked.
    async fn begin_collect(&self, blobs: &[BlobRecord], now_ms: i64) -> Result<Vec<Digest>>;

    /// Forgets blobs whose bytes were deleted (those still marked as being deleted).
    async fn end_collect(&self, digests: &[Digest]) -> Result<()>;

    /// Blobs marked as being deleted since before `before_ms`: left by a collection that
    /// stopped part way (a crash); the next collection finishes them.
    async fn stale_collections(&self, before_ms: i64) -> Result<Vec<BlobRecord>>;

    /// Starts recording a collection; returns its number.
    async fn start_gc_run(&self, started_at: i64, dry_run: bool) -> Result<i64>;

    /// Records a collection's progress or end (by `run.id`); keeps the last 50 runs.
    async fn update_gc_run(&self, run: &GcRun) -> Result<()>;

    /// The last `limit` collections, newest first.
    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>>;

    // ----- observability: metrics and readiness -----

    /// How much the store holds (repositories, manifests, blobs and their bytes, upload
    /// sessions), for metrics; a few counting queries, read at most every few seconds.
    async fn content_totals(&self) -> Result<ContentTotals>;

    /// Fails unless the store takes writes now: takes the write lock and lets it go, writing
    /// nothing (a readiness check, run on every `/readyz`).
    async fn check_writable(&self) -> Result<()>;

    /// Every tag of `repository` with the manifest it names and when it was last moved (Unix
    /// seconds), for retention rules.
    async fn tag_history(&self, repository: &RepositoryName) -> Result<Vec<(Tag, Digest, i64)>>;

    /// The manifests of `repository` nothing needs: no tag, no other manifest of the
    /// repository naming them (an index's child), and no subject still there (a referrer
    /// of a manifest that stays).
    async fn dangling_manifests(&self, repository: &RepositoryName) -> Result<Vec<Digest>>;

    // ----- repository management (`berth repository …`) -----

    /// Repositories in lexical order of name, with their counts, sizes and times.
    async fn repository_summaries(&self, select: Selection<'_>) -> Result<Vec<RepositorySummary>>;

    /// Tags of `repository` in lexical order, each with its manifest's digest, media type
    /// and size; `None` if the repository is unknown.
    async fn tag_details(
        &self,
        repository: &RepositoryName,
        select: Selection<'_>,
    ) -> Result<Option<Vec<TagDetail>>>;

    /// Manifests of `repository` in lexical order of digest, each with its size, tags and
    /// (for an index) bytes; `None` if the repository is unknown.
    async fn manifest_details(
        &self,
        repository: &RepositoryName,
        select: Selection<'_>,
    ) -> Result<Option<Vec<ManifestDetail>>>;

    /// Removes a repository that holds no manifest, with its blob links, and logs a
    /// [`ChangeEvent::RepositoryDelete`] from `origin`, in one transaction; the bytes of
    /// blobs nothing references any more are left to garbage collection. A repository that
    /// holds manifests is left as it is (and nothing is logged).
    async fn delete_empty_repository(
        &self,
        repository: &RepositoryName,
        origin: Origin,
    ) -> Result<RepositoryRemoval>;
}
