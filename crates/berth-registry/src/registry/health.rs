//! What readiness checks and metrics ask of the registry: whether the stores take writes
//! now, and how much they hold.

use crate::Registry;
use crate::error::RegistryError;
use crate::metadata::ContentTotals;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl Registry {
    /// How much the registry holds (repositories, manifests, blobs and their bytes, open
    /// upload sessions), for metrics.
    pub async fn content_totals(&self) -> Result<ContentTotals> {
        Ok(self.metadata.content_totals().await?)
    }

    /// Fails unless the metadata store takes writes now.
    pub async fn check_database(&self) -> Result<()> {
        Ok(self.metadata.check_writable().await?)
    }

    /// Where the blobs are, for messages (see [`crate::blob::BlobStore::describe`]).
    pub fn storage_location(&self) -> String {
        self.blobs.describe()
    }

    /// Fails unless blob storage takes new bytes now: not known full (a blob write failed
    /// for space and none stored data since), and a small probe file can be written and
    /// synced where blobs go.
    pub async fn check_storage(&self) -> std::result::Result<(), String> {
        if let Some(since) = self.storage_full_since() {
            let secs = since.elapsed().map(|d| d.as_secs()).unwrap_or(0);
            return Err(format!(
                "blob writes have failed for lack of space for {secs} s"
            ));
        }
        self.blobs.check_writable().await.map_err(|e| e.to_string())
    }
}
