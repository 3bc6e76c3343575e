//! Events end to end, with real processes and a webhook receiver in the test (a small HTTP
//! server that records what it is sent):
//!
//! - a push at the root reaches the receiver once, signed (`X-Berth-Signature` checked with
//!   the secret shown at creation), shaped like the commercial registry's payload; a push
//!   outside the webhook's scope does not;
//! - with the receiver down, a push is retried; the root killed with SIGKILL and restarted
//!   (the receiver back) delivers it then: nothing is lost across a crash;
//! - `berth webhook ping` and `list-events` work from the command line;
//! - `berth audit list` shows the management actions and never a secret;
//! - on a ReadWrite site two levels down, a push matching the site's notification pattern
//!   reaches the root's webhook with `source.connectedRegistry` naming the site; a push that
//!   matches no pattern raises no event;
//! - while the parent refuses a site's events (a proxy answering `503` to them only), the
//!   site reports `EVENTS_FAILING`; once they go through, the event arrives and the detail
//!   is past.

mod authn;
mod clients;
mod common;
mod sites;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use authn::Manage;
use common::Berth;
use common::cli::Cli;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sites::{connected, push_image, wait_online};

/// One call the receiver took: its headers (names lowercase) and body.
struct Call {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Call {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the payload is JSON")
    }
}

/// A webhook receiver on a fixed port, answering 200 to every call; stopped when dropped
/// (and started again on the same port by [`Receiver::start`]).
struct Receiver {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(port: u16, calls: mpsc::Sender<Call>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut headers = HashMap::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or_default();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let length = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let mut stream = reader.into_inner();
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                let _ = calls.send(Call { headers, body });
            }
        });
        Receiver {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The next call within `within` whose payload `wanted` accepts; calls before it that it
/// refuses are returned too, for the caller to check none of them matters.
#[track_caller]
fn next_call(
    calls: &mpsc::Receiver<Call>,
    within: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> (Call, Vec<Value>) {
    let deadline = Instant::now() + within;
    let mut skipped = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match calls.recv_timeout(left) {
            Ok(call) if wanted(&call.json()) => return (call, skipped),
            Ok(call) => skipped.push(call.json()),
            Err(_) => panic!("no matching webhook call within {within:?}; got {skipped:?}"),
        }
    }
}

/// Checks the call's signature with `secret`.
#[track_caller]
fn assert_signed(call: &Call, secret: &str) {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&call.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        call.headers.get("x-berth-signature"),
        Some(&expected),
        "the signature is the HMAC-SHA256 of the body"
    );
}

fn is_push_of(payload: &Value, repository: &str, tag: &str) -> bool {
    payload["action"] == "push"
        && payload["target"]["repository"] == repository
        && payload["target"]["tag"] == tag
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn webhooks_at_the_root_survive_a_crash_and_the_audit_log_records_without_secrets() {
    let port = common::free_port();
    let (tx, calls) = mpsc::channel();
    let receiver = Receiver::start(port, tx.clone());
    let mut root = Berth::start_with(&[
        "--webhook-retry-delay",
        "200ms",
        "--webhook-max-attempts",
        "50",
        "--webhook-timeout",
        "2s",
    ]);
    let cli = Cli::logged_in(&root);
    let created = cli.json(&[
        "webhook",
        "create",
        "--name",
        "hook1",
        "--uri",
        &format!("http://127.0.0.1:{port}/hook"),
        "--actions",
        "push,delete",
        "--scope",
        "hello-world:*",
        "--headers",
        "X-Team=ops",
        "Authorization=Bearer receiver-credential",
    ]);
    let secret = created["secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    assert_eq!(created["headers"], json!(["Authorization", "X-Team"]));
    let shown = cli.json(&["webhook", "show", "--name", "hook1"]);
    assert_eq!(
        shown["secret"],
        Value::Null,
        "the secret is shown only at creation"
    );

    // A push in scope: one signed event, with the commercial registry's fields.
    let digest = push_image(&root, "hello-world", "v1", b"layer one");
    let (call, skipped) = next_call(&calls, WAIT, |p| is_push_of(p, "hello-world", "v1"));
    assert!(skipped.is_empty(), "nothing before it: {skipped:?}");
    assert_signed(&call, &secret);
    assert_eq!(call.headers.get("x-team").map(String::as_str), Some("ops"));
    let payload = call.json();
    assert_eq!(payload["target"]["digest"], digest.as_str());
    assert_eq!(
        payload["target"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(payload["target"]["size"].as_u64().unwrap() > 0);
    assert_eq!(payload["target"]["size"], payload["target"]["length"]);
    assert_eq!(payload["request"]["method"], "PUT");
    assert_eq!(payload["source"]["connectedRegistry"], Value::Null);
    for field in ["id", "timestamp"] {
        assert!(payload[field].is_string(), "{field} in {payload}");
    }

    // Out of scope: no event (the next one the receiver gets is the next one in scope).
    push_image(&root, "other", "v1", b"layer other");

    // The receiver down: the push is retried; the root dies (SIGKILL) before it is
    // delivered; after its restart, with the receiver back, it arrives.
    drop(receiver);
    push_image(&root, "hello-world", "v2", b"layer two");
    std::thread::sleep(Duration::from_millis(1500));
    let retrying = cli.json(&["webhook", "list-events", "--name", "hook1"]);
    assert_eq!(retrying[0]["status"], "retrying", "{retrying}");
    assert_eq!(retrying[0]["tag"], "v2", "{retrying}");
    assert!(retrying[0]["response_code"].is_null());
    root.kill();
    let _receiver = Receiver::start(port, tx.clone());
    root.restart();
    let (call, skipped) = next_call(&calls, WAIT, |p| is_push_of(p, "hello-world", "v2"));
    assert!(
        skipped
            .iter()
            .all(|p| p["target"]["repository"] == "hello-world"),
        "nothing out of scope: {skipped:?}"
    );
    assert_signed(&call, &secret);

    // Ping and the delivery records, from the command line.
    let ping = cli.json(&["webhook", "ping", "--name", "hook1"]);
    assert_eq!(ping["status"], "succeeded", "{ping}");
    assert_eq!(ping["response_code"], 200);
    let (call, _) = next_call(&calls, WAIT, |p| p["action"] == "ping");
    assert_signed(&call, &secret);
    let events = poll(|| {
        let events = cli.json(&["webhook", "list-events", "--name", "hook1"]);
        let done = events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["tag"] == "v2" && e["status"] == "succeeded");
        done.then_some(events)
    });
    let actions: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["tag"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(actions[0], ("ping", ""), "{events}");
    assert!(actions.contains(&("push", "v1")), "{events}");
    assert!(!events.to_string().contains("\"other\""), "{events}");
    let table = cli.ok(&["webhook", "list-events", "--name", "hook1"]);
    assert!(
        table.contains("succeeded") && table.contains("hello-world:v1"),
        "{table}"
    );

    // Idle with a webhook: the deliverer wakes no task (no busy loop).
    let busy = cpu_ticks(root.pid().unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(root.pid().unwrap()) - busy;
    assert!(spent < 50, "an idle registry used {spent} CPU ticks in 2 s");

    // A setting changed, and a deletion: in the audit log with who and from where; no
    // secret anywhere in it.
    cli.ok(&["update", "--anonymous-pull-enabled", "true"]);
    cli.ok(&[
        "webhook", "update", "--name", "hook1", "--status", "disabled",
    ]);
    cli.ok(&["webhook", "delete", "--name", "hook1", "--yes"]);
    let audit = cli.json(&["audit", "list", "--since", "1h"]);
    let text = audit.to_string();
    for secret_text in [
        secret.as_str(),
        "receiver-credential",
        common::ADMIN_PASSWORD,
    ] {
        assert!(
            !text.contains(secret_text),
            "a secret in the audit log: {text}"
        );
    }
    let entries = audit.as_array().unwrap();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("`{action}` in the audit log: {text}"))
    };
    let create = find("POST /berth/v1/webhooks");
    assert_eq!(create["actor"], "admin");
    assert_eq!(create["client"], "127.0.0.1");
    assert_eq!(create["status"], 201);
    let setting = find("PATCH /berth/v1/registry");
    assert_eq!(
        setting["before"]["registry"]["anonymous_pull_enabled"],
        false
    );
    assert_eq!(setting["after"]["registry"]["anonymous_pull_enabled"], true);
    let disabled = find("PATCH /berth/v1/webhooks/{name}");
    assert_eq!(disabled["resource"], "/berth/v1/webhooks/hook1");
    assert_eq!(disabled["before"]["status"], "enabled");
    assert_eq!(disabled["after"]["status"], "disabled");
    assert_eq!(find("DELETE /berth/v1/webhooks/{name}")["status"], 204);
    assert!(
        !entries
            .iter()
            .any(|e| e["action"].as_str().unwrap().starts_with("GET ")),
        "reads are not recorded: {text}"
    );
    let table = cli.ok(&["audit", "list"]);
    assert!(table.contains("POST /berth/v1/webhooks"), "{table}");
    // `--since` in the future: nothing.
    let later = cli.json(&["audit", "list", "--since", "2100-01-01T00:00:00Z"]);
    assert_eq!(later, json!([]));
}

/// The user and system CPU time process `pid` has used, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Polls `f` every 200 ms for up to [`WAIT`].
#[track_caller]
fn poll<T>(f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_site_two_levels_down_raises_the_events_its_patterns_select() {
    let port = common::free_port();
    let (tx, calls) = mpsc::channel();
    let _receiver = Receiver::start(port, tx);
    let root = Berth::start();
    let cli = Cli::logged_in(&root);
    let created = cli.json(&[
        "webhook",
        "create",
        "--name",
        "sitehook",
        "--uri",
        &format!("http://127.0.0.1:{port}/hook"),
        "--actions",
        "push",
        "--scope",
        "*:*",
    ]);
    let secret = created["secret"].as_str().unwrap().to_owned();
    let manage = Manage::new(&root.url);
    let factory_cs = connected(
        &manage,
        json!({"name": "factory", "mode": "ReadWrite", "repositories": ["hello-world", "other"]}),
    );
    let _factory = Berth::start_with(&["--connection-string", &factory_cs]);
    wait_online(&manage, "factory");
    let line3_cs = connected(
        &manage,
        json!({
            "name": "line3", "parent": "factory", "mode": "ReadWrite",
            "repositories": ["hello-world", "other"],
            "notifications": ["hello-world:*:push"],
        }),
    );
    let line3 = Berth::start_with(&["--connection-string", &line3_cs]);
    wait_online(&manage, "line3");

    // Not selected by the pattern first, then selected: the site's events arrive in order,
    // so the selected one arriving alone shows the other raised nothing.
    push_image(&line3, "other", "v1", b"not announced");
    let digest = push_image(&line3, "hello-world", "v1", b"announced");
    let from_line3 = |p: &Value| p["source"]["connectedRegistry"] == "line3";
    let (call, before) = next_call(&calls, WAIT, |p| from_line3(p));
    assert!(
        !before.iter().any(from_line3),
        "only the selected push is raised: {before:?}"
    );
    assert_signed(&call, &secret);
    let payload = call.json();
    assert!(is_push_of(&payload, "hello-world", "v1"), "{payload}");
    assert_eq!(payload["target"]["digest"], digest.as_str());
    assert!(payload["target"]["size"].as_u64().unwrap() > 0);
    // The event is recorded with its source.
    let events = poll(|| {
        let events = cli.json(&["webhook", "list-events", "--name", "sitehook"]);
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["source"] == "line3" && e["status"] == "succeeded")
            .then_some(events)
    });
    assert!(
        !events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["source"] == "line3" && e["repository"] == "other"),
        "{events}"
    );
    // Nothing more from line3 arrives (the non-matching push stays silent).
    std::thread::sleep(Duration::from_secs(2));
    while let Ok(call) = calls.try_recv() {
        let payload = call.json();
        assert!(
            !(from_line3(&payload) && payload["target"]["repository"] == "other"),
            "{payload}"
        );
    }
}

/// A proxy to a parent that refuses `POST …/events` with `503` while `refusing` is set and
/// passes everything else through: a connection whose first request is not refused is
/// forwarded with `Connection: close`, bytes copied both ways until either side closes.
struct EventsGate {
    addr: SocketAddr,
    refusing: Arc<AtomicBool>,
}

impl EventsGate {
    fn start(upstream: SocketAddr) -> EventsGate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let refusing = Arc::new(AtomicBool::new(true));
        let gate = Arc::clone(&refusing);
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || Self::serve(client, upstream, &gate));
            }
        });
        EventsGate { addr, refusing }
    }

    fn serve(client: TcpStream, upstream: SocketAddr, refusing: &AtomicBool) {
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let end = line == "\r\n";
            if !line.to_ascii_lowercase().starts_with("connection:") {
                head.push_str(if end {
                    "connection: close\r\n\r\n"
                } else {
                    &line
                });
            }
            if end {
                break;
            }
        }
        let mut client = client;
        if head.starts_with("POST ")
            && head.lines().next().unwrap().contains("/events ")
            && refusing.load(Ordering::Relaxed)
        {
            let _ = client.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            return;
        }
        let Ok(mut parent) = TcpStream::connect(upstream) else {
            return;
        };
        let _ = parent.write_all(head.as_bytes());
        // What the reader buffered past the head is the start of the body.
        let _ = parent.write_all(reader.buffer());
        let mut to_parent = parent.try_clone().unwrap();
        let mut from_client = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_client, &mut to_parent);
        });
        let _ = std::io::copy(&mut parent, &mut client);
        let _ = client.shutdown(std::net::Shutdown::Both);
    }
}

#[test]
fn events_failing_is_reported_while_events_cannot_go_up_and_cleared_after() {
    let port = common::free_port();
    let (tx, calls) = mpsc::channel();
    let _receiver = Receiver::start(port, tx);
    let root = Berth::start();
    let cli = Cli::logged_in(&root);
    cli.json(&[
        "webhook",
        "create",
        "--name",
        "gatehook",
        "--uri",
        &format!("http://127.0.0.1:{port}/hook"),
        "--actions",
        "push",
    ]);
    let manage = Manage::new(&root.url);
    let cs = connected(
        &manage,
        json!({
            "name": "ship9", "mode": "ReadWrite", "repositories": ["hello-world"],
            "notifications": ["*:push"],
        }),
    );
    let gate = EventsGate::start(root.addr);
    let ship = Berth::start_with(&[
        "--connection-string",
        &cs,
        "--parent-gateway-endpoint",
        &gate.addr.to_string(),
    ]);
    wait_online(&manage, "ship9");
    push_image(&ship, "hello-world", "v1", b"held back");
    let details = |current: bool| {
        let view = sites::view(&manage, "ship9");
        view["status_details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["code"] == "EVENTS_FAILING" && d["resolved_at"].is_null() == current)
    };
    poll(|| details(true).then_some(()));
    gate.refusing.store(false, Ordering::Relaxed);
    let (call, _) = next_call(&calls, WAIT, |p| {
        p["source"]["connectedRegistry"] == "ship9"
    });
    assert!(is_push_of(&call.json(), "hello-world", "v1"));
    poll(|| (details(false) && !details(true)).then_some(()));
    drop(ship);
}

#[test]
fn a_corrected_webhook_address_takes_the_event_being_retried() {
    let dead = common::free_port();
    let port = common::free_port();
    let (tx, calls) = mpsc::channel();
    let _receiver = Receiver::start(port, tx);
    let root = Berth::start_with(&[
        "--webhook-retry-delay",
        "1s",
        "--webhook-max-attempts",
        "50",
    ]);
    let cli = Cli::logged_in(&root);
    cli.json(&[
        "webhook",
        "create",
        "--name",
        "hook2",
        "--uri",
        &format!("http://127.0.0.1:{dead}/hook"),
        "--actions",
        "push",
    ]);
    push_image(&root, "app", "v1", b"layer for a wrong address");
    poll(|| {
        let events = cli.json(&["webhook", "list-events", "--name", "hook2"]);
        (events[0]["status"] == "retrying").then_some(())
    });
    // The address corrected while the event is being retried: the next attempt goes
    // there, not the remaining 49 to the old one.
    cli.ok(&[
        "webhook",
        "update",
        "--name",
        "hook2",
        "--uri",
        &format!("http://127.0.0.1:{port}/hook"),
    ]);
    next_call(&calls, Duration::from_secs(15), |p| {
        is_push_of(p, "app", "v1")
    });
}
