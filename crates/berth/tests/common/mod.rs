//! Shared harness for the end-to-end tests: starts a real `berth serve` process on a free
//! loopback port with its own data directory, and stops it when dropped.
//!
//! Every test file under `tests/` that needs a live registry does `mod common;` and calls
//! [`Berth::start`]. Extra arguments (limits, ages) go through [`Berth::start_with`].
//! [`cli`] runs the `berth` command line against it; [`cluster`] starts several nodes
//! behind a load balancer.

#![allow(dead_code)]

pub mod cli;
pub mod cluster;
pub mod tmpfs;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin password every test registry is started with.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// A running `berth serve` process.
pub struct Berth {
    /// Address the login server is bound to (the same as `addr` unless it is unspecified).
    pub listen: SocketAddr,
    /// Address the registry listens on, e.g. `127.0.0.1:41234`.
    pub addr: SocketAddr,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Host and port as registry clients write it, e.g. `127.0.0.1:41234`.
    pub host: String,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
    child: Option<Child>,
}

/// Path of the `berth` binary built by cargo for these tests.
pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Returns a port that was free on `ip` a moment ago (`127.0.0.2`, `::1`, …: every address
/// of 127.0.0.0/8 reaches this machine).
pub fn free_port_on(ip: IpAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("bind an ephemeral port on {ip}: {e}"))
}

impl Berth {
    /// Starts a registry on embedded defaults in a fresh temporary data directory.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a registry with extra `berth serve` arguments.
    pub fn start_with(extra_args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("create a temporary data directory");
        let data_dir = temp.path().join("data");
        let mut berth = Self::with_data_dir(&data_dir, extra_args);
        berth._temp = Some(temp);
        berth
    }

    /// Starts a registry whose login server listens on a free port of `ip` (`::1` for
    /// IPv6, `127.0.0.5`, or `::` for a dual-stack listener), in a fresh temporary data
    /// directory, with extra `berth serve` arguments. For the unspecified addresses, `addr`,
    /// `url` and `host` name the loopback address of the same family, which clients connect to.
    pub fn start_on(ip: IpAddr, extra_args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("create a temporary data directory");
        let data_dir = temp.path().join("data");
        let port = free_port_on(ip);
        let mut berth = Self::at(SocketAddr::new(ip, port), &data_dir, extra_args);
        berth._temp = Some(temp);
        berth
    }

    /// Starts a registry on an existing (or new) data directory that outlives the process.
    pub fn with_data_dir(data_dir: &Path, extra_args: &[&str]) -> Self {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Self::at(addr, data_dir, extra_args)
    }

    /// Starts a registry whose login server listens on `listen`.
    fn at(listen: SocketAddr, data_dir: &Path, extra_args: &[&str]) -> Self {
        let addr = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), listen.port())
            }
            _ => listen,
        };
        let mut berth = Berth {
            listen,
            addr,
            url: format!("http://{addr}"),
            host: addr.to_string(),
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        berth.spawn();
        berth
    }

    /// `admin:<password>`, as `skopeo --creds` and `podman --creds` take it.
    pub fn admin_creds(&self) -> String {
        format!("admin:{ADMIN_PASSWORD}")
    }

    /// The data directory this registry keeps its blobs and database in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn spawn(&mut self) {
        let mut child = Command::new(berth_bin())
            .arg("serve")
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // Tests try wrong passwords on purpose; only the rate-limit test lowers this.
            .env("BERTH_LOGIN_FAILURES_PER_MINUTE", "1000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn berth serve");
        // Drain stdout in the background so the child never blocks on a full pipe.
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[berth] {line}");
            }
        });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("berth serve exited before it was ready: {status}");
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("berth serve did not listen on {} within 30 s", self.addr);
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to 30 s for a graceful exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Starts the process again on the same address and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits up to `timeout` for the process to end on its own; its exit status if it did
    /// (the process is then gone, and `restart` starts it again).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.child.as_mut()?.try_wait().unwrap();
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `berth serve` on a free loopback port and `data_dir`, with `args` and the admin's
/// password, expecting it to refuse to start: to stop by itself, with an error, within
/// `within`. Returns its standard error; panics with it if the process is still running
/// then, or exited 0.
#[track_caller]
pub fn serve_expecting_exit(data_dir: &Path, args: &[&str], within: Duration) -> String {
    serve_expecting_exit_status(data_dir, args, within).1
}

/// [`serve_expecting_exit`], with the exit status.
#[track_caller]
pub fn serve_expecting_exit_status(
    data_dir: &Path,
    args: &[&str],
    within: Duration,
) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(berth_bin())
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth serve");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let what = args.join(" ");
    let status = status.unwrap_or_else(|| {
        panic!("berth serve {what} kept running past {within:?}; stderr:\n{stderr}")
    });
    assert!(
        !status.success(),
        "berth serve {what} must exit with an error, exited {status}; stderr:\n{stderr}"
    );
    (status, stderr)
}

/// `berth serve`'s exit status when a connected registry stops for a reason a restart
/// cannot mend (retired by its root, held by another instance).
pub const EXIT_RETIRED: i32 = 3;

/// `Authorization: Basic …` for the admin.
pub fn admin_authorization() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
    )
}

/// A blocking HTTP client builder that sends the admin's Basic credentials on every request.
pub fn admin_client_builder() -> reqwest::blocking::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        admin_authorization().parse().expect("a valid header value"),
    );
    berth_server::tls::install_crypto_provider();
    reqwest::blocking::Client::builder().default_headers(headers)
}

/// A blocking HTTP client that sends the admin's Basic credentials on every request.
pub fn admin_client() -> reqwest::blocking::Client {
    admin_client_builder()
        .build()
        .expect("build an HTTP client")
}

/// Returns whether `program` is on the PATH. End-to-end tests fail (never skip) when a
/// client they need is missing, with a message that says how to install it.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed; run the README's test command, which installs it \
         (apt-get install -y skopeo podman buildah umoci docker.io docker-registry)"
    );
}
