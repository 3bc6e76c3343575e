//! A throwaway Azure Blob service: Azurite's blob server (Microsoft's emulator, which checks
//! Shared Key signatures) on a loopback port, one container per [`TestAzurite::container`]
//! call, killed on drop. Its account is the emulator's well-known development account.
//!
//! Install: `npm install --prefix ~/.cache/berth-test-tools/azurite azurite@3.37.0`;
//! `scripts/test.sh` does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::process::{Server, find, tools_dir};

/// The emulator's development account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// The development account's published key.
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The Blob service version of the requests this kit makes itself.
const VERSION: &str = "2023-11-03";

/// A running Azurite blob server; killed (and its directory deleted) when dropped.
pub struct TestAzurite {
    server: Server,
    next: AtomicU32,
}

impl TestAzurite {
    /// Starts a server on a free loopback port (a second or two: it is a Node program).
    pub fn start() -> TestAzurite {
        let tools = tools_dir();
        let bin = find(
            "azurite-blob",
            &[tools.join("azurite/node_modules/.bin/azurite-blob")],
            &format!(
                "`npm install --prefix {}/azurite azurite@3.37.0`",
                tools.display()
            ),
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-azurite-")
            .tempdir()
            .expect("a temporary directory");
        let port = crate::free_port();
        let mut command = Command::new(bin);
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path().join("data"))
            .args(["--loose", "--skipApiVersionCheck", "--silent"]);
        TestAzurite {
            server: Server::start("azurite-blob", command, dir, port),
            next: AtomicU32::new(0),
        }
    }

    /// One server for the whole test process, started on first use and stopped by a
    /// watchdog once the process has exited.
    pub fn shared() -> &'static TestAzurite {
        static SHARED: OnceLock<TestAzurite> = OnceLock::new();
        SHARED.get_or_init(|| {
            let server = TestAzurite::start();
            server.server.watch();
            server
        })
    }

    /// The account's URL (path style, as the emulator serves it: `…/<account>/<container>`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.server.port)
    }

    /// Creates a new, empty container (a `Create Container` request signed with the
    /// account key) and returns its name.
    pub fn container(&self) -> String {
        let name = format!("container-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let date = http_date();
        let resource = format!("/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container");
        let to_sign = format!(
            "PUT\n{}x-ms-date:{date}\nx-ms-version:{VERSION}\n{resource}",
            "\n".repeat(11)
        );
        let key = B64.decode(ACCOUNT_KEY).expect("the account key is base64");
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key length");
        mac.update(to_sign.as_bytes());
        let signature = B64.encode(mac.finalize().into_bytes());
        let request = format!(
            "PUT /{ACCOUNT}/{name}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             x-ms-date: {date}\r\nx-ms-version: {VERSION}\r\n\
             Authorization: SharedKey {ACCOUNT}:{signature}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            port = self.server.port
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.server.port)).expect("Azurite");
        stream.write_all(request.as_bytes()).expect("a request");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(
            response.starts_with("HTTP/1.1 201"),
            "Azurite refused to create container {name}:\n{response}\n{}",
            self.log()
        );
        name
    }

    /// An `azblob://` storage URL (Berth's grammar) of a new, empty container, with this
    /// server's endpoint and the development account's key.
    pub fn url(&self) -> String {
        let key: String = url_encode(ACCOUNT_KEY);
        format!(
            "azblob://{}?account={ACCOUNT}&access_key={key}&endpoint={}",
            self.container(),
            self.endpoint()
        )
    }

    /// The server's output so far (for a failing test's message).
    pub fn log(&self) -> String {
        self.server.log()
    }
}

/// The current time as HTTP writes it (`Sat, 05 Dec 2026 08:15:00 GMT`).
fn http_date() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let (days, secs) = (now / 86_400, now % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Percent-encodes everything but unreserved characters (for a query parameter).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates() {
        let date = super::http_date();
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    }
}
