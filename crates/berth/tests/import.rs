//! `berth import` end to end: a live `berth serve` fetches images from another live
//! registry, and skopeo pulls them back from it with the source's digests.
//!
//! - from another Berth (which asks for credentials: the Docker Bearer flow), with its admin
//!   and with a token: one image, a multi-platform index with a signature of one of its
//!   images (`--include-referrers`), the same image again into another repository (every
//!   blob linked, no byte fetched);
//! - from CNCF distribution (Debian's `docker-registry`), anonymously: an image, an index,
//!   and a signature found through the referrers fallback tag (distribution 2.8 has no
//!   referrers API);
//! - a blob transfer cut part way resumes from where it stopped (`Range`);
//! - a source serving TLS with a private CA is trusted through `--source-ca-cert`, and
//!   refused without it;
//! - wrong or missing credentials, an unknown tag, an unreachable source, a tag on another
//!   image without `--force`, plain HTTP off this machine: clear errors naming the source,
//!   and nothing stored;
//! - `--no-wait`, `import show`, `import list`, `import cancel`.

mod authn;
mod clients;
mod common;
mod proxy;
mod sites;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authn::{Cred, Manage, expect_status, send};
use clients::{Containers, Image, OciLayout, layout_descriptor, run};
use common::cli::{Cli, assert_contains, assert_success};
use common::{ADMIN_PASSWORD, Berth, free_port};
use proxy::{Proxy, incompressible};
use serde_json::{Value, json};
use sites::catalog;

/// Images built offline in an OCI layout: `v1` (amd64), `multi` (an index over `v1` and an
/// arm64 image), `sig` (a signature whose subject is `v1`).
struct Images {
    layout: OciLayout,
    v1: Image,
    arm: Image,
    index: (Value, Vec<u8>),
    signature: Value,
}

fn images(containers: &Containers) -> Images {
    let mut layout = OciLayout::create(&containers.work("layout"));
    let v1 = layout.put_image("amd64", "hello.txt", b"hello from the source", Some("v1"));
    let arm = layout.put_image("arm64", "hello.txt", b"hello, arm", None);
    let index = layout.put_index(&[("amd64", &v1), ("arm64", &arm)], "multi");
    let (signature, _) = layout.put_artifact(
        "application/vnd.example.signature.v1",
        &v1.descriptor,
        b"signed by the source",
        "sig",
        "sig",
    );
    Images {
        layout,
        v1,
        arm,
        index,
        signature,
    }
}

/// `skopeo copy --all` of layout tag `tag` to `docker://{host}/{target}`, with `creds`.
fn push(
    containers: &Containers,
    layout: &OciLayout,
    tag: &str,
    host: &str,
    target: &str,
    creds: Option<&str>,
) {
    let mut command = containers.skopeo();
    command.args(["copy", "--all", "--dest-tls-verify=false"]);
    if let Some(creds) = creds {
        command.args(["--dest-creds", creds]);
    }
    run(command
        .arg(layout.reference(tag))
        .arg(format!("docker://{host}/{target}")));
}

/// Pulls `reference` (`repository:tag`) from `target` with skopeo (every platform) into a
/// fresh OCI layout; returns the digest of what was pulled and the layout's folder.
fn pull(
    containers: &Containers,
    target: &Berth,
    reference: &str,
    folder: &str,
) -> (String, PathBuf) {
    let dir = containers.work(folder);
    run(containers
        .skopeo()
        .args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--src-creds",
            &target.admin_creds(),
        ])
        .arg(format!("docker://{}/{reference}", target.host))
        .arg(format!("oci:{}:pulled", dir.display())));
    let digest = layout_descriptor(&dir, "pulled")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    (digest, dir)
}

/// `berth import <args> -o json`, with `password` on standard input when given; must
/// succeed. Returns the job.
#[track_caller]
fn import(cli: &Cli, args: &[&str], password: Option<&str>) -> Value {
    let mut all = vec!["import"];
    all.extend(args);
    all.extend(["-o", "json"]);
    if password.is_some() {
        all.push("--password-stdin");
    }
    let out = cli.run_with_stdin(&all, &format!("{}\n", password.unwrap_or_default()));
    assert_success(&out, &all.join(" "));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let job: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "`berth {}` printed invalid JSON ({e}):\n{stdout}",
            all.join(" ")
        )
    });
    assert_eq!(job["state"], "Succeeded", "{job}");
    assert!(job["error"].is_null(), "{job}");
    job
}

/// `berth import <args>` that must fail with exit 1 and nothing on standard output;
/// returns standard error.
#[track_caller]
fn import_fails(cli: &Cli, args: &[&str], password: Option<&str>) -> String {
    let mut all = vec!["import"];
    all.extend(args);
    if password.is_some() {
        all.push("--password-stdin");
    }
    let out = cli.run_with_stdin(&all, &format!("{}\n", password.unwrap_or_default()));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "`berth {}` should exit 1; stdout:\n{}\nstderr:\n{stderr}",
        all.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "`berth {}` failed but printed on stdout:\n{}",
        all.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// The digests of the manifests the referrers API lists for `digest` in `repository`.
fn referrers(berth: &Berth, repository: &str, digest: &str) -> Vec<String> {
    let resp = send(
        &authn::client(),
        "GET",
        &format!("{}/v2/{repository}/referrers/{digest}", berth.url),
        &Cred::admin(),
        &[],
        None,
    );
    expect_status(&resp, 200, "the referrers");
    resp.json("the referrers")["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn imports_images_and_indexes_from_another_berth_through_its_token_flow() {
    common::require("skopeo");
    let source = Berth::start();
    let target = Berth::start();
    let containers = Containers::new();
    let built = images(&containers);
    for tag in ["v1", "multi", "sig"] {
        let target_ref = format!("hello-world:{tag}");
        push(
            &containers,
            &built.layout,
            tag,
            &source.host,
            &target_ref,
            Some(&source.admin_creds()),
        );
    }
    // A token that may only pull, for the second import.
    let manage = Manage::new(&source.url);
    manage.create_scope_map("hello-pull", &[("hello-world", &["content/read"])]);
    let robot = manage.create_token("robot", "hello-pull", None).password1;
    let cli = Cli::logged_in(&target);

    // One image, with the source's admin: the Bearer flow (401, token, retry).
    let source_v1 = format!("{}/hello-world:v1", source.host);
    let job = import(
        &cli,
        &[
            "--source",
            &source_v1,
            "--image",
            "app:v1",
            "--username",
            "admin",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert_eq!(job["digest"], built.v1.digest().as_str());
    assert_eq!(job["repository"], "app");
    assert_eq!(job["tags"], json!(["v1"]));
    assert_eq!(job["source"], source_v1.as_str());
    assert_eq!(job["progress"]["blobs"], 2);
    assert_eq!(job["progress"]["blobs_done"], 2);
    assert_eq!(job["progress"]["blobs_reused"], 0);
    assert_eq!(job["progress"]["manifests_done"], 1);
    let (pulled, dir) = pull(&containers, &target, "app:v1", "pulled-v1");
    assert_eq!(pulled, built.v1.digest());
    let layer = clients::read_layout_blob(&dir, &built.v1.layer_digest);
    assert_eq!(clients::sha256_digest(&layer), built.v1.layer_digest);

    // The index, with every child and the signature of a child, with the pull-only token.
    let job = import(
        &cli,
        &[
            "--source",
            &format!("{}/hello-world:multi", source.host),
            "--image",
            "app:multi",
            "--image",
            "app:latest",
            "--include-referrers",
            "--username",
            "robot",
        ],
        Some(&robot),
    );
    let index_digest = built.index.0["digest"].as_str().unwrap();
    assert_eq!(job["digest"], index_digest);
    assert_eq!(job["media_type"], clients::OCI_INDEX);
    assert_eq!(job["tags"], json!(["multi", "latest"]));
    assert_eq!(job["progress"]["referrers"], 1);
    // The amd64 image was imported before, whole: it is neither fetched nor walked. The
    // index, the arm64 image and the signature are (with their 4 blobs).
    assert_eq!(job["progress"]["manifests"], 3, "{job}");
    assert_eq!(job["progress"]["blobs"], 4, "{job}");
    let (pulled, _) = pull(&containers, &target, "app:latest", "pulled-multi");
    assert_eq!(pulled, index_digest);
    let (pulled, _) = pull(
        &containers,
        &target,
        &format!("app@{}", built.arm.digest()),
        "pulled-arm",
    );
    assert_eq!(pulled, built.arm.digest());
    assert_eq!(
        referrers(&target, "app", &built.v1.digest()),
        vec![built.signature["digest"].as_str().unwrap().to_owned()]
    );

    // The same image into another repository: every blob is linked, not fetched.
    let job = import(
        &cli,
        &[
            "--source",
            &source_v1,
            "--image",
            "copy/app",
            "--username",
            "admin",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert_eq!(
        job["tags"],
        json!(["v1"]),
        "an image without a tag takes the source's"
    );
    assert_eq!(job["progress"]["blobs_reused"], 2, "{job}");
    assert_eq!(job["progress"]["bytes_done"], 0, "{job}");
    let (pulled, _) = pull(&containers, &target, "copy/app:v1", "pulled-copy");
    assert_eq!(pulled, built.v1.digest());

    // Importing again what is here is no conflict; a tag on another image is, until forced.
    import(
        &cli,
        &[
            "--source",
            &source_v1,
            "--image",
            "app:v1",
            "--username",
            "admin",
        ],
        Some(ADMIN_PASSWORD),
    );
    let source_arm = format!("{}/hello-world@{}", source.host, built.arm.digest());
    let stderr = import_fails(
        &cli,
        &[
            "--source",
            &source_arm,
            "--image",
            "app:v1",
            "--username",
            "admin",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert_contains(&stderr, "CONFLICT");
    assert_contains(&stderr, "--force");
    let job = import(
        &cli,
        &[
            "--source",
            &source_arm,
            "--image",
            "app:v1",
            "--force",
            "--username",
            "admin",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert_eq!(job["digest"], built.arm.digest().as_str());
    let (pulled, _) = pull(&containers, &target, "app:v1", "pulled-forced");
    assert_eq!(pulled, built.arm.digest());
}

/// Debian's `docker-registry` (CNCF distribution 2.8) on a free loopback port, anonymous,
/// stopped when dropped.
struct Distribution {
    host: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Distribution {
    fn start() -> Self {
        common::require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: berth-import-test\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        // It reads REGISTRY_* variables as configuration: give it none.
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            // It logs every 404 (skopeo's probes, the referrers fallback) at error level.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = authn::client();
        loop {
            let up = http
                .get(format!("http://{host}/v2/"))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Distribution {
            host,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes, in `layout`, the referrers fallback index of `subject` (tag `sha256-<hex>`)
/// listing `referrer`, as tools do for registries without the referrers API.
fn fallback_tag(layout: &mut OciLayout, subject: &str, referrer: &Value) -> String {
    let tag = subject.replace(':', "-");
    let mut entry = referrer.clone();
    entry["artifactType"] = json!("application/vnd.example.signature.v1");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": clients::OCI_INDEX,
        "manifests": [entry],
    });
    layout.put_manifest(&index, Some(&tag));
    tag
}

#[test]
fn imports_from_cncf_distribution_anonymously() {
    common::require("skopeo");
    let distribution = Distribution::start();
    let target = Berth::start();
    let containers = Containers::new();
    let mut built = images(&containers);
    let fallback = fallback_tag(&mut built.layout, &built.v1.digest(), &built.signature);
    for tag in ["v1", "multi", fallback.as_str()] {
        push(
            &containers,
            &built.layout,
            tag,
            &distribution.host,
            &format!("team/hello:{tag}"),
            None,
        );
    }
    let cli = Cli::logged_in(&target);

    // An image, with its signature found through the fallback tag.
    let job = import(
        &cli,
        &[
            "--source",
            &format!("{}/team/hello:v1", distribution.host),
            "--include-referrers",
        ],
        None,
    );
    assert_eq!(
        job["repository"], "team/hello",
        "the source's repository by default"
    );
    assert_eq!(job["tags"], json!(["v1"]));
    assert_eq!(job["digest"], built.v1.digest().as_str());
    assert_eq!(job["progress"]["referrers"], 1, "{job}");
    let (pulled, _) = pull(&containers, &target, "team/hello:v1", "pulled-v1");
    assert_eq!(pulled, built.v1.digest());
    assert_eq!(
        referrers(&target, "team/hello", &built.v1.digest()),
        vec![built.signature["digest"].as_str().unwrap().to_owned()]
    );

    // The index, by digest: stored by digest, under no tag.
    let index_digest = built.index.0["digest"].as_str().unwrap();
    let job = import(
        &cli,
        &[
            "--source",
            &format!("{}/team/hello@{index_digest}", distribution.host),
            "--image",
            "mirror/hello",
        ],
        None,
    );
    assert_eq!(job["tags"], json!([]));
    assert_eq!(job["progress"]["manifests"], 3);
    let (pulled, _) = pull(
        &containers,
        &target,
        &format!("mirror/hello@{index_digest}"),
        "pulled-index",
    );
    assert_eq!(pulled, index_digest);

    // An unknown tag: the source is named, and nothing is stored.
    let stderr = import_fails(
        &cli,
        &[
            "--source",
            &format!("{}/team/hello:nope", distribution.host),
            "--image",
            "ghost:v1",
        ],
        None,
    );
    assert_contains(&stderr, "MANIFEST_UNKNOWN");
    assert_contains(&stderr, &format!("{}/team/hello", distribution.host));
    assert!(!catalog(&target).contains(&"ghost".to_owned()));
}

#[test]
fn a_cut_transfer_resumes_where_it_stopped() {
    let source = Berth::start();
    let target = Berth::start();
    let layer = incompressible(3 << 20, 7);
    let digest = sites::push_image(&source, "big", "v1", &layer);
    // The first connection to carry more than 1 MB back is cut: mid-layer.
    let proxy = Proxy::cutting("127.0.0.1".parse().unwrap(), source.addr, 1 << 20);
    let cli = Cli::logged_in(&target);
    let job = import(
        &cli,
        &[
            "--source",
            &format!("{}/big:v1", proxy.addr),
            "--username",
            "admin",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert_eq!(proxy.cuts(), 1, "the transfer was cut once");
    assert_eq!(job["digest"], digest.as_str());
    assert_eq!(job["progress"]["bytes_done"], job["progress"]["bytes"]);
    // Resumed, not started over: the bytes carried back are about one layer, not 1 MB more.
    assert!(
        proxy.returned() < layer.len() as u64 + (512 << 10),
        "{} bytes for a {} byte layer",
        proxy.returned(),
        layer.len()
    );
    let http = authn::client();
    let resp = send(
        &http,
        "GET",
        &format!(
            "{}/v2/big/blobs/{}",
            target.url,
            authn::sha256_digest(&layer)
        ),
        &Cred::admin(),
        &[],
        None,
    );
    expect_status(&resp, 200, "the imported layer");
    assert!(resp.body == layer, "the imported layer is the source's");
}

#[test]
fn refusals_name_the_source_and_store_nothing() {
    let source = Berth::start();
    let target = Berth::start();
    sites::push_image(&source, "hello-world", "v1", b"a layer");
    let cli = Cli::logged_in(&target);
    let source_v1 = format!("{}/hello-world:v1", source.host);

    // Wrong credentials, and none at all: refused by the source's token service.
    let stderr = import_fails(
        &cli,
        &[
            "--source",
            &source_v1,
            "--image",
            "app:v1",
            "--username",
            "admin",
        ],
        Some("not-the-password"),
    );
    assert_contains(&stderr, "SOURCE_UNAUTHORIZED");
    assert_contains(&stderr, &source.host);
    assert_contains(&stderr, "`admin`");
    assert_contains(&stderr, "--username");
    let stderr = import_fails(&cli, &["--source", &source_v1, "--image", "app:v1"], None);
    assert_contains(&stderr, "SOURCE_UNAUTHORIZED");
    assert_contains(&stderr, "requires credentials");

    // An unknown tag.
    let stderr = import_fails(
        &cli,
        &[
            "--source",
            &format!("{}/hello-world:nope", source.host),
            "--image",
            "app:v1",
            "--username",
            "admin",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert_contains(&stderr, "MANIFEST_UNKNOWN");
    assert_contains(&stderr, "`nope`");

    // Nothing listens there: said at once, without retries.
    let closed = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let stderr = import_fails(
        &cli,
        &[
            "--source",
            &format!("{closed}/hello-world:v1"),
            "--image",
            "app:v1",
        ],
        None,
    );
    assert_contains(&stderr, "SOURCE_UNREACHABLE");
    assert_contains(&stderr, &closed);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // Refused before any job: plain HTTP off this machine, a name that is none.
    let stderr = cli.refused(
        &["import", "--source", "http://192.0.2.1:5000/app:v1"],
        &["refusing plain HTTP", "192.0.2.1:5000", "--source-insecure"],
    );
    assert!(!stderr.contains("started"), "{stderr}");
    cli.refused(
        &["import", "--source", &source_v1, "--image", "Bad/Name"],
        &["`Bad/Name`"],
    );

    assert!(
        catalog(&target).is_empty(),
        "nothing was stored: {:?}",
        catalog(&target)
    );
}

/// A source that accepts connections and never answers.
fn silent_source() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    (listener, host)
}

#[test]
fn jobs_can_be_followed_listed_and_cancelled() {
    let source = Berth::start();
    let target = Berth::start();
    let digest = sites::push_image(&source, "hello-world", "v1", b"a layer");
    let cli = Cli::logged_in(&target);

    // --no-wait answers at once with the job; `show` follows it to its end.
    let out = cli.run_with_stdin(
        &[
            "import",
            "--source",
            &format!("{}/hello-world:v1", source.host),
            "--username",
            "admin",
            "--password-stdin",
            "--no-wait",
            "-o",
            "json",
        ],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert_success(&out, "import --no-wait");
    let started: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        ["Queued", "Running", "Succeeded"].contains(&started["state"].as_str().unwrap()),
        "{started}"
    );
    let id = started["id"].as_str().unwrap().to_owned();
    let done = authn::poll_until(Duration::from_secs(30), "the import to end", || {
        let job = cli.json(&["import", "show", "--id", &id]);
        if job["state"] == "Succeeded" {
            Ok(job)
        } else {
            Err(job.to_string())
        }
    });
    assert_eq!(done["digest"], digest.as_str());
    let table = cli.ok(&["import", "show", "--id", &id]);
    assert_eq!(common::cli::field(&table, "State"), "Succeeded");
    assert_eq!(common::cli::field(&table, "Digest"), digest);

    // A job stuck on a silent source is cancelled; its upload sessions go with it.
    let (_silent, silent) = silent_source();
    let out = cli.run(&[
        "import",
        "--source",
        &format!("{silent}/hello-world:v1"),
        "--image",
        "stuck:v1",
        "--no-wait",
        "-o",
        "json",
    ]);
    assert_success(&out, "import --no-wait of a silent source");
    let stuck: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stuck_id = stuck["id"].as_str().unwrap().to_owned();
    let cancelled = cli.json(&["import", "cancel", "--id", &stuck_id]);
    assert_eq!(cancelled["state"], "Cancelled", "{cancelled}");
    cli.refused(
        &["import", "cancel", "--id", &stuck_id],
        &["finished already"],
    );
    cli.refused(
        &["import", "show", "--id", "no-such-import"],
        &["not known"],
    );

    // Both are listed, the newest first.
    let list = cli.json(&["import", "list"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [stuck_id.as_str(), id.as_str()]);
    let table = cli.ok(&["import", "list"]);
    assert_contains(&table, "Cancelled");
    assert_contains(&table, "stuck:v1");
    assert!(!catalog(&target).contains(&"stuck".to_owned()));
}

#[test]
fn a_source_over_tls_is_trusted_through_its_ca() {
    common::require("openssl");
    let pki = tempfile::tempdir().unwrap();
    clients::test_ca(pki.path());
    clients::server_certificate(pki.path(), "source", "127.0.0.1", "0x1001", "berth-source");
    // The image goes in over plain HTTP; then the same data directory serves TLS.
    let data = tempfile::tempdir().unwrap();
    let mut plain = Berth::with_data_dir(&data.path().join("source"), &[]);
    let digest = sites::push_image(&plain, "hello-world", "v1", b"a layer over TLS");
    plain.terminate();
    let cert = pki.path().join("source.crt");
    let key = pki.path().join("source.key");
    let source = Berth::with_data_dir(
        &data.path().join("source"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let target = Berth::start();
    let cli = Cli::logged_in(&target);
    let source_v1 = format!("https://{}/hello-world:v1", source.host);

    let stderr = import_fails(
        &cli,
        &["--source", &source_v1, "--username", "admin"],
        Some(ADMIN_PASSWORD),
    );
    assert_contains(&stderr, "SOURCE_UNREACHABLE");
    assert_contains(&stderr, "--source-ca-cert");
    let ca = pki.path().join("ca.crt");
    let job = import(
        &cli,
        &[
            "--source",
            &source_v1,
            "--source-ca-cert",
            ca.to_str().unwrap(),
            "--username",
            "admin",
        ],
        Some(ADMIN_PASSWORD),
    );
    assert_eq!(job["digest"], digest.as_str());
    assert_eq!(job["source"], format!("{}/hello-world:v1", source.host));
}
