//! [`Repositories`]: repositories as a whole, for the management API (`berth repository …`):
//! what each holds, page by page, and deleting one. [`Registry`](super::Registry) owns one
//! and hands it out ([`Registry::repositories`](super::Registry::repositories)).
//!
//! Deletions go through the same operations as the distribution API's `DELETE`s
//! (`Deletions`), so every
//! manifest and tag removed is in the change log, which connected registries follow; only
//! the repository's name and its blob links go without an entry of their own (the log
//! records content, and a repository without manifests has none). Blob bytes are never
//! deleted here: those nothing references any more are left to garbage collection.

use std::sync::Arc;

use berth_oci::{Descriptor, Digest, Manifest, Reference, RepositoryName, Tag};

use super::{Deletions, Result};
use crate::error::RegistryError;
use crate::metadata::{
    ManifestDetail, MetadataStore, Origin, RepositoryRemoval, RepositorySummary, Selection,
    TagDetail,
};

/// How many times a repository deletion deletes manifests pushed while it runs before it
/// gives up (and says so) rather than chase a client that keeps pushing.
const DELETE_ROUNDS: usize = 3;

/// A manifest as the management API lists it: [`ManifestDetail`], and for an index the
/// manifests it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// What the store records of it.
    pub detail: ManifestDetail,
    /// An index's child manifests, as it describes them (with their platforms); empty for
    /// any other manifest.
    pub children: Vec<Descriptor>,
}

/// What deleting a repository removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepositoryDeleted {
    /// Manifests deleted (each in the change log, with its tags).
    pub manifests: u64,
    /// Tags it held when the deletion started.
    pub tags: u64,
    /// Blob links removed; the bytes of blobs nothing else references are left to
    /// garbage collection.
    pub blob_links: u64,
}

/// Repositories as a whole: reads of the metadata store's listings, and deletions through
/// the registry's `Deletions`.
pub struct Repositories {
    metadata: Arc<dyn MetadataStore>,
    deletions: Deletions,
}

impl Repositories {
    pub(super) fn new(metadata: Arc<dyn MetadataStore>, deletions: Deletions) -> Self {
        Repositories {
            metadata,
            deletions,
        }
    }

    /// A page of repositories (by name, or by creation time), each with what it holds.
    pub async fn summaries(&self, page: Selection<'_>) -> Result<Vec<RepositorySummary>> {
        Ok(self.metadata.repository_summaries(page).await?)
    }

    /// One repository with what it holds.
    pub async fn summary(&self, repository: &RepositoryName) -> Result<RepositorySummary> {
        self.metadata
            .repository_summaries(Selection::One(repository.as_str()))
            .await?
            .pop()
            .ok_or_else(|| RegistryError::NameUnknown(repository.to_string()))
    }

    /// A page of a repository's tags (by name, or by last update) with their manifests.
    pub async fn tag_details(
        &self,
        repository: &RepositoryName,
        page: Selection<'_>,
    ) -> Result<Vec<TagDetail>> {
        self.metadata
            .tag_details(repository, page)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repository.to_string()))
    }

    /// One tag with its manifest.
    pub async fn tag_detail(&self, repository: &RepositoryName, tag: &Tag) -> Result<TagDetail> {
        self.metadata
            .tag_details(repository, Selection::One(tag.as_str()))
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repository.to_string()))?
            .pop()
            .ok_or_else(|| RegistryError::ManifestUnknown(tag.to_string()))
    }

    /// A page of a repository's manifests (by digest, or by push time).
    pub async fn manifest_details(
        &self,
        repository: &RepositoryName,
        page: Selection<'_>,
    ) -> Result<Vec<ManifestInfo>> {
        let details = self
            .metadata
            .manifest_details(repository, page)
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repository.to_string()))?;
        Ok(details.into_iter().map(manifest_info).collect())
    }

    /// One manifest of a repository, by digest.
    pub async fn manifest_detail(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<ManifestInfo> {
        let digest = digest.to_string();
        self.metadata
            .manifest_details(repository, Selection::One(&digest))
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repository.to_string()))?
            .pop()
            .map(manifest_info)
            .ok_or(RegistryError::ManifestUnknown(digest))
    }

    /// Deletes a repository: every manifest (and so every tag), as one change each in the
    /// change log with `origin`, then its blob links and its name. A manifest pushed while
    /// this runs is deleted too, up to a few rounds; past them the repository is left (its
    /// content so far deleted) and the answer says pushes go on.
    pub async fn delete(
        &self,
        origin: Origin,
        repository: &RepositoryName,
    ) -> Result<RepositoryDeleted> {
        let before = self.summary(repository).await?;
        let mut manifests = 0;
        for _ in 0..DELETE_ROUNDS {
            manifests += self
                .deletions
                .repository_content(origin, repository)
                .await? as u64;
            match self.deletions.empty_repository(origin, repository).await? {
                RepositoryRemoval::Removed { blob_links } => {
                    return Ok(RepositoryDeleted {
                        manifests,
                        tags: before.tag_count,
                        blob_links,
                    });
                }
                // Deleted meanwhile by another request: what this one deleted stands.
                RepositoryRemoval::Unknown => {
                    return Ok(RepositoryDeleted {
                        manifests,
                        tags: before.tag_count,
                        blob_links: 0,
                    });
                }
                RepositoryRemoval::NotEmpty => {}
            }
        }
        Err(RegistryError::RepositoryBusy(repository.to_string()))
    }

    /// Removes a tag; the manifest stays, pullable by digest. Returns what the tag named.
    pub async fn untag(
        &self,
        origin: Origin,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<TagDetail> {
        let detail = self.tag_detail(repository, tag).await?;
        self.deletions
            .manifest(origin, repository, &Reference::Tag(tag.clone()))
            .await?;
        Ok(detail)
    }
}

fn manifest_info(detail: ManifestDetail) -> ManifestInfo {
    // Stored manifests were validated when pushed: one that no longer parses (a parser
    // grown stricter since) is still listed, without its children.
    let children = detail
        .index_content
        .as_ref()
        .and_then(|bytes| Manifest::parse(bytes, Some(&detail.media_type)).ok())
        .map(|m| m.required_manifests().to_vec())
        .unwrap_or_default();
    ManifestInfo { detail, children }
}
