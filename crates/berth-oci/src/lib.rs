//! The vocabulary of the OCI Distribution Specification, with no I/O.
//!
//! Layout:
//! - [`digest`]: [`Digest`] (`sha256:…` / `sha512:…`) and the incremental [`Hasher`];
//! - [`endpoint`]: a registry's `host[:port]`;
//! - [`name`]: [`RepositoryName`], [`Tag`] and [`Reference`] with the spec's grammars;
//! - [`manifest`]: parsing and validating the manifest kinds a registry stores;
//! - [`error`]: the spec's error codes ([`ErrorCode`]);
//! - [`time`]: the clock, in the Unix seconds every crate records times in.
//!
//! Every other Berth crate takes these types instead of strings, so a value that reaches
//! storage or the network has already been validated once, here.

pub mod digest;
pub mod endpoint;
pub mod error;
pub mod manifest;
pub mod name;
pub mod time;

pub use digest::{Algorithm, Digest, Hasher};
pub use error::ErrorCode;
pub use manifest::{Descriptor, Manifest, ManifestKind, Platform, media_type};
pub use name::{NameError, Reference, RepositoryName, Tag};
