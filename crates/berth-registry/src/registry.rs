//! [`Registry`]: the distribution API's operations over a [`BlobStore`] and a
//! [`MetadataStore`].
//!
//! A registry owns three parts with narrow interfaces of their own, and hands each out:
//! upload sessions, [`Uploads`] (the `upload` module, [`Registry::uploads`]); repositories as
//! a whole for the management API, [`Repositories`] (the `repositories` module,
//! [`Registry::repositories`]); and the garbage collector, [`Gc`] ([`Registry::gc`]). Each
//! holds the stores it needs and nothing else; the two that delete manifests do it through
//! the one `Deletions` the registry's own `DELETE`s use, so every deletion is a change-log
//! entry and a notification.
//!
//! Architecture invariants kept here (and in [`Uploads`]):
//! - bytes are hashed as they stream in, once: a chunked upload keeps its hash state between
//!   requests, in its metadata row (and rebuilds it from the stored data only when the row
//!   has none, or lags the data after a crash);
//! - a blob is linked into a repository only after its digest checked out and the store made
//!   it durable; a manifest is stored only after validation, digest check and (in the
//!   metadata transaction) the presence of everything it references;
//! - blob bytes are never deleted on request: a blob `DELETE` unlinks it from the repository,
//!   and bytes no repository links are left for garbage collection, so a concurrent push of
//!   the same content can never lose its bytes.

mod health;
mod repositories;
mod upload;

pub use repositories::{ManifestInfo, Repositories, RepositoryDeleted};
pub use upload::Uploads;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_notify::{LocalNotifier, Notifier, Subscription, Topic};
use berth_oci::manifest::ManifestError;
use berth_oci::name::DEFAULT_MAX_NAME_LENGTH;
use berth_oci::time::unix_now;
use berth_oci::{Digest, Manifest, Reference, RepositoryName, Tag};
use bytes::Bytes;

use crate::blob::{BlobStore, ByteStream, FsBlobStore};
use crate::cache::ManifestCache;
use crate::error::{RegistryError, TargetDisplay};
use crate::gc::Gc;
use crate::metadata::LinkSource;
use crate::metadata::{
    Change, Exclusive, ExclusiveGuard, MetadataStore, NewManifest, Origin, PutManifestError,
    Referrer, RepositoryRemoval, SqliteMetadata, StoredManifest, Target,
};

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Limits and ages, parsed once from configuration.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_size: usize,
    /// Longest repository name accepted, in bytes.
    pub max_name_length: usize,
    /// Upload sessions idle for longer than this are removed.
    pub upload_max_age: Duration,
}

impl RegistryConfig {
    /// Validates a repository name against the grammar and the configured length.
    pub fn repository_name(&self, name: &str) -> Result<RepositoryName> {
        RepositoryName::parse(name, self.max_name_length).map_err(RegistryError::NameInvalid)
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_manifest_size: 4 << 20,
            max_name_length: DEFAULT_MAX_NAME_LENGTH,
            upload_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a manifest push stored.
#[derive(Debug, Clone)]
pub struct ManifestPushed {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its `subject`, if it has one (for the `OCI-Subject` header).
    pub subject: Option<Digest>,
}

/// A blob that a repository may read; [`Blob::read`] streams it.
pub struct Blob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    store: Arc<dyn BlobStore>,
}

impl Blob {
    /// Streams the blob, or `range` of it (which the caller checked against [`Blob::size`]).
    pub async fn read(&self, range: Option<Range<u64>>) -> Result<ByteStream<'static>> {
        self.store
            .read(&self.digest, range)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(self.digest.clone()))
    }
}

/// The registry: every distribution API operation, over the two stores.
pub struct Registry {
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) metadata: Arc<dyn MetadataStore>,
    pub(crate) config: RegistryConfig,
    /// Upload sessions, over the same stores (shared with the collector, which sweeps them).
    uploads: Arc<Uploads>,
    /// Repositories as a whole: listings and deletions for the management API.
    repositories: Repositories,
    /// The garbage collector (one collection at a time).
    gc: Gc,
    /// Manifest and tag deletions, announced through the notifier.
    deletions: Deletions,
    cache: ManifestCache,
    /// Announces every committed content change ([`Topic::Content`]): to those following
    /// the change log, and to the manifest cache, whose generation it is.
    notifier: Arc<dyn Notifier>,
}

impl Registry {
    /// A registry over the given stores, announcing its changes in process (a
    /// [`LocalNotifier`]; see [`Registry::with_notifier`]).
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        metadata: Arc<dyn MetadataStore>,
        config: RegistryConfig,
    ) -> Self {
        let uploads = Arc::new(Uploads::new(
            Arc::clone(&blobs),
            Arc::clone(&metadata),
            config.upload_max_age,
        ));
        Registry::assemble(
            blobs,
            metadata,
            config,
            uploads,
            Arc::new(LocalNotifier::new()),
        )
    }

    /// The registry's parts around its stores, its upload sessions and `notifier`.
    fn assemble(
        blobs: Arc<dyn BlobStore>,
        metadata: Arc<dyn MetadataStore>,
        config: RegistryConfig,
        uploads: Arc<Uploads>,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        let deletions = Deletions {
            metadata: Arc::clone(&metadata),
            notifier: Arc::clone(&notifier),
        };
        Registry {
            repositories: Repositories::new(Arc::clone(&metadata), deletions.clone()),
            gc: Gc::new(
                Arc::clone(&blobs),
                Arc::clone(&metadata),
                Arc::clone(&uploads),
                deletions.clone(),
                config.clone(),
            ),
            deletions,
            uploads,
            blobs,
            metadata,
            config,
            cache: ManifestCache::default(),
            notifier,
        }
    }

    /// The registry, announcing its content changes through `notifier` (shared with the
    /// other parts of the process, or with other nodes) and following its generations. A
    /// step of building it, before it serves: the parts that announce changes are made
    /// again around `notifier`, and the manifest cache starts empty (generations of another
    /// notifier mean nothing).
    pub fn with_notifier(self, notifier: Arc<dyn Notifier>) -> Self {
        Registry::assemble(
            self.blobs,
            self.metadata,
            self.config,
            self.uploads,
            notifier,
        )
    }

    /// The notifier through which the registry announces its content changes.
    pub fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.notifier
    }

    /// A subscription that sees every committed change to repository content (what the
    /// change log records), so a follower can wait for the next one instead of polling.
    pub fn subscribe_changes(&self) -> Subscription {
        self.notifier.subscribe(Topic::Content)
    }

    /// Upload sessions: starting, continuing, completing, cancelling and sweeping them.
    pub fn uploads(&self) -> &Uploads {
        &self.uploads
    }

    /// Repositories as a whole, for the management API: what each holds, page by page,
    /// untagging and deleting.
    pub fn repositories(&self) -> &Repositories {
        &self.repositories
    }

    /// The garbage collector: starting, running, watching and stopping collections.
    pub fn gc(&self) -> &Gc {
        &self.gc
    }

    /// Since when blob writes have been failing because the storage is full (no space or
    /// quota left); `None` once a write succeeds again. A connected registry reports it as
    /// `DISK_FULL` in its status. (Blobs are written by upload sessions only, so it is
    /// [`Uploads`] that watches.)
    pub fn storage_full_since(&self) -> Option<SystemTime> {
        self.uploads.storage_full_since()
    }

    /// Links a blob the store already holds (pushed to another repository) into
    /// `repository`. Returns whether it could: the bytes need not travel again.
    pub async fn adopt_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<bool> {
        let Some(size) = self.blobs.stat(digest).await? else {
            return Ok(false);
        };
        // Adopted only while some repository links it (a blob a collection is deleting has
        // no link left): otherwise the caller fetches it.
        self.metadata
            .link_blob(repository, digest, size, LinkSource::AnyRepository)
            .await
            .map_err(Into::into)
    }

    /// The embedded defaults: blobs under `data_dir` and metadata in `data_dir/metadata.db`.
    pub async fn open_local(data_dir: &Path, config: RegistryConfig) -> Result<Self> {
        if !data_dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)?;
        }
        let blobs = FsBlobStore::open(data_dir)?;
        let metadata = SqliteMetadata::open(&data_dir.join("metadata.db")).await?;
        Ok(Registry::new(Arc::new(blobs), Arc::new(metadata), config))
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Validates a repository name against the grammar and the configured length.
    pub fn repository_name(&self, name: &str) -> Result<RepositoryName> {
        self.config.repository_name(name)
    }

    /// Checks a name validated elsewhere (another registry's change log) against this
    /// registry's length limit, as a push of it here would be.
    pub fn admit_name(&self, name: &RepositoryName) -> Result<()> {
        let (len, max) = (name.as_str().len(), self.config.max_name_length);
        if len > max {
            return Err(RegistryError::NameInvalid(berth_oci::NameError::TooLong {
                len,
                max,
            }));
        }
        Ok(())
    }

    /// Parses a digest named in a request.
    pub fn digest(s: &str) -> Result<Digest> {
        s.parse().map_err(|e: berth_oci::digest::DigestError| {
            RegistryError::DigestInvalid(e.to_string())
        })
    }

    // ----- blobs -----

    /// Whether the blob store signs URLs clients can read blobs from
    /// ([`Registry::signed_blob_url`]).
    pub fn signs_blob_urls(&self) -> bool {
        self.blobs.signs_urls()
    }

    /// A URL the blob store itself serves `digest` at for `ttl`, signed (an S3 presigned URL,
    /// an Azure SAS URL), for a client to fetch the bytes from the store rather than through
    /// this node; `None` when the store cannot sign (local disk). Check the caller may read
    /// the blob first ([`Registry::blob`]).
    pub async fn signed_blob_url(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        Ok(self.blobs.signed_read_url(digest, ttl).await?)
    }

    /// A blob readable in `repository`, ready to be streamed.
    pub async fn blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<Blob> {
        let size = self
            .metadata
            .blob_size(repository, digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        Ok(Blob {
            digest: digest.clone(),
            size,
            store: Arc::clone(&self.blobs),
        })
    }

    /// Makes a blob unreadable in `repository` (its bytes are left to garbage collection).
    pub async fn delete_blob(&self, repository: &RepositoryName, digest: &Digest) -> Result<()> {
        if self.metadata.unlink_blob(repository, digest).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }

    /// Links a blob readable in `from` into `repository`. Returns whether it could.
    pub async fn mount_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
    ) -> Result<bool> {
        let Some(size) = self.metadata.blob_size(from, digest).await? else {
            return Ok(false);
        };
        if self.blobs.stat(digest).await?.is_none() {
            return Ok(false);
        }
        // Mounted only if `from` still links it in the same step (a collection may have taken
        // it since): otherwise the client uploads it, as when a mount is refused.
        self.metadata
            .link_blob(repository, digest, size, LinkSource::Repository(from))
            .await
            .map_err(Into::into)
    }

    // ----- manifests -----

    /// Stores a manifest pushed to `reference` (a tag, or the digest it must have), and points
    /// `reference` (if a tag) and `extra_tags` at it.
    pub async fn put_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        content: Bytes,
        extra_tags: Vec<Tag>,
    ) -> Result<ManifestPushed> {
        self.put_manifest_from(
            Origin::Local,
            repository,
            reference,
            content_type,
            content,
            extra_tags,
        )
        .await
    }

    /// [`Registry::put_manifest`], recording where the push came from in the change log.
    pub async fn put_manifest_from(
        &self,
        origin: Origin,
        repository: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        content: Bytes,
        extra_tags: Vec<Tag>,
    ) -> Result<ManifestPushed> {
        if content.len() > self.config.max_manifest_size {
            return Err(RegistryError::ManifestTooLarge {
                size: content.len(),
                max: self.config.max_manifest_size,
            });
        }
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &content);
                if &actual != expected {
                    return Err(RegistryError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256(&content),
        };
        let manifest =
            Manifest::parse(&content, content_type).map_err(RegistryError::ManifestInvalid)?;
        let mut tags = extra_tags;
        if let Reference::Tag(tag) = reference {
            tags.insert(0, tag.clone());
        }
        let references = manifest
            .required_blobs()
            .map(|d| Target::Blob(d.digest.clone()))
            .chain(
                manifest
                    .required_manifests()
                    .iter()
                    .map(|d| Target::Manifest(d.digest.clone())),
            )
            .collect();
        let subject = manifest.subject.as_ref().map(|s| s.digest.clone());
        let new = NewManifest {
            repository: repository.clone(),
            digest: digest.clone(),
            media_type: manifest.media_type.clone(),
            content,
            artifact_type: manifest.effective_artifact_type().map(str::to_owned),
            subject: subject.clone(),
            annotations: manifest.annotations.as_ref().map(|a| serde_json::json!(a)),
            references,
            tags,
            origin,
        };
        let stored = self.metadata.put_manifest(new).await;
        // Even after a failure: whether the transaction committed is not always known.
        self.notifier.notify(Topic::Content);
        match stored {
            Ok(()) => Ok(ManifestPushed { digest, subject }),
            Err(PutManifestError::UnknownTarget(target)) => Err(
                RegistryError::ManifestReferenceUnknown(TargetDisplay(target)),
            ),
            Err(PutManifestError::Store(e)) => Err(e.into()),
        }
    }

    /// A manifest by tag or digest, from the cache when it is current.
    pub async fn manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<Arc<StoredManifest>> {
        let key = reference.to_string();
        // Recorded before the database is read: see `cache`.
        let generation = self.notifier.generation(Topic::Content);
        // Other nodes write to a shared store, and their notifications arrive a moment
        // after their writes are acknowledged: a client that pushed through one node and
        // pulls through this one must see its push, so every read goes to the store.
        let cached = !self.metadata.shared();
        if cached && let Some(hit) = self.cache.get(repository.as_str(), &key, generation) {
            return Ok(hit);
        }
        let found = match reference {
            Reference::Tag(tag) => self.metadata.tagged_manifest(repository, tag).await?,
            Reference::Digest(digest) => self.metadata.manifest(repository, digest).await?,
        };
        let manifest = Arc::new(found.ok_or_else(|| RegistryError::ManifestUnknown(key.clone()))?);
        if cached {
            self.cache
                .insert(repository.as_str(), &key, generation, Arc::clone(&manifest));
        }
        Ok(manifest)
    }

    /// Deletes a tag (by tag) or a manifest and its tags (by digest).
    pub async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        self.delete_manifest_from(Origin::Local, repository, reference)
            .await
    }

    /// [`Registry::delete_manifest`], recording where the deletion came from.
    pub async fn delete_manifest_from(
        &self,
        origin: Origin,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        self.deletions.manifest(origin, repository, reference).await
    }

    /// Removes `repository`, name and blob links, if it holds no manifest (a connected
    /// registry following its parent's removal of it, after its manifests' deletions); one
    /// that holds manifests is left as it is.
    pub async fn remove_empty_repository(
        &self,
        origin: Origin,
        repository: &RepositoryName,
    ) -> Result<RepositoryRemoval> {
        self.deletions.empty_repository(origin, repository).await
    }

    /// Up to `n` tags after `last`, in lexical order.
    pub async fn tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        n: u32,
    ) -> Result<Vec<String>> {
        self.metadata
            .tags(repository, last, n)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repository.to_string()))
    }

    /// Up to `n` repository names after `last`, in lexical order.
    pub async fn catalog(&self, last: Option<&str>, n: u32) -> Result<Vec<String>> {
        Ok(self.metadata.repositories(last, n).await?)
    }

    /// Manifests whose `subject` is `digest`, optionally only those of one artifact type.
    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let mut referrers = self.metadata.referrers(repository, subject).await?;
        if let Some(wanted) = artifact_type {
            referrers.retain(|r| r.artifact_type.as_deref() == Some(wanted));
        }
        Ok(referrers)
    }

    /// The digest `tag` had as last set by content sync from the parent before change
    /// `before`: what this registry last knew of the parent's tag.
    pub async fn parent_tag_before(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        before: i64,
    ) -> Result<Option<Digest>> {
        Ok(self
            .metadata
            .parent_tag_before(repository, tag, before)
            .await?)
    }

    /// The first and last sequence numbers the change log holds.
    pub async fn change_bounds(&self) -> Result<(i64, i64)> {
        Ok(self.metadata.change_bounds().await?)
    }

    /// Takes the right to run background work `task` among every process sharing the
    /// stores (see [`MetadataStore::try_exclusive`]); `None` while another holds it.
    pub async fn try_exclusive(&self, task: Exclusive) -> Result<Option<ExclusiveGuard>> {
        Ok(self.metadata.try_exclusive(task).await?)
    }

    /// This node's turn at periodic `task`, which one node of a cluster runs at a time:
    /// `None` when another node holds it, or when the store cannot say (logged as "could not
    /// `what`"), and the caller skips this turn.
    pub async fn turn(&self, task: Exclusive, what: &str) -> Option<ExclusiveGuard> {
        self.try_exclusive(task)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "could not {what}"))
            .ok()
            .flatten()
    }

    /// Forgets changes older than `max_age` (the last one is always kept, so followers know
    /// where the log stands). Returns how many were removed.
    pub async fn prune_changes(&self, max_age: Duration) -> Result<u64> {
        let before = unix_now() - max_age.as_secs() as i64;
        Ok(self.metadata.prune_changes(before).await?)
    }

    /// Content changes after sequence number `after`.
    pub async fn changes(&self, after: i64, limit: u32) -> Result<Vec<Change>> {
        Ok(self.metadata.changes(after, limit).await?)
    }

    /// How long ago, in seconds, a Unix time was.
    pub fn age_of(unix_seconds: i64) -> i64 {
        unix_now() - unix_seconds
    }
}

/// Deletes manifests and tags, each a change in the change log, and announces every
/// deletion ([`Topic::Content`]). The registry's `DELETE`s, [`Repositories`] and the
/// collector's retention rules all delete through one, so none can forget the notification
/// (the manifest cache's generation) or the change-log entry (what connected registries
/// follow).
#[derive(Clone)]
pub(crate) struct Deletions {
    metadata: Arc<dyn MetadataStore>,
    notifier: Arc<dyn Notifier>,
}

impl Deletions {
    /// Deletes a tag (by tag) or a manifest and its tags (by digest), recording `origin`.
    pub(crate) async fn manifest(
        &self,
        origin: Origin,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        let deleted = match reference {
            Reference::Tag(tag) => self.metadata.delete_tag(repository, tag, origin).await,
            Reference::Digest(digest) => {
                self.metadata
                    .delete_manifest(repository, digest, origin)
                    .await
            }
        };
        self.notifier.notify(Topic::Content);
        if deleted? {
            Ok(())
        } else {
            Err(RegistryError::ManifestUnknown(reference.to_string()))
        }
    }

    /// Deletes every manifest (and so every tag) of `repository`, one change each. Returns
    /// how many manifests were deleted.
    pub(crate) async fn repository_content(
        &self,
        origin: Origin,
        repository: &RepositoryName,
    ) -> Result<usize> {
        let digests = self.metadata.manifest_digests(repository).await?;
        let mut deleted = 0;
        for digest in digests {
            match self
                .manifest(origin, repository, &Reference::Digest(digest))
                .await
            {
                Ok(()) => deleted += 1,
                Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// Removes `repository` (its name and blob links) if it holds no manifest, logging the
    /// removal with `origin`.
    pub(crate) async fn empty_repository(
        &self,
        origin: Origin,
        repository: &RepositoryName,
    ) -> Result<RepositoryRemoval> {
        let removal = self
            .metadata
            .delete_empty_repository(repository, origin)
            .await?;
        if let RepositoryRemoval::Removed { .. } = removal {
            self.notifier.notify(Topic::Content);
        }
        Ok(removal)
    }
}

impl From<ManifestError> for RegistryError {
    fn from(e: ManifestError) -> Self {
        RegistryError::ManifestInvalid(e)
    }
}
