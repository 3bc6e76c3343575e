//! Metrics, health and logs, end to end with the real binary and real clients:
//!
//! - `--metrics-listen`: an image pushed with skopeo moves the request, byte and content
//!   metrics; a wrong password moves the login failures; `promtool check metrics` accepts
//!   the scrape; OpenMetrics is served when asked for;
//! - `/healthz` and `/readyz` answer on both listeners; with the login server denying every
//!   address, loopback probes still get them (and the refusal is counted by cause);
//! - `/readyz` turns `503` naming `storage` when the data directory's disk is full, and back;
//! - a connected registry's per-link sync metrics move on both sides of the link;
//! - `--log-format json` writes JSON lines; the access log has a line per request with the
//!   caller's name and never its password or access token; `--access-log off` silences it.

mod authn;
mod clients;
mod common;
mod sites;

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use authn::{Cred, Manage, poll_until, send};
use clients::{Containers, OciLayout};
use common::{Berth, free_port};
use serde_json::{Value, json};
use sites::{connected, skopeo_push, wait_manifest, wait_online};

fn metrics_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// An unauthenticated GET, through the harness's `send` (a failure to send is retried once
/// and reported with its whole cause).
fn get(url: &str, accept: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    let response = send(&authn::client(), "GET", url, &Cred::None, &headers, None);
    let text = String::from_utf8(response.body)
        .unwrap_or_else(|e| panic!("GET {url}: a body that is not UTF-8: {e}"));
    (response.status, text)
}

fn scrape(metrics: SocketAddr) -> String {
    let (status, text) = get(&format!("http://{metrics}/metrics"), None);
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the sample named exactly `series` (name and labels as printed), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Waits until `series` reaches at least `min` (content counts are read at most every 5 s).
#[track_caller]
fn wait_sample(metrics: SocketAddr, series: &str, min: f64) -> f64 {
    poll_until(Duration::from_secs(30), series, || {
        let text = scrape(metrics);
        match sample(&text, series) {
            Some(v) if v >= min => Ok(v),
            other => Err(format!("{series} is {other:?}, want at least {min}")),
        }
    })
}

#[track_caller]
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package `prometheus`; scripts/test.sh installs it)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the scrape: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_push_moves_the_metrics_and_promtool_accepts_them() {
    common::require("skopeo");
    let metrics = metrics_addr();
    let addr = metrics.to_string();
    let berth = Berth::start_with(&["--metrics-listen", &addr]);

    let before = scrape(metrics);
    assert_eq!(sample(&before, "berth_blobs"), Some(0.0), "{before}");
    promtool_accepts(&before);

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    layout.put_image("amd64", "hello.txt", b"hello, metrics", Some("v1"));
    skopeo_push(&containers, layout.reference("v1"), &berth, "team/app:v1");
    // A wrong password, counted as a login failure.
    let refused = send(
        &authn::client(),
        "GET",
        &format!("{}/v2/", berth.url),
        &Cred::basic("admin", "not-the-password"),
        &[],
        None,
    );
    assert_eq!(refused.status, 401);

    let text = scrape(metrics);
    promtool_accepts(&text);
    let at_least = |series: &str, min: f64| {
        let v = sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(v >= min, "{series} = {v}, want at least {min}");
    };
    at_least(
        r#"berth_http_requests_total{route="manifest",method="PUT",code="201"}"#,
        1.0,
    );
    at_least(
        r#"berth_http_requests_total{route="upload",method="PUT",code="201"}"#,
        1.0,
    );
    at_least(
        r#"berth_http_request_body_bytes_total{route="upload"}"#,
        30.0,
    );
    at_least(
        r#"berth_http_request_duration_seconds_count{route="manifest"}"#,
        1.0,
    );
    at_least("berth_login_failures_total", 1.0);
    assert!(
        !text.contains("team/app"),
        "no repository names without --metrics-repository-labels"
    );
    // Content counts are cached for a few seconds: they arrive at the next read.
    wait_sample(metrics, "berth_blobs", 2.0);
    wait_sample(metrics, "berth_manifests", 1.0);
    wait_sample(metrics, "berth_repositories", 1.0);
    wait_sample(metrics, "berth_blobs_stored_bytes", 30.0);

    // OpenMetrics, for a scraper that asks for it.
    let (status, open) = get(
        &format!("http://{metrics}/metrics"),
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert_eq!(status, 200);
    assert!(open.ends_with("# EOF\n"), "{open}");

    // Health on both listeners; the metrics listener serves nothing else.
    for base in [berth.url.clone(), format!("http://{metrics}")] {
        assert_eq!(get(&format!("{base}/healthz"), None).0, 200);
        let (status, body) = get(&format!("{base}/readyz"), None);
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["database"], "ok");
        assert_eq!(body["checks"]["storage"], "ok");
    }
    assert_eq!(get(&format!("http://{metrics}/v2/"), None).0, 404);
}

#[test]
fn health_answers_loopback_probes_whatever_the_network_rules() {
    let metrics = metrics_addr();
    let addr = metrics.to_string();
    let berth = Berth::start_with(&["--metrics-listen", &addr]);
    let manage = Manage::new(&berth.url);
    let resp = manage.call(
        "PATCH",
        "/berth/v1/registry",
        Some(json!({"default_action": "Deny"})),
    );
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(get(&format!("{}/v2/", berth.url), None).0, 403);
    assert_eq!(get(&format!("{}/healthz", berth.url), None).0, 200);
    assert_eq!(get(&format!("{}/readyz", berth.url), None).0, 200);
    let text = scrape(metrics);
    let refused = sample(
        &text,
        r#"berth_network_refusals_total{cause="ip_not_allowed"}"#,
    );
    assert!(refused >= Some(1.0), "{text}");
}

#[test]
fn readyz_fails_while_the_disk_is_full() {
    let temp = tempfile::tempdir().unwrap();
    let disk = temp.path().join("disk");
    let tmpfs = common::tmpfs::Tmpfs::mount(&disk, "64m");
    let berth = Berth::with_data_dir(&disk.join("data"), &[]);
    let readyz = format!("{}/readyz", berth.url);
    assert_eq!(get(&readyz, None).0, 200);

    // No page left: the readiness probe cannot write its byte.
    tmpfs.resize(&tmpfs.used().to_string());
    let (status, body) = get(&readyz, None);
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "not ready");
    assert!(
        body["failing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "storage"),
        "{body}"
    );
    assert_ne!(body["checks"]["storage"], "ok");
    // The process itself is fine.
    assert_eq!(get(&format!("{}/healthz", berth.url), None).0, 200);

    tmpfs.resize("64m");
    let (status, body) = get(&readyz, None);
    assert_eq!(status, 200, "{body}");
}

/// While a ReadWrite registry's sync window is closed, its local changes wait for it, and
/// the backlog gauge counts them.
#[test]
fn the_backlog_counts_local_changes_waiting_for_the_window() {
    common::require("skopeo");
    let site_metrics = metrics_addr();
    let root = Berth::start();
    let manage = Manage::new(&root.url);
    let shop_cs = connected(
        &manage,
        json!({"name": "shop9", "mode": "ReadWrite", "repositories": ["hello-world"],
               "sync_schedule": "0 0 1 1 *", "sync_window": "PT1H"}),
    );
    let shop = Berth::start_with(&[
        "--connection-string",
        &shop_cs,
        "--metrics-listen",
        &site_metrics.to_string(),
    ]);
    wait_online(&manage, "shop9");
    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    layout.put_image("amd64", "local.txt", b"pushed on the site", Some("local"));
    skopeo_push(
        &containers,
        layout.reference("local"),
        &shop,
        "hello-world:local",
    );
    // A manifest put and a tag put, waiting for January the first.
    wait_sample(
        site_metrics,
        r#"berth_sync_backlog_changes{link="parent"}"#,
        2.0,
    );
}

#[test]
fn sync_metrics_move_on_both_sides_of_a_link() {
    common::require("skopeo");
    let (root_metrics, site_metrics) = (metrics_addr(), metrics_addr());
    let root = Berth::start_with(&["--metrics-listen", &root_metrics.to_string()]);
    let manage = Manage::new(&root.url);
    let factory_cs = connected(
        &manage,
        json!({"name": "factory", "mode": "ReadWrite", "repositories": ["hello-world"]}),
    );
    let factory = Berth::start_with(&[
        "--connection-string",
        &factory_cs,
        "--metrics-listen",
        &site_metrics.to_string(),
    ]);
    wait_online(&manage, "factory");

    let containers = Containers::new();
    let mut layout = OciLayout::create(&containers.work("layout"));
    let down = layout.put_image("amd64", "down.txt", b"from the root, down", Some("down"));
    let up = layout.put_image("amd64", "up.txt", b"from the site, up", Some("up"));
    skopeo_push(
        &containers,
        layout.reference("down"),
        &root,
        "hello-world:down",
    );
    wait_manifest(&factory, &Cred::admin(), "hello-world", "down", 200);
    skopeo_push(
        &containers,
        layout.reference("up"),
        &factory,
        "hello-world:up",
    );
    wait_manifest(&root, &Cred::admin(), "hello-world", "up", 200);
    assert_ne!(down.layer_digest, up.layer_digest);

    // The site: bytes moved both ways, a recent success, no lag left.
    wait_sample(
        site_metrics,
        r#"berth_sync_transferred_bytes_total{link="parent",direction="down"}"#,
        1.0,
    );
    wait_sample(
        site_metrics,
        r#"berth_sync_transferred_bytes_total{link="parent",direction="up"}"#,
        1.0,
    );
    let last = wait_sample(
        site_metrics,
        r#"berth_sync_last_success_timestamp_seconds{link="parent"}"#,
        1.0,
    );
    assert!(last >= berth_oci::time::unix_now() as f64 - 120.0, "{last}");
    poll_until(Duration::from_secs(30), "lag back to 0", || {
        let text = scrape(site_metrics);
        match (
            sample(&text, r#"berth_sync_lag_changes{link="parent"}"#),
            sample(&text, r#"berth_sync_backlog_changes{link="parent"}"#),
        ) {
            (Some(0.0), Some(0.0)) => Ok(()),
            other => Err(format!("lag and backlog {other:?}")),
        }
    });
    // The root: its child's link, seen from the messages it asks for.
    wait_sample(
        root_metrics,
        r#"berth_sync_last_success_timestamp_seconds{link="child/factory"}"#,
        1.0,
    );
    let text = scrape(root_metrics);
    assert!(
        sample(&text, r#"berth_sync_lag_changes{link="child/factory"}"#).is_some(),
        "{text}"
    );
    promtool_accepts(&text);
    promtool_accepts(&scrape(site_metrics));
    // A connected registry is ready once its configuration is loaded.
    let (status, body) = get(&format!("http://{site_metrics}/readyz"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""configuration":"ok""#), "{body}");
}

/// Runs `berth serve` with `args`, standard error to a file; returns the process, its
/// address and the file.
fn serve_logging(data_dir: &Path, args: &[&str], log: &Path) -> (std::process::Child, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(common::berth_bin())
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "info")
        .env("BERTH_ADMIN_PASSWORD", common::ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://{addr}");
    poll_until(Duration::from_secs(30), "berth listens", || {
        std::net::TcpStream::connect(&addr)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    (child, url)
}

/// SIGTERM and wait: the access log is flushed on the way out.
fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

#[test]
fn json_logs_and_an_access_log_without_secrets() {
    let temp = tempfile::tempdir().unwrap();
    let log = temp.path().join("stderr.log");
    let (child, url) = serve_logging(&temp.path().join("data"), &["--log-format", "json"], &log);
    let manage = Manage::new(&url);
    manage.create_scope_map("all-read", &[("*", &["content/read", "metadata/read"])]);
    let password = manage.create_token("ci-reader", "all-read", None).password1;
    let http = authn::client();
    // Basic with the token's password, then an access token from it, used as Bearer.
    let basic = send(
        &http,
        "GET",
        &format!("{url}/v2/"),
        &Cred::basic("ci-reader", &password),
        &[],
        None,
    );
    assert_eq!(basic.status, 200);
    let token = send(
        &http,
        "GET",
        &format!("{url}/oauth2/token?service=x&scope=repository:team/app:pull"),
        &Cred::basic("ci-reader", &password),
        &[],
        None,
    )
    .json("token")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = http
        .get(format!("{url}/v2/team/app/manifests/v1"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(bearer.status().as_u16(), 404);
    stop(child);

    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "registry started"),
        "{text}"
    );
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "berth::access")
        .collect();
    let manifest = access
        .iter()
        .find(|l| l["fields"]["route"] == "manifest")
        .unwrap_or_else(|| panic!("no manifest line in {text}"));
    assert_eq!(manifest["fields"]["repository"], "team/app");
    assert_eq!(manifest["fields"]["status"], 404);
    assert_eq!(manifest["fields"]["user"], "ci-reader");
    assert_eq!(manifest["fields"]["method"], "GET");
    assert_eq!(manifest["fields"]["client"], "127.0.0.1");
    assert!(
        access
            .iter()
            .any(|l| l["fields"]["route"] == "base" && l["fields"]["user"] == "ci-reader"),
        "{text}"
    );
    // The routes whose handlers authenticate the caller name it too: the management calls
    // the admin made, the token the token's login asked for.
    for (route, method, user) in [("manage", "POST", "admin"), ("token", "GET", "ci-reader")] {
        assert!(
            access.iter().any(|l| l["fields"]["route"] == route
                && l["fields"]["method"] == method
                && l["fields"]["user"] == user),
            "no {method} {route} line naming {user} in {text}"
        );
    }
    // One line per request: the management calls, /v2/, the token, the manifest.
    assert!(access.len() >= 5, "{text}");
    for secret in [password.as_str(), token.as_str(), common::ADMIN_PASSWORD] {
        assert!(!text.contains(secret), "a secret in the log:\n{text}");
    }

    // Switched off: no access line, the other logs stay.
    let log = temp.path().join("off.log");
    let (child, url) = serve_logging(&temp.path().join("data2"), &["--access-log", "off"], &log);
    assert_eq!(get(&format!("{url}/v2/"), None).0, 401);
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("registry started"), "{text}");
    assert!(!text.contains("berth::access"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes when standard error is a file"
    );
}

#[test]
fn repository_labels_count_without_the_access_log() {
    let metrics = metrics_addr();
    let addr = metrics.to_string();
    let berth = Berth::start_with(&[
        "--metrics-listen",
        &addr,
        "--metrics-repository-labels",
        "--access-log",
        "off",
    ]);
    sites::push_image(&berth, "team/app", "v1", b"labelled");
    wait_sample(
        metrics,
        r#"berth_repository_requests_total{repository="team/app",route="manifest"}"#,
        1.0,
    );
}
