//! Blobs fetched from the parent ([`Downloads`]), and the transfers cut part way, kept in
//! `sync-transfers.json` ([`Transfers`]) so that they resume from the bytes already on disk
//! after a restart (a kill included), as they do after a cut link.
//!
//! An entry names the local upload session holding a blob's first bytes. It is written
//! (durably) *before* the session starts, so that no crash leaves a session of the sync's
//! that no entry names (one that names a session that never started is dropped at the next
//! start); it is removed when the blob is stored or the session abandoned. No upload file is
//! left waiting for the sweeper (`upload_max_age`): a session whose blob turns out to be
//! here already is cancelled, and once a sync round has ended well, the transfers it did not
//! need (their manifest deleted upstream, their repository taken off the list while the
//! transfer was cut) are cancelled too ([`Downloads::abandon_unneeded`]).

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
                // Recorded first: see the module documentation.
                let id = UploadId::new();
                self.transfers.insert(key, id)?;
                registry.uploads().start_as(repository, id).await?;
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

    /// Cancels the transfers no fetch is using, after a sync round that ended well: every
    /// change up to the position was applied (or a comparison finished), so a transfer left
    /// over was not needed by it (its manifest deleted upstream, its repository taken off
    /// the list while it was cut), and its upload file would otherwise wait for the sweeper.
    pub async fn abandon_unneeded(&self) {
        for (key, id) in self.transfers.all() {
            if self
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&key)
            {
                continue;
            }
            let repository = key
                .split_once('@')
                .and_then(|(r, _)| self.link.registry.repository_name(r).ok());
            if let Some(repository) = &repository {
                match self.link.registry.uploads().cancel(repository, &id).await {
                    Ok(()) | Err(berth_registry::RegistryError::UploadUnknown(_)) => {}
                    Err(e) => {
                        tracing::warn!(blob = %key, error = %e, "could not cancel a blob transfer no longer needed");
                        continue;
                    }
                }
            }
            tracing::info!(blob = %key, "cancelled a blob transfer the sync no longer needs");
            if let Err(e) = self.transfers.remove(&key) {
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
        let moved = self
            .link
            .metrics
            .sync_bytes_counter(crate::link::METRICS_LINK, berth_metrics::Direction::Down);
        let body = paced(
            &self.link.throttle,
            response.bytes_stream().map_err(io::Error::other),
            bandwidth,
        )
        .inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                moved.inc_by(chunk.len() as u64);
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
    use crate::connection::ConnectionString;
    use crate::throttle::{LinkSettings, Throttle};
    use berth_registry::{Registry, RegistryConfig};

    /// Downloads into a registry in `dir`, from a parent that cannot be reached.
    async fn downloads(dir: &Path) -> Downloads {
        let registry = Registry::open_local(&dir.join("data"), RegistryConfig::default())
            .await
            .unwrap();
        let connection = ConnectionString::parse(
            "ConnectedRegistryName=ship;SyncTokenName=ship-sync-token;SyncTokenPassword=pw;\
             ParentGatewayEndpoint=127.0.0.1:1;ParentEndpointProtocol=http",
        )
        .unwrap();
        let link = Link {
            registry: Arc::new(registry),
            client: crate::client::ParentClient::new(&connection),
            throttle: Arc::new(Throttle::default()),
            limits: Arc::new(|| LinkSettings {
                bandwidth: None,
                concurrency: 1,
                read_only: true,
            }),
            problems: Arc::default(),
            activity: Arc::default(),
            metrics: Arc::new(berth_metrics::Metrics::new(false)),
        };
        Downloads::new(link, dir)
    }

    fn upload_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("data/uploads"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_transfer_is_recorded_before_its_session_exists() {
        let dir = tempfile::tempdir().unwrap();
        let downloads = downloads(dir.path()).await;
        let repository = downloads.link.registry.repository_name("app").unwrap();
        let digest = Digest::sha256(b"a layer");
        // The session cannot start (its directory is a file): as a crash just before it
        // would, this leaves the record of a session that never was, never the reverse.
        let uploads = dir.path().join("data/uploads");
        std::fs::remove_dir_all(&uploads).unwrap();
        std::fs::write(&uploads, b"").unwrap();
        assert!(downloads.ensure(&repository, &digest).await.is_err());
        assert_eq!(downloads.transfers.all().len(), 1);
        std::fs::remove_file(&uploads).unwrap();
        std::fs::create_dir(&uploads).unwrap();
        // At the next start, a record whose session never was is dropped.
        let restarted = Downloads::new(downloads.link.clone(), dir.path());
        restarted.forget_finished().await;
        assert!(restarted.transfers.all().is_empty());
    }

    #[tokio::test]
    async fn transfers_no_round_needed_are_cancelled_with_their_upload_files() {
        let dir = tempfile::tempdir().unwrap();
        let downloads = downloads(dir.path()).await;
        let repository = downloads.link.registry.repository_name("app").unwrap();
        // A transfer cut part way: its session and upload file stay, for a resume.
        assert!(
            downloads
                .ensure(&repository, &Digest::sha256(b"a layer"))
                .await
                .is_err()
        );
        let (_, id) = downloads.transfers.all()[0];
        assert_eq!(upload_files(dir.path()), 1);
        downloads.forget_finished().await;
        assert_eq!(downloads.transfers.all().len(), 1, "kept for a resume");
        // A round that ended well without it: it is no longer needed.
        downloads.abandon_unneeded().await;
        assert!(downloads.transfers.all().is_empty());
        assert!(Transfers::open(dir.path()).all().is_empty());
        assert!(
            downloads
                .link
                .registry
                .uploads()
                .offset(&repository, &id)
                .await
                .is_err()
        );
        assert_eq!(upload_files(dir.path()), 0);
    }

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
