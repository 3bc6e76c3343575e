//! Blobs fetched from the parent ([`Downloads`]), and the transfers cut part way, kept in
//! `sync-transfers.json` ([`Transfers`]) so that they resume from the bytes already on disk
//! after a restart (a kill included), as they do after a cut link.
//!
//! An entry names the local upload session holding a blob's first bytes. It is written
//! (durably) when the session starts, removed when the blob is stored or the session
//! abandoned; a session whose blob turns out to be here already is cancelled, so no upload
//! file is left waiting for the sweeper.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_oci::{Digest, RepositoryName};
use berth_registry::UploadId;
use futures_util::{StreamExt, TryStreamExt};

use crate::content::SyncError;
use crate::link::Link;
use crate::throttle::paced;

/// A blob in a repository: `repository@digest`.
pub type BlobKey = String;

/// The durable map of blob transfers under way.
pub struct Transfers {
    file: PathBuf,
    sessions: Mutex<BTreeMap<BlobKey, String>>,
}

impl Transfers {
    /// The transfers kept in `data_dir`.
    pub fn open(data_dir: &Path) -> Self {
        let file = data_dir.join("sync-transfers.json");
        let sessions = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Transfers {
            file,
            sessions: Mutex::new(sessions),
        }
    }

    /// The session holding the start of `key`, if any.
    pub fn get(&self, key: &str) -> Option<UploadId> {
        self.lock().get(key).and_then(|id| id.parse().ok())
    }

    /// Every transfer under way.
    pub fn all(&self) -> Vec<(BlobKey, UploadId)> {
        self.lock()
            .iter()
            .filter_map(|(k, id)| Some((k.clone(), id.parse().ok()?)))
            .collect()
    }

    /// Records that session `id` receives `key`.
    pub fn insert(&self, key: &str, id: UploadId) -> io::Result<()> {
        let mut sessions = self.lock();
        if sessions.get(key).map(String::as_str) == Some(id.to_string().as_str()) {
            return Ok(());
        }
        sessions.insert(key.to_owned(), id.to_string());
        self.save(&sessions)
    }

    /// Forgets the transfer of `key`.
    pub fn remove(&self, key: &str) -> io::Result<()> {
        let mut sessions = self.lock();
        if sessions.remove(key).is_none() {
            return Ok(());
        }
        self.save(&sessions)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<BlobKey, String>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, sessions: &BTreeMap<BlobKey, String>) -> io::Result<()> {
        let temp = self.file.with_extension("json.tmp");
        std::fs::write(
            &temp,
            serde_json::to_vec(sessions).expect("strings serialise"),
        )?;
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, &self.file)
    }
}

/// Fetches blobs from the parent into the local registry, one task at a time per blob,
/// resuming transfers cut part way.
pub struct Downloads {
    link: Link,
    /// Transfers cut part way, to resume, kept on disk.
    transfers: Transfers,
    /// Blob transfers under way, so two manifests sharing a blob fetch it once, in turn
    /// (two at once would append to the same session).
    in_flight: Mutex<HashMap<BlobKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl Downloads {
    /// Downloads over `link`, keeping transfers under way in `data_dir`.
    pub fn new(link: Link, data_dir: &Path) -> Self {
        Downloads {
            link,
            transfers: Transfers::open(data_dir),
            in_flight: Mutex::default(),
        }
    }

    /// Makes sure the local repository may read blob `digest`: linked from another local
    /// repository when the bytes are already here, else streamed from the parent and checked.
    /// A transfer cut part way (by the link, or by a restart) is resumed from the bytes
    /// already received (`Range`), and the digest is still checked over the whole blob.
    pub async fn ensure(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), SyncError> {
        let key = format!("{repository}@{digest}");
        let turn = Arc::clone(
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key.clone())
                .or_default(),
        );
        let held = turn.lock().await;
        let result = self.fetch_blob(repository, digest, &key).await;
        drop(held);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map and this call hold it: nobody waits for this blob any more.
        if Arc::strong_count(&turn) == 2 {
            in_flight.remove(&key);
        }
        result
    }

    /// [`Self::ensure`] for the one caller whose turn it is.
    async fn fetch_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        key: &str,
    ) -> Result<(), SyncError> {
        let registry = &self.link.registry;
        if registry.blob(repository, digest).await.is_ok()
            || registry.adopt_blob(repository, digest).await?
        {
            // A transfer left from before is of no use any more.
            if let Some(id) = self.transfers.get(key) {
                let _ = registry.uploads().cancel(repository, &id).await;
                self.transfers.remove(key)?;
            }
            return Ok(());
        }
        let resumable = match self.transfers.get(key) {
            Some(id) => registry
                .uploads()
                .offset(repository, &id)
                .await
                .ok()
                .map(|offset| (id, offset)),
            None => None,
        };
        let (id, offset) = match resumable {
            Some(session) => session,
            None => {
                let id = registry.uploads().start(repository).await?;
                self.transfers.insert(key, id)?;
                (id, 0)
            }
        };
        let path = format!("/v2/{repository}/blobs/{digest}");
        // A transfer cut just after its last byte holds the whole blob already: asking the
        // parent for the bytes after it would be refused (416) on every attempt.
        let complete = offset > 0 && self.parent_blob_size(&path).await? <= offset;
        if !complete {
            self.fetch_into(repository, &id, &path, offset, key).await?;
        }
        self.transfers.remove(key)?;
        let finished = registry
            .uploads()
            .finish(repository, &id, digest, None)
            .await;
        if finished.is_err() {
            let _ = registry.uploads().cancel(repository, &id).await;
        }
        Ok(finished?)
    }

    /// Forgets, at start, the transfers whose session is gone (swept, or finished just
    /// before a crash).
    pub async fn forget_finished(&self) {
        for (key, id) in self.transfers.all() {
            let repository = key
                .split_once('@')
                .and_then(|(r, _)| self.link.registry.repository_name(r).ok());
            let alive = match &repository {
                Some(repository) => self
                    .link
                    .registry
                    .uploads()
                    .offset(repository, &id)
                    .await
                    .is_ok(),
                None => false,
            };
            if alive {
                tracing::info!(blob = %key, "a blob transfer cut by a restart resumes from the bytes on disk");
            } else if let Err(e) = self.transfers.remove(&key) {
                tracing::warn!(error = %e, "could not update the list of blob transfers");
            }
        }
    }

    /// The size of a blob at the parent, from `HEAD`.
    async fn parent_blob_size(&self, path: &str) -> Result<u64, SyncError> {
        let response = self.link.client.head(path, "*/*").await?;
        response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| SyncError::Parent(format!("{path}: HEAD answered without a length")))
    }

    /// Appends the blob's bytes from `offset` on, as the parent sends them, to upload `id`.
    async fn fetch_into(
        &self,
        repository: &RepositoryName,
        id: &UploadId,
        path: &str,
        offset: u64,
        key: &str,
    ) -> Result<(), SyncError> {
        let response = self.link.client.get_from(path, offset).await?;
        if offset > 0 && response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            // The parent sent the whole blob: start this transfer over.
            self.transfers.remove(key)?;
            let _ = self.link.registry.uploads().cancel(repository, id).await;
            return Err(SyncError::Parent(format!(
                "{path}: the parent ignored the range request; starting over"
            )));
        }
        if offset > 0 {
            tracing::info!(path, offset, "resuming a blob transfer");
        }
        let _moving = self.link.activity.moving();
        let bandwidth = (self.link.limits)().bandwidth;
        let metrics = std::sync::Arc::clone(&self.link.metrics);
        let body = paced(
            &self.link.throttle,
            response.bytes_stream().map_err(io::Error::other),
            bandwidth,
        )
        .inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                metrics.sync_bytes(
                    crate::link::METRICS_LINK,
                    berth_metrics::Direction::Down,
                    chunk.len() as u64,
                );
            }
        })
        .boxed();
        // On a cut the bytes received so far stay in the session, for the next attempt.
        self.link
            .registry
            .uploads()
            .append(repository, id, Some(offset), body)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_outlive_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let transfers = Transfers::open(dir.path());
        let (a, b) = (UploadId::new(), UploadId::new());
        transfers.insert("app@sha256:aa", a).unwrap();
        transfers.insert("app@sha256:bb", b).unwrap();
        transfers.remove("app@sha256:bb").unwrap();
        let reopened = Transfers::open(dir.path());
        assert_eq!(reopened.get("app@sha256:aa"), Some(a));
        assert_eq!(reopened.get("app@sha256:bb"), None);
        assert_eq!(reopened.all().len(), 1);
    }
}
