//! A tmpfs mounted for the length of a test: a small disk to fill (mounting needs root, as
//! the test script runs).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a path, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`48m`) at `path`, creating the directory.
    #[track_caller]
    pub fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs (as root) is how this test makes a small disk"
        );
        Tmpfs(path.to_owned())
    }

    /// Grows or shrinks it.
    #[track_caller]
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount the tmpfs");
    }

    /// The bytes free on it.
    pub fn free(&self) -> u64 {
        df(&self.0, "avail")
    }

    /// The bytes used on it (resizing it to this leaves no page free).
    pub fn used(&self) -> u64 {
        df(&self.0, "used")
    }
}

/// `df`'s figure `field` (`avail`, `used`), in bytes, for the file system of `path`.
fn df(path: &Path, field: &str) -> u64 {
    let out = Command::new("df")
        .args([&format!("--output={field}"), "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's figure")
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
