//! A position in a change log, kept durably in one small file.

use std::io;
use std::path::{Path, PathBuf};

/// The last change applied (or sent), saved atomically after each one.
pub struct Position {
    file: PathBuf,
}

impl Position {
    /// The position kept in `data_dir/name`.
    pub fn new(data_dir: &Path, name: &str) -> Self {
        Position {
            file: data_dir.join(name),
        }
    }

    /// The saved position, or 0 before the first change.
    pub fn get(&self) -> i64 {
        std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Saves `seq` durably (write, fsync, rename).
    pub fn set(&self, seq: i64) -> io::Result<()> {
        let temp = self.file.with_extension("tmp");
        std::fs::write(&temp, seq.to_string())?;
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, &self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let position = Position::new(dir.path(), "p");
        assert_eq!(position.get(), 0);
        position.set(42).unwrap();
        assert_eq!(Position::new(dir.path(), "p").get(), 42);
    }
}
