//! Real services for Berth's tests (PostgreSQL, nginx), started by the tests that need them and stopped when
//! they are dropped: never mocks. `scripts/test.sh` installs the Debian packages; a test run
//! without them fails with a message that says which package is missing.

pub mod nginx;
pub mod postgres;

use std::net::TcpListener;

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
