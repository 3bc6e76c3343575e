//! A server process of the tests' own (s3s-fs, Azurite): found in the test-tools cache,
//! started on a free loopback port with its output in a log file, waited for until it
//! accepts connections, killed on drop or, for the one a test binary shares, by a watchdog.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/test.sh` installs the test tools that are not Debian packages:
/// `$BERTH_TEST_TOOLS`, else `~/.cache/berth-test-tools`.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_TEST_TOOLS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/berth-test-tools")
}

/// The first of `candidates` that exists, else the program `name` on the `PATH`; panics with
/// `install` (how to install it) when there is none.
pub(crate) fn find(name: &str, candidates: &[PathBuf], install: &str) -> PathBuf {
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "{name} is not installed (looked in {}): {install} (scripts/test.sh does)",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// A running server process, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    name: &'static str,
}

impl Server {
    /// Starts `command` (its output to `server.log` in `dir`) and waits up to 30 s for
    /// `port` to accept connections.
    pub(crate) fn start(
        name: &'static str,
        mut command: Command,
        dir: tempfile::TempDir,
        port: u16,
    ) -> Server {
        let log = std::fs::File::create(dir.path().join("server.log")).expect("a log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let mut server = Server {
            child,
            dir,
            port,
            name,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "{name} exited ({status}) before listening:\n{}",
                    server.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{name} did not listen on port {port} within 30 s:\n{}",
                    server.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's output so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Makes sure the server and its directory go once this test process exits, however it
    /// exits: a static is never dropped, so a detached shell waits for this process to end,
    /// then kills the server and removes the directory.
    pub(crate) fn watch(&self) {
        let watchdog = format!(
            "( while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill {server} 2>/dev/null; sleep 1; kill -9 {server} 2>/dev/null; rm -rf {dir} ) >/dev/null 2>&1 &",
            pid = std::process::id(),
            server = self.child.id(),
            dir = self.dir.path().display(),
        );
        let started = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("the {} watchdog does not start: {e}", self.name));
        assert!(
            started.success(),
            "the {} watchdog did not start",
            self.name
        );
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_tool_says_how_to_install_it() {
        let missing = std::path::PathBuf::from("/nonexistent/berth-test-tool");
        let panic = std::panic::catch_unwind(|| {
            super::find("berth-no-such-tool", &[missing], "`install it like this`")
        })
        .expect_err("no such tool");
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(
            message.contains("berth-no-such-tool is not installed")
                && message.contains("`install it like this` (scripts/test.sh does)"),
            "{message}"
        );
    }
}
