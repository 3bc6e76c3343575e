//! `berth serve --storage-url` end to end, on real object stores (`berth_testkit`: s3s-fs
//! for S3, Azurite for Azure Blob) with a real client:
//!
//! - skopeo pushes an image and pulls it back whole, across a restart; the data directory
//!   holds no blob;
//! - with the data endpoint on, a blob GET answers 307 to a URL the store signed itself, the
//!   store serves the bytes there, and skopeo pulls through the redirect;
//! - a storage URL that cannot work stops `berth serve` with the store's reason, keys unshown.

mod authn;
mod clients;
mod common;
mod sites;

use std::time::Duration;

use authn::{Cred, TestImage, expect_status, send};
use berth_testkit::azurite::TestAzurite;
use berth_testkit::s3::TestS3;
use clients::{Containers, OciLayout, run};
use common::Berth;
use common::cli::Cli;
use sites::skopeo_push;

fn round_trip_and_redirect(storage: &str) {
    common::require("skopeo");
    let mut berth = Berth::start_with(&["--storage-url", storage]);
    let c = Containers::new();
    let mut layout = OciLayout::create(&c.work("layout"));
    let image = layout.put_image("amd64", "hello.txt", b"hello from a bucket\n", Some("v1"));
    skopeo_push(&c, layout.reference("v1"), &berth, "obj/hello:v1");
    let target = format!("docker://{}/obj/hello:v1", berth.host);
    assert!(
        !berth.data_dir().join("blobs").exists()
            || std::fs::read_dir(berth.data_dir().join("blobs"))
                .unwrap()
                .next()
                .is_none(),
        "no blob in the data directory"
    );
    berth.restart();

    // Redirects to the store's own signed URLs.
    let cli = Cli::logged_in(&berth);
    cli.ok(&["update", "--data-endpoint-enabled", "true"]);
    let http = authn::client();
    let layer_url = format!("{}/v2/obj/hello/blobs/{}", berth.url, image.layer_digest);
    let resp = send(&http, "GET", &layer_url, &Cred::admin(), &[], None);
    expect_status(&resp, 307, "a blob GET with the data endpoint on");
    let location = resp.header("Location").expect("a Location");
    assert!(
        !location.contains(&berth.host),
        "the bytes come from the store, not the node: {location}"
    );
    let fetched = http.get(&location).send().unwrap();
    assert_eq!(fetched.status().as_u16(), 200, "{location}");
    assert_eq!(
        fetched.bytes().unwrap().to_vec(),
        clients::read_layout_blob(&layout.dir, &image.layer_digest),
        "the signed URL serves the layer's bytes"
    );
    let mut altered = location.clone();
    altered.push('0');
    let refused = http.get(&altered).send().unwrap();
    assert!(
        refused.status().is_client_error(),
        "an altered signed URL is refused: {}",
        refused.status()
    );

    // skopeo follows the redirect.
    let back = c.work("back");
    run(c
        .skopeo()
        .args(["copy", "--src-tls-verify=false", "--src-creds"])
        .arg(berth.admin_creds())
        .arg(&target)
        .arg(format!("oci:{}:v1", back.display())));
    assert_eq!(
        clients::read_layout_blob(&back, &image.layer_digest),
        clients::read_layout_blob(&layout.dir, &image.layer_digest),
        "the layer pulled through the redirect is whole"
    );
    // A small image through the API, pushed in one go and read back through the redirect.
    let small = TestImage::new("small");
    authn::push_as_admin(&http, &berth.url, "obj/small", "v1", &small);
}

#[test]
fn on_s3_an_image_round_trips_and_pulls_redirect_to_presigned_urls() {
    round_trip_and_redirect(&TestS3::shared().url());
}

#[test]
fn on_azure_an_image_round_trips_and_pulls_redirect_to_sas_urls() {
    round_trip_and_redirect(&TestAzurite::shared().url());
}

#[test]
fn a_storage_url_that_cannot_work_stops_serve_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = TestS3::shared();
    let wrong_key = format!(
        "s3://{}?endpoint={}&region=us-east-1&access_key_id=nobody&secret_access_key=hunter2",
        s3.bucket(),
        s3.endpoint()
    );
    let said = common::serve_expecting_exit(
        &dir.path().join("data"),
        &["--storage-url", &wrong_key],
        Duration::from_secs(60),
    );
    assert!(said.contains("cannot reach the blob storage"), "{said}");
    assert!(!said.contains("hunter2"), "keys are never printed: {said}");
    let said = common::serve_expecting_exit(
        &dir.path().join("data"),
        &["--storage-url", "ftp://example/blobs"],
        Duration::from_secs(20),
    );
    assert!(said.contains("storage_url"), "{said}");
}
