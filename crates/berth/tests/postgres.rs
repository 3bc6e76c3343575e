//! `berth serve --database-url postgres://…` end to end, against a real PostgreSQL server
//! (`berth_testkit`) and real clients:
//!
//! - skopeo pushes an image and pulls it back whole; the data directory holds blobs and no
//!   SQLite database;
//! - what the registry knows (content, tokens) outlives a restart, because it lives in the
//!   database;
//! - a bad URL or an unreachable server stops `berth serve` with a clear message, never
//!   with the password in it.
//!
//! The conformance suite runs on PostgreSQL as well (`conformance.rs`, `…::on_postgres`).

mod clients;
mod common;

use std::time::Duration;

use berth_testkit::postgres::TestPostgres;
use clients::{Containers, OciLayout, run};
use common::Berth;
use common::cli::Cli;
use serde_json::Value;

fn admin_creds() -> String {
    format!("admin:{}", common::ADMIN_PASSWORD)
}

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
    let target = format!("docker://{}/pg/hello:v1", berth.host);
    run(c
        .skopeo()
        .args(["copy", "--dest-tls-verify=false", "--dest-creds"])
        .arg(admin_creds())
        .arg(layout.reference("v1"))
        .arg(&target));

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
