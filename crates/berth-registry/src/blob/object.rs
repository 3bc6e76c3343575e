//! [`BlobStore`] on object storage: S3 (AWS or any S3-compatible server) and Azure Blob,
//! through `object_store`, shared by every node of a cluster.
//!
//! # URL
//!
//! [`ObjectBlobStore::from_url`] takes one of:
//!
//! ```text
//! s3://<bucket>[/<prefix>][?endpoint=<url>][&region=<region>][&addressing=path|virtual]
//!      [&access_key_id=<id>&secret_access_key=<secret>[&session_token=<token>]]
//! azblob://<container>[/<prefix>][?account=<name>][&endpoint=<url>]
//!      [&access_key=<base64 key> | &sas=<URL-encoded SAS query string>]
//! ```
//!
//! - S3: without `endpoint`, AWS itself (`https://s3.<region>.amazonaws.com`), addressed
//!   virtual-host style (`<bucket>.s3…`); with an `endpoint` (MinIO, Garage, s3s, Ceph…),
//!   path style (`<endpoint>/<bucket>/…`). `addressing` overrides either way; a
//!   virtual-host request to a custom endpoint goes to `<bucket>.<endpoint host>`.
//! - Azure: `endpoint` defaults to `https://<account>.blob.core.windows.net`; for Azurite
//!   give it with the account in the path (`http://127.0.0.1:10000/devstoreaccount1`).
//! - Credentials and anything not in the URL come from the usual environment variables
//!   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//!   `AWS_ENDPOINT`, web identity, instance metadata…; `AZURE_STORAGE_ACCOUNT_NAME`,
//!   `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, managed identity…), read by
//!   `object_store`'s `from_env` builders; a URL parameter wins over the environment.
//!   Prefer the environment for secrets: URLs end up in process lists and logs.
//!   An `http://` endpoint is allowed (test servers); `https://` is the default.
//!
//! # Layout
//!
//! Under `<prefix>/`:
//! - `blobs/<algorithm>/<hex>`: committed blobs, written once, whole;
//! - `uploads/<uuid>/session`: an empty marker: the session exists;
//! - `uploads/<uuid>/data/<offset>`: a segment of the session's bytes starting at `offset`
//!   (20 decimal digits, so the names sort by offset);
//! - `uploads/<uuid>/commit`: while a commit runs, the multipart upload it writes the blob
//!   with (so that an abort, on any node, can cancel it).
//!
//! # Upload sessions
//!
//! Nothing about a session lives in a node's memory: its length is the end of its
//! contiguous segments, read with one listing, so any node continues a session another
//! started (the hash state is the registry's, in the metadata store). An append checks its
//! offset against that listing, then writes the body as segments of at most [`SEGMENT`]
//! bytes: one `PUT` each, one in flight while the next is received, so at most two segments
//! (8 MiB) are in memory per append whatever the body's size. Each segment is created only
//! if its name is free (`PutMode::Create`: `If-None-Match: *`, on S3 and on Azure). Chunks
//! of any size work, a byte at a time if a client wants: S3's 5 MiB minimum applies to
//! multipart parts, and segments are plain objects. When the body fails part way, what
//! arrived is written as a last segment and kept ([`AppendError::Interrupted`]); when a
//! write fails, the segments this append wrote are deleted, newest first
//! ([`AppendError::Io`]).
//!
//! **Two nodes appending at the same offset.** Both list the session and see the same end
//! `n`; each then creates `data/<n>` before anything else. Creation is conditional, so
//! exactly one succeeds; the other gets `AlreadyExists` having written nothing, and answers
//! [`AppendError::OffsetMismatch`] with the new end. Segment names are offsets and every
//! writer starts at the end it listed, so two writers can only ever collide on a name, never
//! overlap by a part of one. A writer that loses a *later* segment (another writer listed
//! its first segments and continued from them) keeps what it wrote, since bytes after it
//! now depend on it, and also answers `OffsetMismatch`: the registry then records the
//! stored length without a hash state, and the next request rebuilds the hash from the
//! stored bytes. (So does a conditional `PUT` retried after a lost response, which finds its
//! own segment: the bytes and the hash still agree.) Above the store, the registry's
//! conditional update of the session row (`WHERE received = <offset>`) lets one request win
//! in any case. And a commit checks the digest of exactly the bytes it publishes, so even
//! on a store whose conditional create is not atomic (s3s-fs checks, then writes) nothing
//! is ever published under a digest its bytes do not have.
//!
//! # Commit
//!
//! `commit_upload` reads the session's segments, hashes them, and writes the blob with one
//! `PUT` (up to [`PART`] bytes) or a multipart upload of `PART`-sized parts (two in flight
//! and one filling: 24 MiB of memory at most); it checks the digest, and only then
//! completes the upload. An object appears whole or not at all on both services (S3's `PUT`
//! and `CompleteMultipartUpload`, Azure's `Put Blob` and `Put Block List`), so the blob is
//! visible under its digest only when whole. The multipart upload's id is written to
//! `uploads/<uuid>/commit` first, so that an abort of the session on any node (the sweeper,
//! after a crash in the middle of a commit) cancels it too. Then the session's objects are
//! deleted; a crash before that leaves a session the sweeper removes.
//!
//! **Trade-off.** Parts of an unfinished S3 multipart upload cannot be read (there is no
//! `GET` of a part, and `object_store` has no `ListParts` either), yet the registry must be
//! able to read a session's bytes back (`read_upload`: a hash rebuilt after a crash between
//! an append and its row update, a sha512 digest checked at completion). So appends write
//! readable segments, and the commit copies them into the blob: it reads and writes every
//! byte once more, between the node and the store (within a region, a 1 GiB layer costs
//! seconds at the final `PUT`), and the store briefly holds the bytes twice. Server-side
//! assembly (`UploadPartCopy`, Azure's `Put Block From URL`) would remove the copy; it is
//! not in `object_store`'s API.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use berth_oci::{Digest, Hasher};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientConfigKey, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload,
};
use tokio::task::JoinHandle;

use super::{AppendError, BlobStore, ByteStream};
use crate::UploadId;

/// Most bytes of one segment object (an append's body is cut into segments of this size;
/// an append holds two at most: the one being received and the one being written).
pub const SEGMENT: usize = 4 << 20;
/// Bytes of one part of a blob's multipart upload at commit (S3 wants at least 5 MiB for all
/// parts but the last); a blob up to this size is written with a single `PUT`.
pub const PART: usize = 8 << 20;
/// Parts of one multipart upload at most (S3 allows 10,000); larger blobs get larger parts.
const MAX_PARTS: u64 = 9_000;

/// The HTTP client's timeouts. `object_store`'s default ends every request after 30 s, body
/// included, which would cut a pull of a large layer streamed through a node to a client;
/// instead a read that waits a minute for the service ends the request, however long the
/// whole takes (a day at most).
const TIMEOUTS: [(ClientConfigKey, &str); 3] = [
    (ClientConfigKey::Timeout, "24h"),
    (ClientConfigKey::ReadTimeout, "60s"),
    (ClientConfigKey::ConnectTimeout, "5s"),
];

/// Why a storage URL was refused. The message never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum StorageUrlError {
    /// The URL does not follow the grammar of the module documentation.
    #[error("invalid storage URL `{url}`: {reason}")]
    Invalid {
        /// The URL without its query (which may hold secrets).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The object store's client refused the configuration.
    #[error("storage URL `{url}`: {source}")]
    Client {
        /// The URL without its query.
        url: String,
        /// The client's error.
        source: object_store::Error,
    },
}

/// Blobs and upload sessions in an S3 bucket or an Azure Blob container, under a prefix.
#[derive(Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    signer: Arc<dyn Signer>,
    prefix: Path,
    /// Where the blobs are, without credentials ([`ObjectBlobStore::location`]).
    location: Arc<str>,
}

impl fmt::Debug for ObjectBlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBlobStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl ObjectBlobStore {
    /// A store for `url` (`s3://…` or `azblob://…`, see the module documentation). Makes no
    /// request: a wrong bucket or credential shows at the first operation.
    pub fn from_url(url: &str) -> Result<Self, StorageUrlError> {
        // object_store's HTTP client is reqwest on rustls, which needs the process's provider.
        berth_tls::install_crypto_provider();
        let parsed = url::Url::parse(url).map_err(|e| StorageUrlError::Invalid {
            url: without_query(url),
            reason: e.to_string(),
        })?;
        let name = without_query(url);
        let invalid = |reason: String| StorageUrlError::Invalid {
            url: name.clone(),
            reason,
        };
        let client = |source| StorageUrlError::Client {
            url: name.clone(),
            source,
        };
        let bucket = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("it names no bucket or container".into()))?
            .to_owned();
        let prefix = Path::parse(parsed.path().trim_matches('/'))
            .map_err(|e| invalid(format!("the prefix is not a valid object path: {e}")))?;
        let mut params: HashMap<String, String> = HashMap::new();
        for (key, value) in parsed.query_pairs() {
            if params.insert(key.to_string(), value.to_string()).is_some() {
                return Err(invalid(format!("the parameter `{key}` is given twice")));
            }
        }
        let mut take = |key: &str| params.remove(key);

        // The service's client, as the three traits it implements, and the location.
        type Service = (
            Arc<dyn ObjectStore>,
            Arc<dyn MultipartStore>,
            Arc<dyn Signer>,
        );
        let ((store, multipart, signer), location): (Service, String) = match parsed.scheme() {
            "s3" => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
                for (key, value) in TIMEOUTS {
                    builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
                }
                if let Some(region) = take("region") {
                    builder = builder.with_region(region);
                }
                // An endpoint from the environment (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT`)
                // counts as one given; one in the URL wins over both.
                let endpoint = take("endpoint")
                    .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::S3Endpoint))
                    .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
                let virtual_hosted = match take("addressing").as_deref() {
                    None => endpoint.is_none(),
                    Some("path") => false,
                    Some("virtual") => true,
                    Some(other) => {
                        return Err(invalid(format!(
                            "`addressing` is `path` or `virtual`, not `{other}`"
                        )));
                    }
                };
                builder = builder.with_virtual_hosted_style_request(virtual_hosted);
                if let Some(endpoint) = endpoint {
                    let endpoint = url::Url::parse(&endpoint)
                        .map_err(|e| invalid(format!("`endpoint`: {e}")))?;
                    builder = builder.with_allow_http(endpoint.scheme() == "http");
                    let endpoint = if virtual_hosted {
                        // object_store sends virtual-host requests to the endpoint as it is.
                        let mut with_bucket = endpoint.clone();
                        let host = endpoint
                            .host_str()
                            .ok_or_else(|| invalid("`endpoint` has no host".into()))?;
                        with_bucket
                            .set_host(Some(&format!("{bucket}.{host}")))
                            .map_err(|e| invalid(format!("`endpoint`: {e}")))?;
                        with_bucket
                    } else {
                        endpoint
                    };
                    let endpoint = endpoint.as_str().trim_end_matches('/');
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint);
                }
                if let Some(id) = take("access_key_id") {
                    builder = builder.with_access_key_id(id);
                }
                if let Some(secret) = take("secret_access_key") {
                    builder = builder.with_secret_access_key(secret);
                }
                if let Some(token) = take("session_token") {
                    builder = builder.with_token(token);
                }
                let mut location = format!("s3://{bucket}/{prefix}");
                if let Some(endpoint) = builder
                    .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
                    .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint))
                {
                    location = format!("{location}?endpoint={endpoint}");
                }
                let s3 = Arc::new(builder.build().map_err(client)?);
                ((s3.clone(), s3.clone(), s3), location)
            }
            "azblob" => {
                let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(&bucket);
                for (key, value) in TIMEOUTS {
                    builder = builder.with_config(AzureConfigKey::Client(key), value);
                }
                if bucket.len() < 3 {
                    return Err(invalid(
                        "Azure container names have 3 to 63 characters".into(),
                    ));
                }
                if let Some(account) = take("account") {
                    builder = builder.with_account(account);
                }
                if let Some(endpoint) = take("endpoint") {
                    let parsed = url::Url::parse(&endpoint)
                        .map_err(|e| invalid(format!("`endpoint`: {e}")))?;
                    builder = builder
                        .with_allow_http(parsed.scheme() == "http")
                        .with_endpoint(endpoint.trim_end_matches('/').to_owned());
                }
                if let Some(key) = take("access_key") {
                    builder = builder.with_access_key(key);
                }
                if let Some(sas) = take("sas") {
                    let pairs: Vec<(String, String)> =
                        url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect();
                    builder = builder.with_sas_authorization(pairs);
                }
                let account = builder
                    .get_config_value(&AzureConfigKey::AccountName)
                    .unwrap_or_default();
                let mut location = format!("azblob://{bucket}/{prefix}?account={account}");
                if let Some(endpoint) = builder.get_config_value(&AzureConfigKey::Endpoint) {
                    location = format!("{location}&endpoint={endpoint}");
                }
                let azure = Arc::new(builder.build().map_err(client)?);
                ((azure.clone(), azure.clone(), azure), location)
            }
            other => {
                return Err(invalid(format!(
                    "the scheme is `s3` or `azblob`, not `{other}`"
                )));
            }
        };
        if let Some(unknown) = params.keys().next() {
            return Err(invalid(format!("unknown parameter `{unknown}`")));
        }
        Ok(ObjectBlobStore {
            store,
            multipart,
            signer,
            prefix,
            location: location.into(),
        })
    }

    /// Where the blobs are, the same for every node configured for the same bucket and
    /// prefix whatever the URL's spelling, and without credentials: `s3://<bucket>/<prefix>`
    /// (with `?endpoint=` when not AWS) or `azblob://<container>/<prefix>?account=…`. For
    /// logs, and for nodes to tell whether they share their blobs.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// `<prefix>/<parts…>`.
    fn key(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .fold(self.prefix.clone(), |p, part| p.join(*part))
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        // `Digest` only admits lowercase hex: these are plain path segments.
        self.key(&["blobs", digest.algorithm().as_str(), digest.hex()])
    }

    fn upload_dir(&self, id: &UploadId) -> Path {
        self.key(&["uploads", &id.to_string()])
    }

    fn session_key(&self, id: &UploadId) -> Path {
        self.upload_dir(id).join("session")
    }

    fn commit_key(&self, id: &UploadId) -> Path {
        self.upload_dir(id).join("commit")
    }

    fn segment_key(&self, id: &UploadId, offset: u64) -> Path {
        self.upload_dir(id)
            .join("data")
            .join(format!("{offset:020}"))
    }

    /// What the store holds of a session: one listing.
    async fn session(&self, id: &UploadId) -> io::Result<Session> {
        let dir = self.upload_dir(id);
        let mut session = Session::default();
        let mut listing = self.store.list(Some(&dir));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(to_io)?;
            let Some(rest) = relative(&dir, &meta.location) else {
                continue;
            };
            match rest.as_slice() {
                ["session"] => session.exists = true,
                ["commit"] => session.committing = true,
                ["data", offset] => {
                    if let Ok(offset) = offset.parse::<u64>() {
                        session.segments.push(Segment {
                            offset,
                            size: meta.size,
                            key: meta.location,
                        });
                    }
                }
                _ => {}
            }
        }
        session.segments.sort_by_key(|s| s.offset);
        // The data is the contiguous run of segments from offset 0. Conditional creation
        // makes overlaps impossible; a gap (a failed append's cleanup racing a writer that
        // continued from it) ends the data, and what lies beyond is never read.
        let mut end = 0;
        let mut contiguous = 0;
        for segment in &session.segments {
            if segment.offset != end {
                break;
            }
            end += segment.size;
            contiguous += 1;
        }
        session.segments.truncate(contiguous);
        session.len = end;
        Ok(session)
    }

    /// Streams `segments` one after another. The next two `GET`s are sent while a segment
    /// streams, so a request's latency is paid once, not once per segment; their bodies wait
    /// in the connections until read.
    fn stream_segments(&self, segments: Vec<Segment>) -> ByteStream<'static> {
        let store = Arc::clone(&self.store);
        futures_util::stream::iter(segments)
            .map(move |segment| {
                let store = Arc::clone(&store);
                async move {
                    let got = store.get(&segment.key).await.map_err(to_io)?;
                    Ok::<_, io::Error>(got.into_stream().map_err(to_io))
                }
            })
            .buffered(3)
            .try_flatten()
            .boxed()
    }

    /// Deletes every object of a session, the marker first (so the session is unknown at
    /// once), after cancelling a multipart upload a commit left.
    async fn drop_session(&self, id: &UploadId) -> io::Result<()> {
        self.abort_commit(id).await?;
        delete_quietly(&*self.store, &self.session_key(id)).await?;
        let dir = self.upload_dir(id);
        let keys: Vec<Path> = self
            .store
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(to_io)?;
        // Sixteen at a time: a 1 GiB session is 256 segments.
        let store = &*self.store;
        futures_util::stream::iter(keys)
            .map(|key| async move { delete_quietly(store, &key).await })
            .buffer_unordered(16)
            .try_collect::<()>()
            .await
    }

    /// Cancels the multipart upload an earlier commit of the session recorded and did not
    /// finish (it crashed, or failed to clean up), so that no invisible upload is left
    /// behind to be billed. A bucket lifecycle rule (S3's `AbortIncompleteMultipartUpload`)
    /// is the backstop for a node that died with its marker unwritten; Azure drops
    /// uncommitted blocks after a week by itself.
    async fn abort_commit(&self, id: &UploadId) -> io::Result<()> {
        let commit = self.commit_key(id);
        match self.store.get(&commit).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(to_io)?;
                if let Ok(marker) = serde_json::from_slice::<CommitMarker>(&bytes) {
                    // Fails harmlessly when that upload completed or was aborted already.
                    let _ = self
                        .multipart
                        .abort_multipart(&Path::from(marker.blob), &marker.id)
                        .await;
                }
                delete_quietly(&*self.store, &commit).await
            }
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(to_io(e)),
        }
    }

    /// Checks that the store answers and accepts the credentials: lists the prefix (one
    /// request). For a start that says at once that the bucket or the key is wrong, and
    /// for readiness checks.
    pub async fn check(&self) -> io::Result<()> {
        self.store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map(drop)
            .map_err(|e| io::Error::other(format!("storage `{}`: {e}", self.location)))
    }

    /// Writes the session's bytes as the blob at `to`, checking that they hash to `digest`
    /// before the blob becomes visible.
    async fn assemble(&self, id: &UploadId, session: Session, digest: &Digest) -> io::Result<()> {
        let to = self.blob_key(digest);
        let mut hasher = Hasher::new(digest.algorithm());
        let mismatch = |actual: Digest| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "upload {id}: the stored bytes hash to `{actual}`, not `{digest}` (changed by another writer during the commit?)"
                ),
            )
        };
        let mut data = self.stream_segments(session.segments);
        if session.len <= PART as u64 {
            let mut chunks = Vec::new();
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                chunks.push(chunk);
            }
            let actual = hasher.finish();
            if &actual != digest {
                return Err(mismatch(actual));
            }
            self.store
                .put(&to, PutPayload::from_iter(chunks))
                .await
                .map_err(to_io)?;
            return Ok(());
        }

        let part_size = (PART as u64).max(session.len.div_ceil(MAX_PARTS)) as usize;
        let upload = self.multipart.create_multipart(&to).await.map_err(to_io)?;
        let marker = serde_json::to_vec(&CommitMarker {
            blob: to.to_string(),
            id: upload.clone(),
        })
        .map_err(io::Error::other)?;
        let written = async {
            self.store
                .put(&self.commit_key(id), marker.into())
                .await
                .map_err(to_io)?;
            let mut parts: Vec<PartId> = Vec::new();
            let mut in_flight: Vec<JoinHandle<io::Result<PartId>>> = Vec::new();
            let mut part: Vec<Bytes> = Vec::new();
            let mut part_len = 0;
            let mut index = 0;
            let mut flush = |part: Vec<Bytes>, in_flight: &mut Vec<_>| {
                let (multipart, to, upload) =
                    (Arc::clone(&self.multipart), to.clone(), upload.clone());
                let i = index;
                index += 1;
                in_flight.push(tokio::spawn(async move {
                    multipart
                        .put_part(&to, &upload, i, PutPayload::from_iter(part))
                        .await
                        .map_err(to_io)
                }));
            };
            while let Some(chunk) = data.next().await {
                let mut chunk = chunk?;
                hasher.update(&chunk);
                while !chunk.is_empty() {
                    let take = chunk.len().min(part_size - part_len);
                    part.push(chunk.split_to(take));
                    part_len += take;
                    if part_len == part_size {
                        // Two parts in flight at most: wait for the oldest first.
                        if in_flight.len() >= 2 {
                            parts.push(in_flight.remove(0).await.map_err(io::Error::other)??);
                        }
                        flush(std::mem::take(&mut part), &mut in_flight);
                        part_len = 0;
                    }
                }
            }
            if part_len > 0 {
                flush(part, &mut in_flight);
            }
            for handle in in_flight {
                parts.push(handle.await.map_err(io::Error::other)??);
            }
            let actual = hasher.finish();
            if &actual != digest {
                return Err(mismatch(actual));
            }
            self.multipart
                .complete_multipart(&to, &upload, parts)
                .await
                .map_err(to_io)?;
            Ok(())
        }
        .await;
        if written.is_err() {
            let _ = self.multipart.abort_multipart(&to, &upload).await;
            let _ = self.store.delete(&self.commit_key(id)).await;
        }
        written
    }
}

/// What a listing of `uploads/<uuid>/` found.
#[derive(Default)]
struct Session {
    exists: bool,
    committing: bool,
    /// The contiguous segments from offset 0, in order.
    segments: Vec<Segment>,
    len: u64,
}

impl Session {
    /// The session's first `len` bytes: segments past them (an append abandoned part way
    /// may leave some that nobody hashed) are left out.
    fn up_to(mut self, len: u64) -> io::Result<Session> {
        let keep = self
            .segments
            .iter()
            .take_while(|segment| segment.offset < len)
            .count();
        self.segments.truncate(keep);
        let end = self.segments.last().map_or(0, |s| s.offset + s.size);
        if end != len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the upload's segments end at byte {end}, not at the {len} to publish"),
            ));
        }
        self.len = len;
        Ok(self)
    }
}

struct Segment {
    offset: u64,
    size: u64,
    key: Path,
}

/// `uploads/<uuid>/commit`: the multipart upload a commit is writing.
#[derive(serde::Serialize, serde::Deserialize)]
struct CommitMarker {
    blob: String,
    id: String,
}

/// The URL without its query string (which may hold secrets), for messages.
fn without_query(url: &str) -> String {
    url.split('?').next().unwrap_or_default().to_owned()
}

/// The path segments of `path` below `dir`.
fn relative<'a>(dir: &Path, path: &'a Path) -> Option<Vec<&'a str>> {
    let rest = path.as_ref().strip_prefix(dir.as_ref())?;
    let rest = if dir.as_ref().is_empty() {
        rest
    } else {
        rest.strip_prefix('/')?
    };
    Some(rest.split('/').collect())
}

fn to_io(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

async fn delete_quietly(store: &dyn ObjectStore, key: &Path) -> io::Result<()> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(to_io(e)),
    }
}

/// A segment `PUT` in flight, in its own task so the next segment fills meanwhile: its key
/// and the result. Aborted when dropped: an append abandoned part way (its client gone, a
/// sync cancelled) stops writing instead of racing the next append of the session (which
/// conditional creation would refuse or win against, at the cost of a retry).
struct SegmentWrite(JoinHandle<(Path, object_store::Result<()>)>);

impl Drop for SegmentWrite {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::future::Future for SegmentWrite {
    type Output = Result<(Path, object_store::Result<()>), tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    fn describe(&self) -> String {
        self.location.to_string()
    }

    async fn check_writable(&self) -> io::Result<()> {
        // A small object of this process's own under `health/` (which nothing else reads),
        // written and removed: the service answers, the credentials may write, and the
        // bucket is not over quota. Named per process, so nodes' probes rarely share a name (and
        // a name shared does no harm).
        let key = self.key(&["health", &format!("readyz-{}", std::process::id())]);
        let failed = |e: object_store::Error| {
            io::Error::other(format!("storage `{}` takes no writes: {e}", self.location))
        };
        self.store
            .put(&key, PutPayload::from_static(b"ready"))
            .await
            .map_err(failed)?;
        match self.store.delete(&key).await {
            // Another node of the same process id removed it first: still a write that went.
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    async fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match self.store.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream<'static>>> {
        let key = self.blob_key(digest);
        let options = match range {
            // An empty range of a blob that exists: nothing to stream, but its existence to
            // check.
            Some(range) if range.is_empty() => {
                return Ok(self
                    .stat(digest)
                    .await?
                    .map(|_| futures_util::stream::empty().boxed()));
            }
            Some(range) => GetOptions {
                range: Some(GetRange::Bounded(range)),
                ..GetOptions::default()
            },
            None => GetOptions::default(),
        };
        match self.store.get_opts(&key, options).await {
            Ok(got) => Ok(Some(got.into_stream().map_err(to_io).boxed())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    }

    async fn delete(&self, digest: &Digest) -> io::Result<bool> {
        let key = self.blob_key(digest);
        // Deletes do not say whether there was anything to delete.
        match self.store.head(&key).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(to_io(e)),
        }
        delete_quietly(&*self.store, &key).await?;
        Ok(true)
    }

    async fn create_upload(&self, id: &UploadId) -> io::Result<()> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&self.session_key(id), PutPayload::new(), options)
            .await
            .map(drop)
            .map_err(to_io)
    }

    async fn append_upload(
        &self,
        id: &UploadId,
        offset: u64,
        mut body: ByteStream<'_>,
    ) -> Result<u64, AppendError> {
        let session = self.session(id).await?;
        if !session.exists {
            return Err(AppendError::UnknownUpload);
        }
        if session.len != offset {
            return Err(AppendError::OffsetMismatch {
                actual: session.len,
            });
        }

        // Segments written so far by this append, and the one in flight.
        let mut written: Vec<Path> = Vec::new();
        let mut in_flight: Option<SegmentWrite> = None;
        let mut failed: Option<object_store::Error> = None;
        let mut end = offset;
        let mut buffer: Vec<Bytes> = Vec::new();
        let mut buffered = 0;
        let mut cut: Option<io::Error> = None;

        // Waits for the segment in flight; false once a write failed.
        async fn settle(
            in_flight: &mut Option<SegmentWrite>,
            written: &mut Vec<Path>,
            failed: &mut Option<object_store::Error>,
        ) -> bool {
            if let Some(handle) = in_flight.take() {
                match handle.await {
                    Ok((key, Ok(()))) => written.push(key),
                    Ok((_, Err(e))) => *failed = Some(e),
                    Err(e) => {
                        *failed = Some(object_store::Error::JoinError { source: e });
                    }
                }
            }
            failed.is_none()
        }
        let start_write = |buffer: Vec<Bytes>, at: u64| -> SegmentWrite {
            let store = Arc::clone(&self.store);
            let key = self.segment_key(id, at);
            SegmentWrite(tokio::spawn(async move {
                let options = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                let result = store
                    .put_opts(&key, PutPayload::from_iter(buffer), options)
                    .await
                    .map(drop);
                (key, result)
            }))
        };

        'body: while let Some(item) = body.next().await {
            let mut chunk = match item {
                Ok(chunk) => chunk,
                Err(e) => {
                    cut = Some(e);
                    break;
                }
            };
            while !chunk.is_empty() {
                let take = chunk.len().min(SEGMENT - buffered);
                buffer.push(chunk.split_to(take));
                buffered += take;
                if buffered == SEGMENT {
                    if !settle(&mut in_flight, &mut written, &mut failed).await {
                        break 'body;
                    }
                    in_flight = Some(start_write(std::mem::take(&mut buffer), end));
                    end += buffered as u64;
                    buffered = 0;
                }
            }
        }
        if settle(&mut in_flight, &mut written, &mut failed).await && buffered > 0 {
            // The rest, also when the body failed: what arrived is kept.
            in_flight = Some(start_write(std::mem::take(&mut buffer), end));
            end += buffered as u64;
            settle(&mut in_flight, &mut written, &mut failed).await;
        }

        match failed {
            None => match cut {
                None => Ok(end),
                Some(error) => Err(AppendError::Interrupted { len: end, error }),
            },
            Some(object_store::Error::AlreadyExists { .. }) => {
                // Another writer took an offset first (see the module documentation). What
                // this append wrote before stays: the other writer continued from it.
                let actual = self.session(id).await?.len;
                Err(AppendError::OffsetMismatch { actual })
            }
            Some(e) => {
                // Nothing of a failed append is kept; newest first, so the data never has
                // a hole before its end.
                for key in written.iter().rev() {
                    if let Err(e) = delete_quietly(&*self.store, key).await {
                        tracing::warn!(key = %key, error = %e, "could not delete a segment of a failed append");
                    }
                }
                Err(AppendError::Io(to_io(e)))
            }
        }
    }

    async fn upload_len(&self, id: &UploadId) -> io::Result<Option<u64>> {
        let session = self.session(id).await?;
        Ok(session.exists.then_some(session.len))
    }

    async fn read_upload(&self, id: &UploadId) -> io::Result<ByteStream<'static>> {
        let session = self.session(id).await?;
        if !session.exists {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("upload {id} is not in the store"),
            ));
        }
        Ok(self.stream_segments(session.segments))
    }

    async fn commit_upload(&self, id: &UploadId, digest: &Digest, len: u64) -> io::Result<()> {
        if self.stat(digest).await?.is_none() {
            let session = self.session(id).await?.up_to(len)?;
            if !session.exists {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("upload {id} is not in the store"),
                ));
            }
            if session.committing {
                tracing::debug!(upload = %id, "a commit of this upload ran before and did not finish");
                self.abort_commit(id).await?;
            }
            self.assemble(id, session, digest).await?;
        }
        // Content-addressed: a blob already there holds the same bytes.
        if let Err(e) = self.drop_session(id).await {
            // The blob is published; the sweeper removes what is left of the session.
            tracing::warn!(upload = %id, error = %e, "could not delete a committed upload's data");
        }
        Ok(())
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> io::Result<()> {
        if self.stat(digest).await?.is_some() {
            return Ok(());
        }
        self.store
            .put(&self.blob_key(digest), bytes.into())
            .await
            .map(drop)
            .map_err(to_io)
    }

    async fn abort_upload(&self, id: &UploadId) -> io::Result<()> {
        self.drop_session(id).await
    }

    async fn list_uploads(&self) -> io::Result<Vec<(UploadId, SystemTime)>> {
        // A session is any object under `uploads/<uuid>/`, marker or not (what a crash in
        // the middle of a deletion leaves is swept like any session), dated by its newest.
        let dir = self.key(&["uploads"]);
        let mut newest: HashMap<UploadId, SystemTime> = HashMap::new();
        let mut listing = self.store.list(Some(&dir));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(to_io)?;
            let Some(id) = relative(&dir, &meta.location)
                .and_then(|rest| rest.first().and_then(|s| s.parse::<UploadId>().ok()))
            else {
                continue;
            };
            let modified: SystemTime = meta.last_modified.into();
            let entry = newest.entry(id).or_insert(modified);
            *entry = (*entry).max(modified);
        }
        Ok(newest.into_iter().collect())
    }

    fn signs_urls(&self) -> bool {
        true
    }

    async fn signed_read_url(
        &self,
        digest: &Digest,
        expires_in: Duration,
    ) -> io::Result<Option<String>> {
        // Signed locally with the credentials (S3: SigV4 query parameters; Azure: a service
        // SAS from the account key, or a user delegation SAS): no request is made.
        let url = self
            .signer
            .signed_url(reqwest::Method::GET, &self.blob_key(digest), expires_in)
            .await
            .map_err(to_io)?;
        Ok(Some(url.to_string()))
    }

    async fn list_blobs(&self) -> io::Result<Vec<(Digest, u64, SystemTime)>> {
        let dir = self.key(&["blobs"]);
        let mut out = Vec::new();
        let mut listing = self.store.list(Some(&dir));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(to_io)?;
            // blobs/<algorithm>/<hex>; anything else is not a blob.
            let Some(digest) = relative(&dir, &meta.location).and_then(|rest| match rest[..] {
                [alg, hex] => format!("{alg}:{hex}").parse::<Digest>().ok(),
                _ => None,
            }) else {
                continue;
            };
            out.push((digest, meta.size, meta.last_modified.into()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_checked() {
        let store = ObjectBlobStore::from_url(
            "s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1&access_key_id=a&secret_access_key=b",
        )
        .unwrap();
        assert_eq!(store.prefix.as_ref(), "some/prefix");
        assert_eq!(
            store.blob_key(&Digest::sha256(b"x")).as_ref(),
            format!("some/prefix/blobs/sha256/{}", Digest::sha256(b"x").hex())
        );
        assert_eq!(
            store.location(),
            "s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000"
        );
        assert!(!format!("{store:?}").contains("secret"));
        let store = ObjectBlobStore::from_url("s3://bucket?region=us-east-1").unwrap();
        assert_eq!(store.key(&["uploads"]).as_ref(), "uploads");
        ObjectBlobStore::from_url(
            "azblob://container/p?account=devstoreaccount1&endpoint=http://127.0.0.1:10000/devstoreaccount1&access_key=a2V5",
        )
        .unwrap();

        for (url, says) in [
            ("gs://bucket", "scheme"),
            ("s3://bucket?addressing=sideways", "addressing"),
            ("s3://bucket?colour=blue", "unknown parameter `colour`"),
            ("s3://bucket?region=a&region=b", "twice"),
            ("azblob://ab?account=x&access_key=a2V5", "3 to 63"),
        ] {
            let e = ObjectBlobStore::from_url(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        let e = ObjectBlobStore::from_url("s3://bucket?secret_access_key=hunter2&colour=x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "no secret in messages: {e}");
    }
}
