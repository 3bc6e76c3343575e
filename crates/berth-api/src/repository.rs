//! `/berth/v1/repositories…`: what each repository holds (tags, manifests, sizes, times),
//! page by page, and deleting a repository, a manifest or a tag.
//!
//! Listings come in pages of at most `n` (100 by default, 1000 at most), in lexical order of
//! their key (repository name, tag, digest), or with `orderby` by time (a repository's
//! creation, a tag's last update, a manifest's push), newest or oldest first; `next` is what
//! to pass as `last` for the following page, `null` on the last one. Sizes are in bytes.

use serde::{Deserialize, Serialize};

/// A repository, as `GET /berth/v1/repositories` lists it and
/// `GET /berth/v1/repositories/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryView {
    /// Its name.
    pub name: String,
    /// How many manifests it holds (images, indexes, artifacts).
    pub manifest_count: u64,
    /// How many tags it holds.
    pub tag_count: u64,
    /// How many blobs (layers, configs) it links.
    pub blob_count: u64,
    /// Bytes of every blob it links, each once, and of its manifests. Blobs shared with
    /// other repositories count in each.
    pub size: u64,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When its content last changed (RFC 3339): a push, a tag moved or removed, a deletion.
    pub updated_at: String,
}

/// A page of `GET /berth/v1/repositories`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryList {
    /// The repositories, in lexical order of name.
    pub repositories: Vec<RepositoryView>,
    /// Pass as `last` for the next page; `null` when this is the last one.
    pub next: Option<String>,
}

/// A tag and the manifest it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagView {
    /// The tag.
    pub name: String,
    /// The digest of the manifest it names.
    pub digest: String,
    /// That manifest's media type.
    pub media_type: String,
    /// Bytes of the manifest and every blob it references; for an index, of its child
    /// manifests and their blobs too (a blob shared by several children counts once).
    pub size: u64,
    /// When the tag was last pointed at a manifest (RFC 3339).
    pub updated_at: String,
}

/// A page of `GET /berth/v1/repositories/{name}/_tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagList {
    /// The repository.
    pub repository: String,
    /// Its tags, in lexical order.
    pub tags: Vec<TagView>,
    /// Pass as `last` for the next page; `null` when this is the last one.
    pub next: Option<String>,
}

/// A manifest an index lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestChildView {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The size of the child manifest itself, as the index gives it.
    pub size: u64,
    /// `os/architecture[/variant]`, when the index names a platform.
    pub platform: Option<String>,
}

/// A manifest of a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestView {
    /// Its digest: pull it as `<repository>@<digest>`.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its `artifactType`, or its config's media type; `null` for an index without one.
    pub artifact_type: Option<String>,
    /// The manifest it refers to (a signature's or an SBOM's image), if any.
    pub subject: Option<String>,
    /// Bytes of the manifest and every blob it references; for an index, of its child
    /// manifests and their blobs too (a blob shared by several children counts once).
    pub size: u64,
    /// The tags naming it, in lexical order; empty when it is untagged.
    pub tags: Vec<String>,
    /// When it was pushed (RFC 3339).
    pub created_at: String,
    /// For an index, the manifests it lists, in its order; empty otherwise.
    pub children: Vec<ManifestChildView>,
}

/// A page of `GET /berth/v1/repositories/{name}/_manifests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestList {
    /// The repository.
    pub repository: String,
    /// Its manifests, in lexical order of digest.
    pub manifests: Vec<ManifestView>,
    /// Pass as `last` for the next page; `null` when this is the last one.
    pub next: Option<String>,
}

/// What `DELETE /berth/v1/repositories/{name}` removed. The blobs' bytes stay on disk until
/// garbage collection frees those nothing references any more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryDeleted {
    /// The repository.
    pub name: String,
    /// Manifests deleted.
    pub manifests_deleted: u64,
    /// Tags it held, gone with their manifests.
    pub tags_deleted: u64,
    /// Blob links removed.
    pub blob_links_removed: u64,
}

/// The query of the listings: a page size and where the page starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageQuery {
    /// The most entries in the page: 1 to 1000, 100 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Start after this key (the previous page's `next`, of the same order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// `time_desc` (newest first) or `time_asc` (oldest first); left out, lexical order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orderby: Option<String>,
}
