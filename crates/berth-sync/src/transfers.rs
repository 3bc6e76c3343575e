//! Blob transfers from the parent cut part way, kept in `sync-transfers.json` so that they
//! resume from the bytes already on disk after a restart (a kill included), as they do after
//! a cut link.
//!
//! An entry names the local upload session holding a blob's first bytes. It is written
//! (durably) when the session starts, removed when the blob is stored or the session
//! abandoned; a session whose blob turns out to be here already is cancelled, so no upload
//! file is left waiting for the sweeper.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_registry::UploadId;

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
