//! Real services for Berth's tests, started by the tests that need them and stopped when
//! they are dropped: never mocks. `scripts/test.sh` installs them (Debian packages,
//! s3s-fs with cargo and Azurite with npm into `~/.cache/berth-test-tools`); a test run
//! without them fails with a message that says how to install what is missing.
//!
//! - [`postgres`]: PostgreSQL (`initdb`, `pg_ctl`);
//! - [`nginx`]: nginx as a load balancer in front of several nodes;
//! - [`s3`]: s3s-fs, an S3 server that checks signatures;
//! - [`azurite`]: Azurite's Azure Blob server.

pub mod azurite;
pub mod nginx;
pub mod postgres;
mod process;
pub mod s3;

pub use process::tools_dir;

use std::net::TcpListener;

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
