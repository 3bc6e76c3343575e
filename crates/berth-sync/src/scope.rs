//! Which of the registry's repositories content sync holds whole: `synced-repositories` in
//! the data directory.
//!
//! A repository pattern put on the list (or taken off and put back) is not covered by the
//! parent's change log from where this instance stands: the changes made to it before were
//! filtered out, or their effects deleted here. So a pattern enters this set only after a
//! catch-up by comparison brought every tag the parent holds for it, and leaves it as soon as
//! it leaves the list. Both are durable: a crash during a catch-up does it again at start.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The patterns synced whole, kept in one small file.
pub struct SyncedRepositories {
    file: PathBuf,
    lock: Mutex<()>,
}

impl SyncedRepositories {
    /// The set kept in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        SyncedRepositories {
            file: data_dir.join("synced-repositories"),
            lock: Mutex::new(()),
        }
    }

    /// The patterns synced whole; `None` before the first time (a new instance, whose
    /// position 0 in the parent's log covers everything, or one from before this file).
    pub fn get(&self) -> Option<Vec<String>> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let text = std::fs::read_to_string(&self.file).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Records `patterns` as synced whole.
    pub fn set(&self, patterns: &[String]) -> io::Result<()> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.write(patterns)
    }

    /// Keeps only the patterns still on `list` (called when the list shrinks, before the
    /// content of the others is deleted).
    pub fn retain(&self, list: &[String]) -> io::Result<()> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(current) = std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
        else {
            return Ok(());
        };
        let kept: Vec<String> = current.into_iter().filter(|p| list.contains(p)).collect();
        self.write(&kept)
    }

    fn write(&self, patterns: &[String]) -> io::Result<()> {
        let temp = self.file.with_extension("tmp");
        let text = serde_json::to_vec(patterns).expect("strings serialise");
        std::fs::write(&temp, text)?;
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, &self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_leave_at_once_and_enter_when_set() {
        let dir = tempfile::tempdir().unwrap();
        let synced = SyncedRepositories::new(dir.path());
        assert_eq!(synced.get(), None);
        synced.retain(&["a".into()]).unwrap();
        assert_eq!(synced.get(), None, "nothing to narrow yet");
        synced.set(&["a".into(), "b/*".into()]).unwrap();
        synced.retain(&["b/*".into(), "c".into()]).unwrap();
        assert_eq!(
            SyncedRepositories::new(dir.path()).get(),
            Some(vec!["b/*".to_owned()])
        );
    }
}
