//! [`BlobStore`] on a local file system.
//!
//! Layout under the root directory:
//! - `blobs/<algorithm>/<first two hex digits>/<hex>`: committed blobs, never modified;
//! - `uploads/<uuid>`: the data of an upload session in progress.
//!
//! Writes go through a dedicated blocking task fed by a small bounded channel of 1 MiB
//! buffers, so the request task hashes the next bytes while the previous ones are written,
//! and at most a few MiB per upload are ever in memory. Reads are `pread`s of
//! [`READ_CHUNK`] bytes with one chunk read ahead, so the disk and the socket overlap.
//!
//! An append holds an exclusive lock (`flock`) on its upload file until its writer task has
//! written its last byte; sizing, reading back and committing an upload take the lock
//! first. An append abandoned part way (its future dropped when a client connection closes
//! or a sync task is cancelled) leaves its writer draining the queue for a moment: the lock
//! makes the next append start after those bytes instead of writing beside them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::{JoinHandle, spawn_blocking};

use super::{AppendError, BlobStore, ByteStream};
use crate::UploadId;

/// Bytes handed to the writer task at a time.
const WRITE_CHUNK: usize = 1 << 20;
/// Buffers queued for the writer task at most (so at most about 3 MiB per upload in memory).
const WRITE_QUEUE: usize = 2;
/// Bytes read from disk at a time when serving a blob.
const READ_CHUNK: usize = 256 << 10;

/// Blobs and uploads in a directory on local disk.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: Arc<PathBuf>,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        // Blobs may be private images: directories 0700, files 0600, whatever the umask.
        private_dir(&root.join("blobs"))?;
        private_dir(&root.join("uploads"))?;
        // A `put-` file is a small blob that was being written when the process stopped;
        // nothing refers to it, and no `put` can be running before the store is opened.
        for entry in fs::read_dir(root.join("uploads"))? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("put-"))
            {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(FsBlobStore {
            root: Arc::new(root),
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        // `Digest` only admits lowercase hex, so these components cannot escape the root.
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.to_string())
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("uploads")
            .join(format!("put-{}", UploadId::new()))
    }
}

/// Runs blocking file-system work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    spawn_blocking(f).await.map_err(io::Error::other)?
}

/// Starts writeback of an upload's data while it is still arriving, so that making the
/// blob durable at the end (an fsync) only waits for the last few MiB instead of the whole
/// blob. Every [`FLUSH_EVERY`] bytes written, a `fdatasync` runs on a duplicate descriptor in
/// a blocking task, at most one at a time; writes go on meanwhile.
struct EarlyFlush {
    file: Arc<File>,
    unflushed: usize,
    in_flight: Arc<std::sync::atomic::AtomicBool>,
    runtime: tokio::runtime::Handle,
}

/// Bytes written between two background flushes.
const FLUSH_EVERY: usize = 32 << 20;

impl EarlyFlush {
    fn new(file: &File) -> io::Result<Self> {
        Ok(EarlyFlush {
            file: Arc::new(file.try_clone()?),
            unflushed: 0,
            in_flight: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    fn written(&mut self, n: usize) {
        use std::sync::atomic::Ordering;
        self.unflushed += n;
        if self.unflushed < FLUSH_EVERY || self.in_flight.swap(true, Ordering::AcqRel) {
            return;
        }
        self.unflushed = 0;
        let (file, in_flight) = (Arc::clone(&self.file), Arc::clone(&self.in_flight));
        self.runtime.spawn_blocking(move || {
            // Only an optimisation: the commit's own fsync is what guarantees durability.
            let _ = file.sync_data();
            in_flight.store(false, Ordering::Release);
        });
    }
}

/// Writes every buffer of `batch`, in order, with as few system calls as the kernel allows.
fn write_batch(file: &mut File, batch: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        let written = file.write_vectored(remaining)?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut remaining, written);
    }
    Ok(())
}

/// Makes `from` durable and renames it to `to`, then makes the rename durable.
/// Creates `dir` and its missing parents with mode 0700, and makes an existing `dir` 0700.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

fn publish(from: &Path, to: &Path) -> io::Result<()> {
    File::open(from)?.sync_all()?;
    let dir = to.parent().expect("blob paths have a parent");
    if !dir.exists() {
        private_dir(dir)?;
        if let Some(grandparent) = dir.parent() {
            File::open(grandparent)?.sync_all()?;
        }
    }
    fs::rename(from, to)?;
    File::open(dir)?.sync_all()
}

/// An upload's file and length once no append is writing to it (an append abandoned part
/// way may still be): the lock is taken and given back at once.
fn settled_upload(path: &Path) -> io::Result<(File, u64)> {
    let file = File::open(path)?;
    file.lock_shared()?;
    let len = file.metadata()?.len();
    file.unlock()?;
    Ok((file, len))
}

/// The entries of `dir`, or none when it does not exist (yet).
fn read_dir_or_empty(dir: &Path) -> io::Result<Box<dyn Iterator<Item = io::Result<fs::DirEntry>>>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(Box::new(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> io::Result<Option<ByteStream<'static>>> {
        let path = self.blob_path(digest);
        let opened = blocking(move || match File::open(path) {
            Ok(f) => {
                let len = f.metadata()?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
        let Some((file, len)) = opened else {
            return Ok(None);
        };
        let range = range.unwrap_or(0..len);
        Ok(Some(read_ahead_stream(Arc::new(file), range)))
    }

    async fn delete(&self, digest: &Digest) -> io::Result<bool> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_upload(&self, id: &UploadId) -> io::Result<()> {
        let path = self.upload_path(id);
        blocking(move || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map(drop)
        })
        .await
    }

    async fn append_upload(
        &self,
        id: &UploadId,
        offset: u64,
        mut body: ByteStream<'_>,
    ) -> Result<u64, AppendError> {
        let path = self.upload_path(id);
        // Locked for the whole append: an append abandoned before may still be writing.
        let opened = blocking(move || {
            let mut file = OpenOptions::new().write(true).open(path)?;
            file.lock()?;
            let end = file.seek(SeekFrom::End(0))?;
            Ok((file, end))
        })
        .await;
        let (file, actual) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(AppendError::UnknownUpload);
            }
            Err(e) => return Err(e.into()),
        };
        if actual != offset {
            return Err(AppendError::OffsetMismatch { actual });
        }

        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(WRITE_QUEUE);
        let flusher = EarlyFlush::new(&file)?;
        // The file (and its lock) goes back with the outcome, so that a failed write is
        // undone before another append may start.
        let writer: JoinHandle<(File, io::Result<()>)> = spawn_blocking(move || {
            let mut file = file;
            let mut flusher = flusher;
            while let Some(batch) = rx.blocking_recv() {
                if let Err(e) = write_batch(&mut file, &batch) {
                    return (file, Err(e));
                }
                flusher.written(batch.iter().map(Bytes::len).sum());
            }
            (file, Ok(()))
        });

        // Chunks are passed on as they came (no copy), in batches of about WRITE_CHUNK bytes.
        let mut batch = Vec::new();
        let mut batch_len = 0;
        let mut failure: Option<io::Error> = None;
        while let Some(item) = body.next().await {
            let chunk = match item {
                Ok(chunk) => chunk,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            batch_len += chunk.len();
            batch.push(chunk);
            if batch_len >= WRITE_CHUNK {
                batch_len = 0;
                if tx.send(std::mem::take(&mut batch)).await.is_err() {
                    break; // The writer stopped: its error is reported below.
                }
            }
        }
        // Everything the body delivered is written, even when it then failed: the session can
        // resume from there (the caller hashed exactly these chunks).
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        drop(tx);
        let (file, written) = writer.await.map_err(io::Error::other)?;
        match (written, failure) {
            (Ok(()), None) => blocking(move || file.metadata().map(|m| m.len()))
                .await
                .map_err(AppendError::Io),
            (Ok(()), Some(error)) => {
                let len = blocking(move || file.metadata().map(|m| m.len())).await?;
                Err(AppendError::Interrupted { len, error })
            }
            (Err(e), _) => {
                // A write failed: what was written cannot be trusted to match the hash, so
                // nothing of this append is kept.
                blocking(move || file.set_len(offset)).await?;
                Err(AppendError::Io(e))
            }
        }
    }

    async fn upload_len(&self, id: &UploadId) -> io::Result<Option<u64>> {
        let path = self.upload_path(id);
        match blocking(move || settled_upload(&path)).await {
            Ok((_, len)) => Ok(Some(len)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read_upload(&self, id: &UploadId) -> io::Result<ByteStream<'static>> {
        let path = self.upload_path(id);
        let (file, len) = blocking(move || settled_upload(&path)).await?;
        // Appends only add after `len`: the bytes before it stay as they are.
        Ok(read_ahead_stream(Arc::new(file), 0..len))
    }

    async fn commit_upload(&self, id: &UploadId, digest: &Digest, len: u64) -> io::Result<()> {
        let from = self.upload_path(id);
        let to = self.blob_path(digest);
        blocking(move || {
            // Held through the rename: no append abandoned before writes into the blob.
            let upload = OpenOptions::new().write(true).open(&from)?;
            upload.lock()?;
            let stored = upload.metadata()?.len();
            if stored < len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the upload holds {stored} bytes, not the {len} to publish"),
                ));
            }
            if stored > len {
                upload.set_len(len)?;
            }
            if to.exists() {
                // Content-addressed: the bytes are already there and identical.
                return fs::remove_file(from);
            }
            publish(&from, &to)
        })
        .await
    }

    async fn put(&self, digest: &Digest, bytes: Bytes) -> io::Result<()> {
        let to = self.blob_path(digest);
        let temp = self.temp_path();
        blocking(move || {
            if to.exists() {
                return Ok(());
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            f.write_all(&bytes)?;
            drop(f);
            publish(&temp, &to).inspect_err(|_| {
                let _ = fs::remove_file(&temp);
            })
        })
        .await
    }

    async fn abort_upload(&self, id: &UploadId) -> io::Result<()> {
        match tokio::fs::remove_file(self.upload_path(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn list_blobs(&self) -> io::Result<Vec<(Digest, u64, SystemTime)>> {
        let root = self.root.join("blobs");
        blocking(move || {
            let mut out = Vec::new();
            // blobs/<algorithm>/<first two hex digits>/<hex>; anything else is not a blob.
            for algorithm in read_dir_or_empty(&root)? {
                let algorithm = algorithm?;
                let Some(alg) = algorithm.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                for prefix in read_dir_or_empty(&algorithm.path())? {
                    for blob in read_dir_or_empty(&prefix?.path())? {
                        let blob = blob?;
                        let Some(digest) = blob
                            .file_name()
                            .to_str()
                            .and_then(|hex| format!("{alg}:{hex}").parse::<Digest>().ok())
                        else {
                            continue;
                        };
                        let metadata = match blob.metadata() {
                            Ok(m) => m,
                            // Deleted since the directory was read.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(e),
                        };
                        if metadata.is_file() {
                            out.push((digest, metadata.len(), metadata.modified()?));
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_uploads(&self) -> io::Result<Vec<(UploadId, SystemTime)>> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut out = Vec::new();
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name();
                if let Some(id) = name.to_str().and_then(|n| n.parse::<UploadId>().ok()) {
                    match entry.metadata() {
                        Ok(metadata) => out.push((id, metadata.modified()?)),
                        // Finished or dropped since the directory was read.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn check_writable(&self) -> io::Result<()> {
        // Beside `blobs/` and `uploads/`, on the same file system; a name no listing of
        // either directory reads, one per probe (two listeners' probes may overlap).
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = self.root.join(format!(".readiness-probe-{n}"));
        blocking(move || {
            let written = (|| {
                let mut file = File::create(&probe)?;
                file.write_all(b"ready\n")?;
                file.sync_all()
            })();
            let removed = fs::remove_file(&probe);
            written?;
            removed
        })
        .await
    }
}

/// Streams `range` of `file` in [`READ_CHUNK`] reads, keeping one read in flight ahead of
/// the consumer.
fn read_ahead_stream(file: Arc<File>, range: Range<u64>) -> ByteStream<'static> {
    fn spawn_read(file: &Arc<File>, pos: u64, end: u64) -> Option<JoinHandle<io::Result<Bytes>>> {
        if pos >= end {
            return None;
        }
        let file = Arc::clone(file);
        let len = (end - pos).min(READ_CHUNK as u64) as usize;
        Some(spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, pos)?;
            Ok(Bytes::from(buf))
        }))
    }

    let first = spawn_read(&file, range.start, range.end);
    let state = (file, range.start, range.end, first);
    futures_util::stream::unfold(state, |(file, pos, end, pending)| async move {
        let handle = pending?;
        match handle.await.map_err(io::Error::other).and_then(|r| r) {
            Ok(bytes) => {
                let next_pos = pos + bytes.len() as u64;
                let next = spawn_read(&file, next_pos, end);
                Some((Ok(bytes), (file, next_pos, end, next)))
            }
            Err(e) => Some((Err(e), (file, end, end, None))),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn body(chunks: Vec<io::Result<Bytes>>) -> ByteStream<'static> {
        stream::iter(chunks).boxed()
    }

    async fn collect(s: ByteStream<'static>) -> Vec<u8> {
        s.map(|c| c.unwrap()).collect::<Vec<_>>().await.concat()
    }

    #[tokio::test]
    async fn readiness_probes_at_once_all_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FsBlobStore::open(dir.path()).unwrap());
        let probes = (0..32).map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.check_writable().await })
        });
        for probe in futures_util::future::join_all(probes).await {
            probe.unwrap().expect("a probe beside others");
        }
    }

    #[tokio::test]
    async fn upload_append_commit_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let id = UploadId::new();
        store.create_upload(&id).await.unwrap();
        let n = store
            .append_upload(&id, 0, body(vec![Ok(Bytes::from_static(b"hello "))]))
            .await
            .unwrap();
        assert_eq!(n, 6);
        let err = store
            .append_upload(&id, 0, body(vec![Ok(Bytes::from_static(b"x"))]))
            .await
            .unwrap_err();
        assert!(matches!(err, AppendError::OffsetMismatch { actual: 6 }));
        let n = store
            .append_upload(&id, 6, body(vec![Ok(Bytes::from_static(b"world"))]))
            .await
            .unwrap();
        assert_eq!(n, 11);

        let digest = Digest::sha256(b"hello world");
        assert_eq!(store.stat(&digest).await.unwrap(), None);
        store.commit_upload(&id, &digest, 11).await.unwrap();
        assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
        assert_eq!(store.upload_len(&id).await.unwrap(), None);
        assert_eq!(
            collect(store.read(&digest, None).await.unwrap().unwrap()).await,
            b"hello world"
        );
        assert_eq!(
            collect(store.read(&digest, Some(3..8)).await.unwrap().unwrap()).await,
            b"lo wo"
        );
    }

    #[tokio::test]
    async fn an_interrupted_body_keeps_what_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let id = UploadId::new();
        store.create_upload(&id).await.unwrap();
        store
            .append_upload(&id, 0, body(vec![Ok(Bytes::from_static(b"abc"))]))
            .await
            .unwrap();
        let big = Bytes::from(vec![7u8; 3 * WRITE_CHUNK + 5]);
        let failing = body(vec![
            Ok(big),
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client went away",
            )),
        ]);
        match store.append_upload(&id, 3, failing).await {
            Err(AppendError::Interrupted { len, .. }) => {
                assert_eq!(len, 3 + 3 * WRITE_CHUNK as u64 + 5)
            }
            other => panic!("expected an interrupted append, got {other:?}"),
        }
        assert_eq!(
            store.upload_len(&id).await.unwrap(),
            Some(3 + 3 * WRITE_CHUNK as u64 + 5)
        );
    }

    #[tokio::test]
    async fn large_reads_are_chunked_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(3 * READ_CHUNK + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let digest = Digest::sha256(&data);
        store.put(&digest, Bytes::from(data.clone())).await.unwrap();
        assert_eq!(
            collect(store.read(&digest, None).await.unwrap().unwrap()).await,
            data
        );
        let r = (READ_CHUNK as u64 - 5)..(2 * READ_CHUNK as u64 + 9);
        assert_eq!(
            collect(store.read(&digest, Some(r.clone())).await.unwrap().unwrap()).await,
            &data[r.start as usize..r.end as usize]
        );
    }
}
