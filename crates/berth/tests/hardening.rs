//! The red team's checks, against a live `berth serve`: connections that hold the registry
//! (silent sockets, HTTP/2 prefaces, dripping and stalled bodies, idle sockets past the
//! cap), concurrent wrong admin passwords, one process per data directory, and the CLI over
//! TLS.

mod clients;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::cli::Cli;
use reqwest::StatusCode;

/// Reads from `stream` until the server closes it (or resets it); returns how long that
/// took, or `None` if it was still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(start.elapsed()),
        }
    }
}

/// A client that gives up after one second.
fn quick_client() -> reqwest::blocking::Client {
    berth_server::tls::install_crypto_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

#[test]
fn idle_sockets_past_the_cap_do_not_starve_a_client() {
    let berth = common::Berth::start_with(&["--max-connections", "40"]);
    // The open-file soft limit was raised to the hard limit.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", berth.pid().unwrap())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<_> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft limit not raised: {line}");

    // More idle sockets than the cap: silent ones, and HTTP/2 ones that sent only a preface.
    let mut idle = Vec::new();
    for i in 0..100 {
        let mut s = TcpStream::connect(berth.addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .unwrap();
        }
        idle.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let client = quick_client();
    for _ in 0..5 {
        let start = Instant::now();
        let response = client
            .get(format!("{}/v2/", berth.url))
            .send()
            .expect("a real client is served while idle sockets fill the cap");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
    // The oldest idle sockets were the ones shed.
    let mut first = idle.remove(0);
    assert!(closed_within(&mut first, Duration::from_secs(2)).is_some());
}

#[test]
fn silent_preface_only_and_idle_connections_are_closed() {
    let berth = common::Berth::start_with(&[
        "--first-byte-timeout",
        "1s",
        "--header-read-timeout",
        "2s",
        "--idle-timeout",
        "2s",
    ]);
    let limit = Duration::from_secs(6);

    // A TCP connection that sends nothing.
    let mut silent = TcpStream::connect(berth.addr).unwrap();
    // An HTTP/2 connection that sends the preface and an empty SETTINGS frame, then nothing.
    let mut preface = TcpStream::connect(berth.addr).unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    // A keep-alive connection idle after one request.
    let mut keep_alive = TcpStream::connect(berth.addr).unwrap();
    keep_alive
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Half of a request's headers.
    let mut half = TcpStream::connect(berth.addr).unwrap();
    half.write_all(b"GET /v2/ HTTP/1.1\r\nHo").unwrap();

    let start = Instant::now();
    let silent_closed = closed_within(&mut silent, limit).expect("silent socket closed");
    assert!(
        silent_closed < Duration::from_millis(2500),
        "{silent_closed:?}"
    );
    for (what, stream) in [
        ("HTTP/2 preface", &mut preface),
        ("idle keep-alive", &mut keep_alive),
        ("half headers", &mut half),
    ] {
        let left = limit.saturating_sub(start.elapsed());
        assert!(
            closed_within(stream, left).is_some(),
            "{what} connection still open after {limit:?}"
        );
    }
}

/// Sends `head`, then the body one byte every `pause`, until the server answers or closes;
/// returns how long the server took to give up.
fn drip(addr: std::net::SocketAddr, head: &str, pause: Duration, limit: Duration) -> Duration {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(_) => return start.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return start.elapsed(),
        }
        if stream.write_all(b"a").is_err() {
            return start.elapsed();
        }
        std::thread::sleep(pause);
    }
    panic!("the server still waited for the body after {limit:?}");
}

#[test]
fn dripping_and_stalled_bodies_are_cut() {
    let berth = common::Berth::start_with(&["--body-idle-timeout", "2s"]);
    let limit = Duration::from_secs(8);
    // An unauthenticated token request whose body drips a byte every half second.
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
        berth.host
    );
    let took = drip(berth.addr, &head, Duration::from_millis(500), limit);
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A PATCH whose body stalls after a few bytes.
    let client = common::admin_client();
    let response = client
        .post(format!("{}/v2/stall/blobs/uploads/", berth.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let mut stream = TcpStream::connect(berth.addr).unwrap();
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n0123456789",
        berth.host,
        common::admin_authorization()
    )
    .unwrap();
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut answer = [0u8; 512];
    let n = stream.read(&mut answer).unwrap_or(0);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stalled PATCH held for {:?}",
        start.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        n == 0 || !answer.starts_with("HTTP/1.1 2"),
        "a stalled body is not a success: {answer}"
    );
    // The bytes that arrived are kept, as with any cut body.
    let status = client
        .get(format!("{}{location}", berth.url))
        .send()
        .unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(status.headers()["range"], "0-9");
}

#[test]
fn concurrent_wrong_admin_passwords_are_refused_up_front() {
    let berth = common::Berth::start_with(&[
        "--login-failures-per-minute",
        "10",
        "--max-password-checks",
        "2",
    ]);
    berth_server::tls::install_crypto_provider();
    let url = format!("{}/v2/", berth.url);
    let attackers: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                (0..4)
                    .map(|_| {
                        client
                            .get(&url)
                            .basic_auth("admin", Some("wrong"))
                            .send()
                            .unwrap()
                            .status()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    // Meanwhile the admin, from another address, is served promptly.
    let admin = reqwest::blocking::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let start = Instant::now();
    let response = admin
        .get(&url)
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    let statuses: Vec<_> = attackers
        .into_iter()
        .flat_map(|a| a.join().unwrap())
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked, 10, "{statuses:?}");
    assert_eq!(checked + limited, statuses.len());
    // The process never held many Argon2 memory blocks at once.
    let status = std::fs::read_to_string(format!("/proc/{}/status", berth.pid().unwrap())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(peak_kib < 256 * 1024, "peak resident size {peak_kib} KiB");
}

/// Every directory under `dir` is 0700 and every file 0600 (no group or other bits).
fn assert_private(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let expected = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, expected, "{} is {mode:o}", entry.path().display());
        if meta.is_dir() {
            assert_private(&entry.path());
        }
    }
}

#[test]
fn one_process_per_data_directory_and_private_files() {
    let berth = common::Berth::start();
    // Content in every kind of place: a blob, an upload session, the databases.
    let client = common::admin_client();
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"x"))
    );
    let r = client
        .post(format!(
            "{}/v2/modes/blobs/uploads/?digest={digest}",
            berth.url
        ))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .post(format!("{}/v2/modes/blobs/uploads/", berth.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    use std::os::unix::fs::PermissionsExt as _;
    let top = std::fs::metadata(berth.data_dir())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(top, 0o700);
    assert_private(berth.data_dir());

    // A second process on the same directory refuses to start, naming the first.
    let stderr = common::serve_expecting_exit(berth.data_dir(), &[], Duration::from_secs(30));
    let pid = berth.pid().unwrap().to_string();
    assert!(
        stderr.contains("in use") && stderr.contains(&pid),
        "{stderr}"
    );
    // The first one still serves.
    let r = client.get(format!("{}/v2/", berth.url)).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn the_cli_talks_tls_and_refuses_plain_http_afar() {
    common::require("openssl");
    let dir = tempfile::tempdir().unwrap();
    clients::test_ca(dir.path());
    clients::server_certificate(dir.path(), "registry", "127.0.0.1", "7", "berth test");
    let cert = dir.path().join("registry.crt");
    let key = dir.path().join("registry.key");
    let ca = dir.path().join("ca.crt");
    let berth = common::Berth::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("https://{}", berth.host);
    let password = common::ADMIN_PASSWORD;

    // Not trusted: refused, saying what to do.
    let cli = Cli::new();
    let out =
        clients::run_unchecked(&mut cli.command(&["login", &url, "-u", "admin", "-p", password]));
    assert_eq!(out.status.code(), Some(3), "{}", out.report());
    assert!(out.stderr.contains("--ca-cert"), "{}", out.report());

    // --ca-cert: logged in, and later commands use the saved CA.
    clients::run(&mut cli.command(&[
        "login",
        &url,
        "-u",
        "admin",
        "-p",
        password,
        "--ca-cert",
        ca.to_str().unwrap(),
    ]));
    let out = clients::run(&mut cli.command(&["show", "--output", "json"]));
    assert!(out.stdout.contains("anonymous"), "{}", out.report());

    // SSL_CERT_FILE works too, with --server and no saved login.
    let fresh = Cli::new();
    clients::run(
        fresh
            .command(&["show", "--server", &url, "--password", password])
            .env("SSL_CERT_FILE", &ca),
    );

    // Plain HTTP to a registry that is not on this machine needs --insecure, and is refused
    // before anything is sent (`.invalid` names never resolve).
    for args in [
        vec![
            "login",
            "http://registry.invalid:5000",
            "-u",
            "admin",
            "-p",
            password,
        ],
        vec![
            "show",
            "--server",
            "http://registry.invalid:5000",
            "--password",
            password,
        ],
    ] {
        let out = clients::run_unchecked(&mut fresh.command(&args));
        assert_eq!(out.status.code(), Some(2), "{}", out.report());
        assert!(out.stderr.contains("--insecure"), "{}", out.report());
    }
}
