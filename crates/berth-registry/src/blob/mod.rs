//! Content-addressed blob storage: the first seam.
//!
//! A [`BlobStore`] holds blob bytes by digest, shared by every repository, and the bytes of
//! upload sessions in progress. It knows nothing of repositories or of which blobs a
//! repository may read: that is metadata ([`crate::metadata`]). It does not hash either; the
//! [`crate::Registry`] hashes bytes as they stream through it.
//!
//! Architecture invariant: a blob is readable under its digest only once its bytes are
//! complete and durable ([`BlobStore::commit_upload`] makes them so, then publishes them
//! atomically). A crash at any moment leaves either no blob or the whole blob.

mod fs;
mod object;

use std::io;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use fs::FsBlobStore;
pub use object::{ObjectBlobStore, StorageUrlError};

use crate::UploadId;

/// A stream of blob bytes.
pub type ByteStream<'a> = BoxStream<'a, io::Result<Bytes>>;

/// What an append to an upload session did.
#[derive(Debug)]
pub enum AppendError {
    /// The session's data does not end where the caller thinks it does.
    OffsetMismatch {
        /// Where the data really ends.
        actual: u64,
    },
    /// The session does not exist in the store.
    UnknownUpload,
    /// The body failed part way: what arrived before is kept, and the session now holds
    /// `len` bytes, so it can be resumed from there.
    Interrupted {
        /// The session's length now.
        len: u64,
        /// Why the body failed.
        error: io::Error,
    },
    /// Writing the data failed; nothing of this append was kept.
    Io(io::Error),
}

impl From<io::Error> for AppendError {
    fn from(e: io::Error) -> Self {
        AppendError::Io(e)
    }
}

/// Storage for blob bytes and upload-session bytes.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Where the blobs are, for messages (a directory, `s3://<bucket>/<prefix>`…); never a
    /// credential.
    fn describe(&self) -> String;

    /// The size of a committed blob, or `None` if the store does not hold it.
    async fn stat(&self, digest: &Digest) -> io::Result<Option<u64>>;

    /// Streams a committed blob, or the byte range `range` of it (already checked to lie
    /// within the blob). `None` if the store does not hold it.
    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream<'static>>>;

    /// Removes a committed blob's bytes. Returns whether it existed.
    async fn delete(&self, digest: &Digest) -> io::Result<bool>;

    /// Creates an empty upload session.
    async fn create_upload(&self, id: &UploadId) -> io::Result<()>;

    /// Appends a body to an upload whose data currently ends at `offset`; returns the new
    /// length. If the body fails part way, what arrived is kept
    /// ([`AppendError::Interrupted`]); if writing fails, nothing of it is.
    async fn append_upload(
        &self,
        id: &UploadId,
        offset: u64,
        body: ByteStream<'_>,
    ) -> Result<u64, AppendError>;

    /// The current length of an upload's data, or `None` if the session is unknown.
    async fn upload_len(&self, id: &UploadId) -> io::Result<Option<u64>>;

    /// Streams an upload's data from the start (used to rebuild a hash after a restart).
    async fn read_upload(&self, id: &UploadId) -> io::Result<ByteStream<'static>>;

    /// Makes the upload's first `len` bytes (those the caller hashed) durable and publishes
    /// them as the blob `digest`, atomically. Bytes past `len` (an append abandoned part way
    /// may leave some that nobody hashed) are not part of the blob; a session holding fewer
    /// fails with `InvalidData`. The session is gone afterwards. If the blob already exists,
    /// the upload is dropped.
    async fn commit_upload(&self, id: &UploadId, digest: &Digest, len: u64) -> io::Result<()>;

    /// Stores a small blob whose digest the caller has verified, durably and atomically.
    async fn put(&self, digest: &Digest, bytes: Bytes) -> io::Result<()>;

    /// Drops an upload session and its data. Unknown sessions are not an error.
    async fn abort_upload(&self, id: &UploadId) -> io::Result<()>;

    /// Every upload session the store holds, with the time its data last changed.
    async fn list_uploads(&self) -> io::Result<Vec<(UploadId, SystemTime)>>;

    /// Fails unless new bytes can be stored now (a readiness check): the local store writes,
    /// syncs and removes a small file where uploads go. A full disk fails with `ENOSPC`.
    async fn check_writable(&self) -> io::Result<()> {
        Ok(())
    }

    /// Every committed blob the store holds: its digest, size, and when its bytes were
    /// placed (garbage collection's view of what is on disk).
    async fn list_blobs(&self) -> io::Result<Vec<(Digest, u64, SystemTime)>>;

    /// Whether [`BlobStore::signed_read_url`] gives URLs (object storage) or always `None`.
    fn signs_urls(&self) -> bool {
        false
    }

    /// A URL from which a client reads the committed blob `digest` straight from the storage
    /// service (with `Range` if it likes) until `expires_in` has passed: a presigned S3 URL,
    /// an Azure SAS URL. `None` when the store has no such URLs (local disk). It does not
    /// check that the blob exists: the caller has.
    async fn signed_read_url(
        &self,
        digest: &Digest,
        expires_in: Duration,
    ) -> io::Result<Option<String>> {
        let _ = (digest, expires_in);
        Ok(None)
    }
}
