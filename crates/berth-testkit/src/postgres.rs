//! A throwaway PostgreSQL server: `initdb` into a temporary directory, `pg_ctl start` on a
//! loopback port, one database per [`TestPostgres::database`] call, `pg_ctl stop` on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root (CI does) the server
//! runs as the `postgres` user that Debian's package creates. Durability is off (`fsync`,
//! `synchronous_commit`): these servers hold nothing worth a sync, and the tests are about
//! behaviour, not crash safety of PostgreSQL itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running server; stopped (immediately) and deleted when dropped.
pub struct TestPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    next: AtomicU32,
}

/// Where Debian puts the server's programs (`pg_config --bindir` names the client's).
fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL's server is not installed: `apt-get install -y postgresql` (scripts/test.sh does)")
    })
}

fn is_root() -> bool {
    // The owner of /proc/self is the process's effective user.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

impl TestPostgres {
    /// Initialises and starts a server on a free loopback port (about a second).
    pub fn start() -> TestPostgres {
        let bin = bindir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir()
            .expect("a temporary directory");
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown of the PostgreSQL directory failed");
        }
        let server = TestPostgres {
            bin,
            port: crate::free_port(),
            as_postgres,
            next: AtomicU32::new(0),
            dir,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "berth",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400",
            server.port,
            path_str(server.dir.path()),
        );
        let log = server.dir.path().join("server.log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        server
    }

    /// One server for the whole test process, started on first use. A static is never
    /// dropped, so a watchdog process stops the server and removes its directory once this
    /// process has exited (normally, by a panic, or killed).
    pub fn shared() -> &'static TestPostgres {
        static SHARED: OnceLock<TestPostgres> = OnceLock::new();
        SHARED.get_or_init(|| {
            let server = TestPostgres::start();
            // `( … ) &`: the shell starts the watchdog in the background and exits, so it is
            // waited for here and the watchdog belongs to no one (init reaps it).
            let watchdog = format!(
                "( while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runuser}{pg_ctl} -D {data} -m immediate -w stop; rm -rf {dir} ) >/dev/null 2>&1 &",
                pid = std::process::id(),
                runuser = if server.as_postgres { "runuser -u postgres -- " } else { "" },
                pg_ctl = server.bin.join("pg_ctl").display(),
                data = server.data_dir().display(),
                dir = server.dir.path().display(),
            );
            let started = Command::new("sh")
                .args(["-c", &watchdog])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("start the PostgreSQL watchdog");
            assert!(started.success(), "the PostgreSQL watchdog did not start");
            server
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// One of the server's programs, as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Runs one of the server's programs (as `postgres` when we are root); panics with its
    /// output when it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of the server's `postgres` database (for administration).
    pub fn admin_url(&self) -> String {
        format!("postgres://berth@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn database(&self) -> String {
        let name = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "berth",
                &name,
            ],
        );
        format!("postgres://berth@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D", path_str(&data), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
