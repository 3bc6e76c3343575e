//! `berth serve --database-url postgres://…` end to end, against a real PostgreSQL server
//! (`berth_testkit`) and real clients:
//!
//! - skopeo pushes an image and pulls it back whole; the data directory holds blobs and no
//!   SQLite database;
//! - what the registry knows (content, tokens) outlives a restart, because it lives in the
//!   database;
//! - a bad URL or an unreachable server stops `berth serve` with a clear message, never
//!   with the password in it;
//! - two nodes on one database and one object store share content and identities: a
//!   manifest pushed through one is served by the other, a tag moved through one is seen by the other at
//!   once (its manifest cache hears of the change), a token made through one logs in on the
//!   other, and one disabled through one is refused by the other on the next request.
//!   (That background work runs on one node at a time is checked where it is decided:
//!   `crates/berth-registry/tests/nodes.rs`.)
//!
//! The conformance suite runs on PostgreSQL as well (`conformance.rs`, `…::on_postgres`).

mod authn;
mod clients;
mod common;
mod sites;

use std::time::Duration;

use authn::{Cred, Manage, TestImage, expect_status, send};
use berth_testkit::postgres::TestPostgres;
use clients::{Containers, OciLayout, run};
use common::Berth;
use common::cli::Cli;
use serde_json::Value;
use sites::skopeo_push;

fn password<'v>(value: &'v Value, slot: &str) -> &'v str {
    value["passwords"]
        .as_array()
        .expect("a passwords array")
        .iter()
        .find(|p| p["name"] == slot)
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("no {slot} in {value}"))
}

#[test]
fn skopeo_round_trips_an_image_and_everything_outlives_a_restart() {
    common::require("skopeo");
    let url = TestPostgres::shared().database();
    let mut berth = Berth::start_with(&["--database-url", &url]);
    let c = Containers::new();
    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image("amd64", "hello.txt", b"hello from postgres\n", Some("v1"));
    skopeo_push(&c, layout.reference("v1"), &berth, "pg/hello:v1");
    let target = format!("docker://{}/pg/hello:v1", berth.host);

    // Identities live in the database too: a token made now logs in after the restart.
    let cli = Cli::logged_in(&berth);
    let token = cli.json(&[
        "token",
        "create",
        "--name",
        "ci-pull",
        "--scope-map",
        "_repositories_pull",
    ]);
    let token_creds = format!("ci-pull:{}", password(&token, "password1"));

    for file in ["metadata.db", "identity.db"] {
        assert!(
            !berth.data_dir().join(file).exists(),
            "{file}: with --database-url, nothing goes to SQLite"
        );
    }

    berth.restart();
    let back = c.work("back");
    run(c
        .skopeo()
        .args(["copy", "--src-tls-verify=false", "--src-creds"])
        .arg(&token_creds)
        .arg(&target)
        .arg(format!("oci:{}:v1", back.display())));
    let pulled = clients::layout_descriptor(&back, "v1");
    assert_eq!(
        pulled["digest"].as_str(),
        Some(image.digest().as_str()),
        "the image pulled after the restart is the one pushed"
    );
    assert_eq!(
        clients::read_layout_blob(&back, &image.layer_digest),
        clients::read_layout_blob(&layout.dir, &image.layer_digest),
        "its layer is whole"
    );
}

#[test]
fn a_bad_database_url_stops_serve_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::serve_expecting_exit(
        &dir.path().join("data"),
        &["--database-url", "mysql://berth:hunter2@127.0.0.1/berth"],
        Duration::from_secs(20),
    );
    assert!(
        out.contains("database_url") && out.contains("postgres://"),
        "{out}"
    );
    assert!(
        !out.contains("hunter2"),
        "the password is never printed: {out}"
    );

    // Nothing listens on this port: serve says it cannot reach the database.
    let port = common::free_port();
    let out = common::serve_expecting_exit(
        &dir.path().join("data"),
        &[
            "--database-url",
            &format!("postgres://berth:hunter2@127.0.0.1:{port}/berth"),
        ],
        Duration::from_secs(60),
    );
    assert!(out.contains("PostgreSQL"), "{out}");
    assert!(
        !out.contains("hunter2"),
        "the password is never printed: {out}"
    );
}

/// A manifest by tag, as the admin: its digest, or the status.
fn tagged_digest(
    http: &reqwest::blocking::Client,
    node: &Berth,
    repo: &str,
    tag: &str,
) -> Result<String, u16> {
    let resp = send(
        http,
        "GET",
        &format!("{}/v2/{repo}/manifests/{tag}", node.url),
        &Cred::admin(),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        None,
    );
    match resp.status {
        200 => Ok(resp
            .header("Docker-Content-Digest")
            .expect("a digest header")),
        other => Err(other),
    }
}

#[test]
fn two_nodes_on_one_database_share_content_and_identities() {
    let url = TestPostgres::shared().database();
    let storage = berth_testkit::s3::TestS3::shared().url();
    let args = [
        "--database-url",
        url.as_str(),
        "--storage-url",
        storage.as_str(),
    ];
    let a = Berth::start_with(&args);
    let b = Berth::start_with(&args);
    let http = authn::client();

    // Pushed through A (blobs and all), served by B from the shared metadata.
    let first = TestImage::new("first");
    authn::push_as_admin(&http, &a.url, "shared/app", "v1", &first);
    assert_eq!(
        tagged_digest(&http, &b, "shared/app", "v1"),
        Ok(first.digest())
    );

    // B caches that manifest; the tag moves through A; B's very next answer is the new one
    // (its cache heard of the change through PostgreSQL before the push was acknowledged,
    // or the answer comes from the database).
    for round in 0..20 {
        let image = TestImage::new(&format!("round {round}"));
        authn::push_as_admin(&http, &a.url, "shared/app", "v1", &image);
        let seen = tagged_digest(&http, &b, "shared/app", "v1");
        assert_eq!(
            seen,
            Ok(image.digest()),
            "round {round}: B serves the tag as moved through A"
        );
    }

    // A token made through A logs in on B; disabled through A, refused by B next.
    let manage_a = Manage::new(&a.url);
    manage_a.create_scope_map(
        "pullers",
        &[("shared/*", &["content/read", "metadata/read"])],
    );
    for round in 0..10 {
        let name = format!("ci-token-{round}");
        let passwords = manage_a.create_token(&name, "pullers", None);
        let cred = Cred::basic(&name, &passwords.password1);
        let get = |node: &Berth| {
            send(
                &http,
                "GET",
                &format!("{}/v2/shared/app/tags/list", node.url),
                &cred,
                &[],
                None,
            )
        };
        expect_status(
            &get(&b),
            200,
            &format!("round {round}: a token made on A, used on B"),
        );
        manage_a.set_token_status(&name, "disabled");
        expect_status(
            &get(&b),
            401,
            &format!("round {round}: disabled on A, refused by B"),
        );
    }
}

#[test]
fn berth_migrate_brings_the_databases_up_and_says_where_they_stand() {
    let url = TestPostgres::shared().database();
    let dir = tempfile::tempdir().unwrap();
    let migrate = |args: &[&str]| {
        let out = std::process::Command::new(common::berth_bin())
            .arg("migrate")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for _ in 0..2 {
        let (ok, said) = migrate(&["--database-url", &url]);
        assert!(ok, "{said}");
        assert!(
            said.contains(
                "in PostgreSQL are up to date: metadata at migration 2, identities at migration 3"
            ),
            "{said}"
        );
    }
    // The embedded databases; refused while a server holds the data directory.
    let (ok, said) = migrate(&[]);
    assert!(ok && said.contains("metadata at migration 4"), "{said}");
    let serving = Berth::with_data_dir(&dir.path().join("data"), &[]);
    let (ok, said) = migrate(&[]);
    assert!(
        !ok && said.contains("in use by another berth process"),
        "{said}"
    );
    drop(serving);
}

#[test]
fn a_node_refuses_to_join_nodes_whose_blobs_it_cannot_read() {
    let url = TestPostgres::shared().database();
    let storage = berth_testkit::s3::TestS3::shared().url();
    let _first = Berth::start_with(&["--database-url", &url, "--storage-url", &storage]);
    // Its own disk beside a node on object storage: refused, naming the other node.
    let dir = tempfile::tempdir().unwrap();
    let said = common::serve_expecting_exit(
        &dir.path().join("data"),
        &["--database-url", &url],
        Duration::from_secs(30),
    );
    assert!(
        said.contains("keep theirs elsewhere") && said.contains("s3://"),
        "{said}"
    );
    assert!(
        !said.contains("secret"),
        "no credentials in the message: {said}"
    );
}
