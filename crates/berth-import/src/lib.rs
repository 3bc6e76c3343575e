//! Imports: an image or index, with every child and optionally its referrers, copied from
//! any OCI distribution registry into this one, by the registry itself (the bytes go from
//! the source to the registry, not through the admin's machine), streamed and checked by
//! digest.
//!
//! Layout:
//! - [`source`]: `--source` as people write it ([`SourceReference`]: a registry, Docker
//!   Hub's short names, tags and digests, the scheme rules);
//! - [`client`]: [`SourceClient`], a client of one repository of any registry (manifests,
//!   blobs, referrers) with anonymous, Basic and Bearer-token authentication and retries;
//!   [`challenge`] parses its `WWW-Authenticate` challenges;
//! - `copy`: one import's three phases (manifests, blobs, store) into the local
//!   [`berth_registry::Registry`], through its push path;
//! - [`job`]: [`Imports`], which runs imports as jobs (a few at a time), reports their
//!   progress and cancels them;
//! - [`error`]: [`ImportError`], each with its code.
//!
//! Who uses it: `berth-server`'s management API (`/berth/v1/imports`) starts, shows and
//! cancels jobs; nothing else. It knows no HTTP server and no identities: the server checks
//! that the caller is the admin and that the registry takes writes before it asks.
//!
//! Invariants:
//! - **What is stored is checked as a push is.** Blobs stream into upload sessions and are
//!   published only when their digest checks out; manifests go through `put_manifest`
//!   (strict parsing, references present) by digest, children first; the tags are set with
//!   the root, last, in one transaction. So a failed or cancelled import leaves no manifest
//!   that is not whole and no tag, and the next import reuses what was stored.
//! - **No layer is held in memory**: blob bytes go from the source's response to the upload
//!   file as they arrive. Manifests are held (all of one import's, up to
//!   [`ImportLimits::max_manifest_bytes`]).
//! - **Credentials for the source stay in the job's client**: never in a view, a log line
//!   or an error.

pub mod challenge;
pub mod client;
mod copy;
pub mod error;
pub mod job;
pub mod source;

pub use client::{Credentials, SourceClient};
pub use error::ImportError;
pub use job::{
    ImportLimits, ImportRequest, Imports, JobError, JobState, JobView, ProgressView, Resolved,
};
pub use source::SourceReference;
