//! The data directory: private to the registry's user, and used by one process at a time.
//!
//! `berth serve` takes an exclusive `flock` on `berth.lock` in the data directory for as long
//! as it runs (the kernel releases it when the process dies, even by `kill -9`), and writes
//! its process id there so a second `berth serve` can name the process in its way. Two
//! processes on one directory would each keep upload hash state and manifest caches that the
//! other does not see.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Held while the process uses the data directory.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Creates the data directory (0700) if needed, makes every file this process creates
    /// private (umask 077), and takes the directory's lock; refuses, naming the other process,
    /// when another one holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, String> {
        let shown = dir.display();
        // Files and directories this process creates (databases and their journals, keys,
        // state files, blobs) are 0600 and 0700.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create the data directory `{shown}`: {e}"))?;
        let mode = fs::metadata(dir)
            .map_err(|e| format!("cannot read the data directory `{shown}`: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o700))
                .map_err(|e| format!("cannot make the data directory `{shown}` private: {e}"))?;
        }
        let path = dir.join("berth.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        if let Err(e) =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            if e != rustix::io::Errno::WOULDBLOCK {
                return Err(format!("cannot lock `{}`: {e}", path.display()));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_owned(),
                pid => format!("another berth process (pid {pid})"),
            };
            return Err(format!(
                "the data directory `{shown}` is in use by {holder}; stop it first, or give this one another --data-dir"
            ));
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        if let Err(e) = written {
            return Err(format!("cannot write `{}`: {e}", path.display()));
        }
        tighten_existing(dir);
        Ok(DataDirLock { _file: file })
    }
}

/// Makes the data directory's own files (databases, keys, state files) and its `blobs/` and
/// `uploads/` directories private when an older version left them readable by others. Blob
/// files themselves are not walked.
fn tighten_existing(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let private = if meta.is_dir() { 0o700 } else { 0o600 };
            if let Err(e) = fs::set_permissions(entry.path(), fs::Permissions::from_mode(private)) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot make a data file private");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn one_holder_at_a_time_named_by_its_pid() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let lock = DataDirLock::acquire(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("berth.lock")), 0o600);
        let pid = std::process::id().to_string();
        assert_eq!(
            fs::read_to_string(dir.join("berth.lock")).unwrap().trim(),
            pid
        );
        // A second holder (another open file, as another process would have) is refused,
        // with the directory and the holder's pid named.
        let err = DataDirLock::acquire(&dir).err().expect("refused");
        assert!(
            err.contains(&format!("pid {pid}")) && err.contains(&dir.display().to_string()),
            "{err}"
        );
        drop(lock);
        let _again = DataDirLock::acquire(&dir).expect("free once the holder is gone");
    }

    #[test]
    fn the_data_directory_and_what_is_made_in_it_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        // What an older version left readable by others.
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.join("blobs")).unwrap();
        fs::set_permissions(dir.join("blobs"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("identity.db"), b"").unwrap();
        fs::set_permissions(dir.join("identity.db"), fs::Permissions::from_mode(0o644)).unwrap();
        let _lock = DataDirLock::acquire(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("blobs")), 0o700);
        assert_eq!(mode(&dir.join("identity.db")), 0o600);
        // Files and directories made afterwards are private too.
        fs::create_dir(dir.join("uploads")).unwrap();
        fs::write(dir.join("state.json"), b"{}").unwrap();
        assert_eq!(mode(&dir.join("uploads")), 0o700);
        assert_eq!(mode(&dir.join("state.json")), 0o600);
    }
}
