//! A throwaway S3 server: s3s-fs (a real S3 protocol server that checks SigV4 signatures,
//! storing objects as files) on a loopback port, one bucket per [`TestS3::bucket`] call
//! (a bucket is a directory), killed on drop.
//!
//! Install: `cargo install --locked s3s-fs --version 0.14.1 --features binary --root
//! ~/.cache/berth-test-tools` (newer versions need a newer rustc); `scripts/test.sh` does.

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::process::{Server, find, tools_dir};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "berth-test-access";
/// The secret key the server accepts.
pub const SECRET_KEY: &str = "berth-test-secret-key";
/// The region requests are signed for (s3s-fs accepts any).
pub const REGION: &str = "us-east-1";

/// A running s3s-fs; killed (and its directory deleted) when dropped.
pub struct TestS3 {
    server: Server,
    next: AtomicU32,
}

impl TestS3 {
    /// Starts a server on a free loopback port (well under a second).
    pub fn start() -> TestS3 {
        let tools = tools_dir();
        let bin = find(
            "s3s-fs",
            &[tools.join("bin/s3s-fs")],
            &format!(
                "`cargo install --locked s3s-fs --version 0.14.1 --features binary --root {}`",
                tools.display()
            ),
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-s3-")
            .tempdir()
            .expect("a temporary directory");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("the data directory");
        let port = crate::free_port();
        let mut command = Command::new(bin);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&data);
        TestS3 {
            server: Server::start("s3s-fs", command, dir, port),
            next: AtomicU32::new(0),
        }
    }

    /// One server for the whole test process, started on first use and stopped by a
    /// watchdog once the process has exited.
    pub fn shared() -> &'static TestS3 {
        static SHARED: OnceLock<TestS3> = OnceLock::new();
        SHARED.get_or_init(|| {
            let server = TestS3::start();
            server.server.watch();
            server
        })
    }

    /// The server's URL (path-style requests: `<endpoint>/<bucket>/<key>`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Creates a new, empty bucket and returns its name.
    pub fn bucket(&self) -> String {
        let name = format!("bucket-{}", self.next.fetch_add(1, Ordering::Relaxed));
        std::fs::create_dir(self.server.path().join("data").join(&name)).expect("a bucket");
        name
    }

    /// A `s3://` storage URL (Berth's grammar) of a new, empty bucket, with this server's
    /// endpoint, region and credentials.
    pub fn url(&self) -> String {
        format!(
            "s3://{}?endpoint={}&region={REGION}&access_key_id={ACCESS_KEY}&secret_access_key={SECRET_KEY}",
            self.bucket(),
            self.endpoint()
        )
    }

    /// The server's output so far (for a failing test's message).
    pub fn log(&self) -> String {
        self.server.log()
    }
}
