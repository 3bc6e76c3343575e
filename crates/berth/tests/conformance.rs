//! OCI Distribution Specification v1.1 conformance, checked black-box over HTTP.
//!
//! These tests walk the four workflows of the official conformance suite
//! (opencontainers/distribution-spec, `conformance/`): **pull**, **push**, **content
//! discovery** (tags and referrers) and **content management** (deletes), plus what
//! Berth's SPEC §1 asks beyond it: the `/v2/` version header, `/v2/_catalog` pagination,
//! repository-name grammar, the 4 MiB manifest limit, byte-exact manifests, sha512 digests
//! and the rule that nothing referencing missing content ever becomes visible.
//!
//! Layout: each test starts its own registry (so tests run in parallel and never see each
//! other's content) and hands its base URL to one `check_*` function; each group runs three
//! times: on the embedded defaults, with `--database-url` on a real PostgreSQL server, and
//! through nginx in front of two nodes on PostgreSQL and S3 (s3s-fs). The checks only
//! speak HTTP through [`Registry`], so they run unchanged against any registry. Every
//! assertion names what it expected and prints the full request and response it got.
//!
//! Berth requires authentication, so every request (the raw-socket ones included) carries
//! the admin's Basic credentials: these checks are about the distribution API, not about
//! who may use it (that is `auth_matrix.rs`).
//!
//! Where the official suite tolerates several answers (a registry may disable deletes, or
//! not support mounting), these checks say which answer Berth must give and why, in a
//! comment next to the assertion.

mod authn;
mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use authn::{
    Cred, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Resp, basic_token, expect_error, expect_status,
    sha256_digest,
};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha512};

// ---------------------------------------------------------------------------------------
// Media types, names and constants shared by the checks.
// ---------------------------------------------------------------------------------------

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCTET_STREAM: &str = "application/octet-stream";

/// The digest of `{}`, the OCI empty descriptor's content, as the image spec fixes it.
const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Artifact types used by the referrers checks.
const ARTIFACT_TYPE_A: &str = "application/vnd.berth.conformance.sbom.v1";
const ARTIFACT_TYPE_B: &str = "application/vnd.berth.conformance.signature.v1";
const ARTIFACT_TYPE_INDEX: &str = "application/vnd.berth.conformance.bundle.v1";
const ANNOTATION_KEY: &str = "org.opencontainers.conformance.test";

/// The repository most checks push to, and the one blobs are mounted into.
const REPO: &str = "conformance/main";
const CROSS_REPO: &str = "conformance/crossmount";

/// A reference that is neither a valid tag nor a digest; the official suite expects a plain
/// 404 when reading it.
const INVALID_REFERENCE: &str = ".INVALID_MANIFEST_NAME";

/// The largest manifest a registry must accept, and the smallest Berth must refuse + 1.
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

/// Every error code the distribution spec (and the official suite) knows.
const SPEC_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// Starts a fresh registry (with `args`) and runs one group of checks against its base URL.
fn run(args: &[&str], check: fn(&Registry)) {
    let berth = common::Berth::start_with(args);
    check(&Registry::new(&berth.url).with_basic_auth("admin", common::ADMIN_PASSWORD));
}

/// [`run`] on the embedded defaults.
fn run_embedded(check: fn(&Registry)) {
    run(&[], check);
}

/// [`run`] with metadata and identities in a fresh database of a real PostgreSQL server
/// (one server for the whole test binary).
fn run_on_postgres(check: fn(&Registry)) {
    let url = berth_testkit::postgres::TestPostgres::shared().database();
    run(&["--database-url", &url], check);
}

/// [`run`] through a load balancer in front of two nodes sharing a PostgreSQL database and
/// an S3 bucket: consecutive requests of one check land on different nodes.
fn run_on_cluster(check: fn(&Registry)) {
    let cluster = common::cluster::Cluster::start(2);
    check(&Registry::new(&cluster.url).with_basic_auth("admin", common::ADMIN_PASSWORD));
}

/// A group of checks as three tests: `<name>` on the embedded defaults,
/// `<name>::on_postgres` on PostgreSQL, and `<name>::on_cluster` through a balancer in
/// front of two nodes (same checks, same answers expected).
macro_rules! conformance_test {
    ($test:ident, $check:ident) => {
        #[test]
        fn $test() {
            run_embedded($check);
        }

        mod $test {
            #[test]
            fn on_postgres() {
                super::run_on_postgres(super::$check);
            }

            #[test]
            fn on_cluster() {
                super::run_on_cluster(super::$check);
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Base
// ---------------------------------------------------------------------------------------

conformance_test!(base_api_version_check, check_base_api_version);

/// `GET /v2/` answers 200 and names the API version (SPEC §1; spec "API version check").
fn check_base_api_version(reg: &Registry) {
    let resp = reg.get("/v2/", &[]);
    expect_status(&resp, 200, "GET /v2/");
    expect_header(
        &resp,
        "Docker-Distribution-Api-Version",
        "registry/2.0",
        "GET /v2/",
    );
}

// ---------------------------------------------------------------------------------------
// Pull
// ---------------------------------------------------------------------------------------

conformance_test!(pull_blobs, check_pull_blobs);

/// Official "Pull blobs": HEAD/GET of a missing blob is 404, of a present blob is 200.
fn check_pull_blobs(reg: &Registry) {
    let image = test_image("pull");
    image.push(reg, REPO, "tagtest0");
    let missing = sha256_digest(b"hello world");

    let resp = reg.head(&format!("/v2/{REPO}/blobs/{missing}"), &[]);
    expect_status(&resp, 404, "HEAD of a nonexistent blob");
    expect_empty_body(&resp, "HEAD of a nonexistent blob");

    let path = format!("/v2/{REPO}/blobs/{}", image.config.digest);
    let resp = reg.head(&path, &[]);
    expect_status(&resp, 200, "HEAD of an existing blob");
    expect_header(
        &resp,
        "Docker-Content-Digest",
        &image.config.digest,
        "HEAD of an existing blob",
    );
    expect_header(
        &resp,
        "Content-Length",
        &image.config.bytes.len().to_string(),
        "HEAD of an existing blob",
    );
    expect_empty_body(&resp, "HEAD of an existing blob");

    let resp = reg.get(&format!("/v2/{REPO}/blobs/{missing}"), &[]);
    expect_error(&resp, 404, "BLOB_UNKNOWN", "GET of a nonexistent blob");

    let resp = reg.get(&path, &[]);
    expect_status(&resp, 200, "GET of an existing blob");
    expect_body(&resp, &image.config.bytes, "GET of an existing blob");
    expect_header(
        &resp,
        "Docker-Content-Digest",
        &image.config.digest,
        "GET of an existing blob",
    );
}

conformance_test!(
    pull_content_is_scoped_to_its_repository,
    check_pull_scoped_to_repository
);

/// A blob or manifest pushed to one repository is not found through another one, even on a
/// registry that stores content once (otherwise access control per repository would leak).
fn check_pull_scoped_to_repository(reg: &Registry) {
    let image = test_image("scoped");
    image.push(reg, REPO, "tagtest0");
    let elsewhere = "conformance/elsewhere";
    test_image("elsewhere").push(reg, elsewhere, "latest");

    for blob in [&image.config, &image.layer] {
        let path = format!("/v2/{elsewhere}/blobs/{}", blob.digest);
        let resp = reg.head(&path, &[]);
        expect_status(
            &resp,
            404,
            "HEAD of a blob through a repository that never got it",
        );
        let resp = reg.get(&path, &[]);
        expect_error(
            &resp,
            404,
            "BLOB_UNKNOWN",
            "GET of a blob through a repository that never got it",
        );
    }
    let path = format!("/v2/{elsewhere}/manifests/{}", image.manifest.digest);
    let resp = reg.get(&path, &[("Accept", OCI_MANIFEST)]);
    expect_error(
        &resp,
        404,
        "MANIFEST_UNKNOWN",
        "GET of a manifest through a repository that never got it",
    );
    let resp = reg.get(
        &format!("/v2/{elsewhere}/manifests/tagtest0"),
        &[("Accept", OCI_MANIFEST)],
    );
    expect_error(
        &resp,
        404,
        "MANIFEST_UNKNOWN",
        "GET of another repository's tag",
    );
}

conformance_test!(pull_blob_range_requests, check_pull_blob_range);

/// SPEC §1 "blob HEAD/GET (with `Range`)": partial content as RFC 9110 defines it.
fn check_pull_blob_range(reg: &Registry) {
    let blob = Blob::new(pseudo_random_bytes(1000, 11));
    reg.push_blob(REPO, &blob);
    let path = format!("/v2/{REPO}/blobs/{}", blob.digest);
    let len = blob.bytes.len();

    let resp = reg.get(&path, &[("Range", "bytes=10-99")]);
    expect_status(&resp, 206, "GET of a blob with `Range: bytes=10-99`");
    expect_header(
        &resp,
        "Content-Range",
        &format!("bytes 10-99/{len}"),
        "GET of a blob with `Range: bytes=10-99`",
    );
    expect_body(
        &resp,
        &blob.bytes[10..100],
        "GET of a blob with `Range: bytes=10-99`",
    );

    let resp = reg.get(&path, &[("Range", "bytes=900-")]);
    expect_status(&resp, 206, "GET of a blob with `Range: bytes=900-`");
    expect_body(
        &resp,
        &blob.bytes[900..],
        "GET of a blob with `Range: bytes=900-`",
    );

    let resp = reg.get(&path, &[("Range", "bytes=-5")]);
    expect_status(&resp, 206, "GET of a blob with `Range: bytes=-5`");
    expect_body(
        &resp,
        &blob.bytes[len - 5..],
        "GET of a blob with `Range: bytes=-5`",
    );

    let resp = reg.get(&path, &[("Range", "bytes=5000-6000")]);
    expect_status(
        &resp,
        416,
        "GET of a blob with a range past its end (`bytes=5000-6000`)",
    );
}

conformance_test!(pull_manifests, check_pull_manifests);

/// Official "Pull manifests": HEAD and GET by digest and by tag, 404 for a missing one.
fn check_pull_manifests(reg: &Registry) {
    let image = test_image("pull");
    image.push(reg, REPO, "tagtest0");
    let m = &image.manifest;
    let accept = [("Accept", OCI_MANIFEST)];

    for (what, reference) in [("digest", m.digest.as_str()), ("tag", "tagtest0")] {
        let what_head = format!("HEAD of a manifest by {what}");
        let resp = reg.head(&format!("/v2/{REPO}/manifests/{reference}"), &accept);
        expect_status(&resp, 200, &what_head);
        expect_header(&resp, "Docker-Content-Digest", &m.digest, &what_head);
        expect_header(&resp, "Content-Type", OCI_MANIFEST, &what_head);
        expect_header(
            &resp,
            "Content-Length",
            &m.bytes.len().to_string(),
            &what_head,
        );
        expect_empty_body(&resp, &what_head);
    }

    let resp = reg.get(&format!("/v2/{REPO}/manifests/nosuchtag"), &accept);
    expect_error(&resp, 404, "MANIFEST_UNKNOWN", "GET of a nonexistent tag");
    let resp = reg.get(
        &format!("/v2/{REPO}/manifests/{}", sha256_digest(b"absent")),
        &accept,
    );
    expect_error(
        &resp,
        404,
        "MANIFEST_UNKNOWN",
        "GET of a nonexistent manifest digest",
    );

    for (what, reference) in [("digest", m.digest.as_str()), ("tag", "tagtest0")] {
        let what_get = format!("GET of a manifest by {what}");
        let resp = reg.get(&format!("/v2/{REPO}/manifests/{reference}"), &accept);
        expect_status(&resp, 200, &what_get);
        expect_body(&resp, &m.bytes, &what_get);
        expect_header(&resp, "Docker-Content-Digest", &m.digest, &what_get);
        expect_header(&resp, "Content-Type", OCI_MANIFEST, &what_get);
    }
}

conformance_test!(
    pull_manifest_invalid_reference_is_404,
    check_pull_manifest_invalid_reference
);

/// Official pull "HEAD request to nonexistent manifest should return 404" and "GET
/// nonexistent manifest should return 404", and push "GET nonexistent manifest should return
/// 404": all three read `.INVALID_MANIFEST_NAME`, which is not even a valid tag, and the suite
/// requires exactly 404 for it. (A PUT to it is refused with 400 `TAG_INVALID`, see
/// `push_manifest_invalid_tag_refused`; reads must still say "not found".)
fn check_pull_manifest_invalid_reference(reg: &Registry) {
    test_image("pull").push(reg, REPO, "tagtest0");
    let path = format!("/v2/{REPO}/manifests/{INVALID_REFERENCE}");
    let resp = reg.head(&path, &[("Accept", OCI_MANIFEST)]);
    expect_status(
        &resp,
        404,
        "HEAD of the nonexistent manifest `.INVALID_MANIFEST_NAME`",
    );
    let resp = reg.get(&path, &[("Accept", OCI_MANIFEST)]);
    expect_status(
        &resp,
        404,
        "GET of the nonexistent manifest `.INVALID_MANIFEST_NAME`",
    );
}

conformance_test!(pull_error_body_is_oci_json, check_pull_error_codes);

/// Official "Error codes": a bad manifest PUT to the reference `sha256:totallywrong` is
/// refused (the suite accepts 400 or 404) and a 400 carries the spec's error JSON.
fn check_pull_error_codes(reg: &Registry) {
    let resp = reg.put_manifest(
        REPO,
        "sha256:totallywrong",
        OCI_MANIFEST,
        b"blablabla".to_vec(),
    );
    expect_status_in(
        &resp,
        &[400, 404],
        "PUT of garbage to the reference `sha256:totallywrong`",
    );
    if resp.status == 400 {
        let codes = resp.error_codes();
        assert!(
            codes
                .first()
                .is_some_and(|c| SPEC_ERROR_CODES.contains(&c.as_str())),
            "PUT of garbage to `sha256:totallywrong`: expected an OCI error body whose first \
             code is one of {SPEC_ERROR_CODES:?}, got codes {codes:?}\n{resp}"
        );
    }
}

conformance_test!(pull_teardown_deletes, check_pull_teardown);

/// Official pull "Teardown": the manifest and both blobs can be deleted. The suite also
/// accepts 405 (deletes disabled); Berth supports deletes (SPEC §1), so 202 is required.
fn check_pull_teardown(reg: &Registry) {
    let image = test_image("pull");
    image.push(reg, REPO, "tagtest0");
    let resp = reg.delete(&format!("/v2/{REPO}/manifests/{}", image.manifest.digest));
    expect_status(&resp, 202, "DELETE of the manifest created in setup");
    let resp = reg.delete(&format!("/v2/{REPO}/blobs/{}", image.config.digest));
    expect_status(&resp, 202, "DELETE of the config blob created in setup");
    let resp = reg.delete(&format!("/v2/{REPO}/blobs/{}", image.layer.digest));
    expect_status(&resp, 202, "DELETE of the layer blob created in setup");
}

// ---------------------------------------------------------------------------------------
// Push: blob uploads
// ---------------------------------------------------------------------------------------

conformance_test!(push_blob_streamed, check_push_blob_streamed);

/// Official "Blob Upload Streamed": PATCH without `Content-Range`, then PUT with the digest.
/// Beyond it: a second streamed PATCH appends, and `Range` tracks the bytes received.
fn check_push_blob_streamed(reg: &Registry) {
    let blob = Blob::new(pseudo_random_bytes(42, 1));
    let (_, location) = reg.start_upload(REPO);

    let resp = reg.send(
        "PATCH",
        &location,
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes.clone()),
    );
    expect_status(&resp, 202, "streamed PATCH of a whole blob");
    expect_header(
        &resp,
        "Range",
        &format!("0-{}", blob.bytes.len() - 1),
        "streamed PATCH",
    );
    let location = resp.location("streamed PATCH");

    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", &blob.digest),
        &[],
        Some(Vec::new()),
    );
    expect_status(&resp, 201, "PUT closing a streamed upload with the digest");
    let blob_location = resp.location("PUT closing a streamed upload");
    expect_optional_header(
        &resp,
        "Docker-Content-Digest",
        &blob.digest,
        "PUT closing a streamed upload",
    );
    let resp = reg.get(&blob_location, &[]);
    expect_status(
        &resp,
        200,
        "GET of the Location returned by the closing PUT",
    );
    expect_body(
        &resp,
        &blob.bytes,
        "GET of the Location returned by the closing PUT",
    );

    // Two streamed PATCHes: the second one appends to the first.
    let blob = Blob::new(pseudo_random_bytes(100, 2));
    let (_, location) = reg.start_upload(REPO);
    let resp = reg.send(
        "PATCH",
        &location,
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes[..30].to_vec()),
    );
    expect_status(&resp, 202, "first of two streamed PATCHes");
    expect_header(&resp, "Range", "0-29", "first of two streamed PATCHes");
    let location = resp.location("first of two streamed PATCHes");
    let resp = reg.send(
        "PATCH",
        &location,
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes[30..].to_vec()),
    );
    expect_status(&resp, 202, "second of two streamed PATCHes");
    expect_header(&resp, "Range", "0-99", "second of two streamed PATCHes");
    let location = resp.location("second of two streamed PATCHes");
    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", &blob.digest),
        &[],
        Some(Vec::new()),
    );
    expect_status(&resp, 201, "PUT closing a two-PATCH streamed upload");
    reg.expect_blob(REPO, &blob, "blob uploaded in two streamed PATCHes");
}

conformance_test!(
    push_blob_monolithic_single_post,
    check_push_blob_single_post
);

/// Official "POST request with digest and blob should yield a 201 or 202" and the GET that
/// follows: 201 means the blob is there at once; 202 means "continue with PUT", and the
/// blob must not exist yet.
fn check_push_blob_single_post(reg: &Registry) {
    let missing = sha256_digest(b"hello world");
    let resp = reg.get(&format!("/v2/{REPO}/blobs/{missing}"), &[]);
    expect_status(&resp, 404, "GET of a nonexistent blob");

    let blob = config_blob("single-post");
    let url = with_query(
        &format!("/v2/{REPO}/blobs/uploads/"),
        "digest",
        &blob.digest,
    );
    let resp = reg.send(
        "POST",
        &url,
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes.clone()),
    );
    expect_status_in(&resp, &[201, 202], "POST of a whole blob with `?digest=`");
    let location = resp.location("POST of a whole blob with `?digest=`");
    let get = reg.get(&format!("/v2/{REPO}/blobs/{}", blob.digest), &[]);
    if resp.status == 201 {
        expect_status(&get, 200, "GET after a monolithic POST answered 201");
        expect_body(
            &get,
            &blob.bytes,
            "GET after a monolithic POST answered 201",
        );
        let get = reg.get(&location, &[]);
        expect_status(&get, 200, "GET of the Location of a monolithic POST");
    } else {
        expect_status(
            &get,
            404,
            "GET after a monolithic POST answered 202 (blob not yet pushed)",
        );
    }
}

conformance_test!(push_blob_monolithic_post_then_put, check_push_blob_post_put);

/// Official "Blob Upload Monolithic": POST opens a session (202 + Location), PUT with the
/// body and digest completes it (201 + Location), and the blob is then served.
fn check_push_blob_post_put(reg: &Registry) {
    for (what, blob) in [
        ("config blob", config_blob("post-put")),
        ("layer blob", layer_blob("post-put")),
    ] {
        let (_, location) = reg.start_upload(REPO);
        let resp = reg.send(
            "PUT",
            &with_query(&location, "digest", &blob.digest),
            &[("Content-Type", OCTET_STREAM)],
            Some(blob.bytes.clone()),
        );
        let what_put = format!("PUT upload of a {what}");
        expect_status(&resp, 201, &what_put);
        let blob_location = resp.location(&what_put);
        expect_optional_header(&resp, "Docker-Content-Digest", &blob.digest, &what_put);
        let resp = reg.get(&blob_location, &[]);
        expect_status(&resp, 200, &format!("GET of the Location of a {what}"));
        expect_body(
            &resp,
            &blob.bytes,
            &format!("GET of the Location of a {what}"),
        );
        reg.expect_blob(REPO, &blob, what);
    }

    // Pushing content the repository already holds succeeds again, and changes nothing.
    let blob = config_blob("post-put");
    reg.push_blob(REPO, &blob);
    reg.expect_blob(REPO, &blob, "config blob pushed twice");

    // The empty blob is content like any other.
    let empty = Blob::new(Vec::new());
    reg.push_blob(REPO, &empty);
    reg.expect_blob(REPO, &empty, "zero-length blob");
    let resp = reg.head(&format!("/v2/{REPO}/blobs/{}", empty.digest), &[]);
    expect_status(&resp, 200, "HEAD of the zero-length blob");
    expect_header(&resp, "Content-Length", "0", "HEAD of the zero-length blob");
}

conformance_test!(push_blob_chunked, check_push_blob_chunked);

/// Official "Blob Upload Chunked", in order: first chunk 202 with `Range`, a retried first
/// chunk 416, the session's status 204 with `Location` and `Range`, second chunk 202, PUT
/// with the digest 201.
fn check_push_blob_chunked(reg: &Registry) {
    let (resp, post_location) = reg.start_upload(REPO);
    let blob = chunkable_blob(&resp, 3);
    let split = chunk_split(&resp, &blob);
    let (first, second) = blob.bytes.split_at(split);
    let first_range = format!("0-{}", split - 1);
    let second_range = format!("{split}-{}", blob.bytes.len() - 1);

    let resp = reg.patch_chunk(&post_location, first, &first_range);
    expect_status(&resp, 202, "PATCH with the first chunk");
    expect_header(&resp, "Range", &first_range, "PATCH with the first chunk");
    resp.location("PATCH with the first chunk");

    let resp = reg.patch_chunk(&post_location, first, &first_range);
    expect_status(&resp, 416, "retried PATCH of the first chunk");

    let resp = reg.get(&post_location, &[]);
    expect_status(
        &resp,
        204,
        "GET of the upload session after the first chunk",
    );
    expect_header(&resp, "Range", &first_range, "GET of the upload session");
    let location = resp.location("GET of the upload session");

    let resp = reg.patch_chunk(&location, second, &second_range);
    expect_status(&resp, 202, "PATCH with the second chunk");
    expect_header(
        &resp,
        "Range",
        &format!("0-{}", blob.bytes.len() - 1),
        "PATCH with the second chunk",
    );
    let location = resp.location("PATCH with the second chunk");

    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", &blob.digest),
        &[],
        Some(Vec::new()),
    );
    expect_status(&resp, 201, "PUT closing a chunked upload");
    resp.location("PUT closing a chunked upload");
    reg.expect_blob(REPO, &blob, "blob uploaded in two chunks");
}

conformance_test!(
    push_blob_chunked_out_of_order,
    check_push_blob_chunked_out_of_order
);

/// Official "Out-of-order blob upload should return 416"; beyond it, the session survives
/// the refusal and the upload completes in order afterwards.
fn check_push_blob_chunked_out_of_order(reg: &Registry) {
    let (resp, location) = reg.start_upload(REPO);
    let blob = chunkable_blob(&resp, 4);
    let split = chunk_split(&resp, &blob);
    let (first, second) = blob.bytes.split_at(split);
    let second_range = format!("{split}-{}", blob.bytes.len() - 1);

    let resp = reg.patch_chunk(&location, second, &second_range);
    expect_status(&resp, 416, "PATCH of the second chunk before the first");

    let resp = reg.get(&location, &[]);
    expect_status(&resp, 204, "GET of the upload session after a 416");
    let location = resp.location("GET of the upload session after a 416");
    let resp = reg.patch_chunk(&location, first, &format!("0-{}", split - 1));
    expect_status(
        &resp,
        202,
        "PATCH of the first chunk after a refused out-of-order chunk",
    );
    let location = resp.location("PATCH of the first chunk");
    let resp = reg.patch_chunk(&location, second, &second_range);
    expect_status(&resp, 202, "PATCH of the second chunk, now in order");
    let location = resp.location("PATCH of the second chunk");
    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", &blob.digest),
        &[],
        Some(Vec::new()),
    );
    expect_status(&resp, 201, "PUT closing the recovered chunked upload");
    reg.expect_blob(REPO, &blob, "blob uploaded after an out-of-order chunk");
}

conformance_test!(
    push_blob_chunked_last_chunk_in_put,
    check_push_blob_last_chunk_in_put
);

/// Spec: "The final chunk MAY be uploaded ... in the closing PUT request".
fn check_push_blob_last_chunk_in_put(reg: &Registry) {
    let (resp, location) = reg.start_upload(REPO);
    let blob = chunkable_blob(&resp, 5);
    let split = chunk_split(&resp, &blob);
    let (first, second) = blob.bytes.split_at(split);

    let resp = reg.patch_chunk(&location, first, &format!("0-{}", split - 1));
    expect_status(&resp, 202, "PATCH with the first chunk");
    let location = resp.location("PATCH with the first chunk");
    let second_range = format!("{split}-{}", blob.bytes.len() - 1);
    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", &blob.digest),
        &[
            ("Content-Type", OCTET_STREAM),
            ("Content-Range", &second_range),
        ],
        Some(second.to_vec()),
    );
    expect_status(&resp, 201, "PUT carrying the last chunk and the digest");
    reg.expect_blob(REPO, &blob, "blob whose last chunk came with the PUT");
}

conformance_test!(
    push_blob_chunk_length_mismatch,
    check_push_blob_chunk_length_mismatch
);

/// A chunk whose `Content-Range` length disagrees with its body is 400 `SIZE_INVALID`
/// (code-10, "provided length did not match content length"). Its start offset is right, so
/// this is not the out-of-order case that 416 is for. Nothing of it is stored: the session
/// then accepts the same bytes with a correct range.
fn check_push_blob_chunk_length_mismatch(reg: &Registry) {
    let chunk = pseudo_random_bytes(10, 6);
    let (_, location) = reg.start_upload(REPO);
    for range in ["0-99", "0-4"] {
        let resp = reg.patch_chunk(&location, &chunk, range);
        expect_error(
            &resp,
            400,
            "SIZE_INVALID",
            &format!("PATCH of 10 bytes whose Content-Range ({range}) says otherwise"),
        );
    }
    let resp = reg.get(&location, &[]);
    expect_status(&resp, 204, "GET of the upload session after refused chunks");
    let location = resp.location("GET of the upload session after refused chunks");
    let resp = reg.patch_chunk(&location, &chunk, "0-9");
    expect_status(
        &resp,
        202,
        "PATCH of the same 10 bytes with `Content-Range: 0-9`",
    );
    expect_header(
        &resp,
        "Range",
        "0-9",
        "PATCH after refused chunks (nothing of them kept)",
    );
}

conformance_test!(push_blob_digest_mismatch, check_push_blob_digest_mismatch);

/// SPEC §1 "Digests are verified on every write": a PUT whose digest does not match the
/// bytes is 400 `DIGEST_INVALID`, and neither digest becomes visible.
fn check_push_blob_digest_mismatch(reg: &Registry) {
    let blob = Blob::new(pseudo_random_bytes(64, 7));
    let claimed = sha256_digest(b"something else entirely");
    let (_, location) = reg.start_upload(REPO);
    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", &claimed),
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes.clone()),
    );
    expect_error(
        &resp,
        400,
        "DIGEST_INVALID",
        "PUT of a blob with the digest of other content",
    );
    for digest in [&claimed, &blob.digest] {
        let resp = reg.head(&format!("/v2/{REPO}/blobs/{digest}"), &[]);
        expect_status(
            &resp,
            404,
            &format!("HEAD of {digest} after a refused upload"),
        );
    }

    // The same through a single POST.
    let url = with_query(&format!("/v2/{REPO}/blobs/uploads/"), "digest", &claimed);
    let resp = reg.send(
        "POST",
        &url,
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes.clone()),
    );
    if resp.status != 202 {
        expect_error(
            &resp,
            400,
            "DIGEST_INVALID",
            "monolithic POST with the digest of other content",
        );
    }
    let resp = reg.head(&format!("/v2/{REPO}/blobs/{claimed}"), &[]);
    expect_status(
        &resp,
        404,
        "HEAD of the claimed digest after a refused monolithic POST",
    );
}

conformance_test!(
    push_blob_malformed_or_missing_digest,
    check_push_blob_bad_digest_parameter
);

/// A closing PUT with a malformed digest is 400 `DIGEST_INVALID`; without any digest it
/// is 400 too (`DIGEST_INVALID` or `BLOB_UPLOAD_INVALID`).
fn check_push_blob_bad_digest_parameter(reg: &Registry) {
    let blob = Blob::new(pseudo_random_bytes(64, 8));
    let (_, location) = reg.start_upload(REPO);
    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", "sha256:not-hex"),
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes.clone()),
    );
    expect_error(
        &resp,
        400,
        "DIGEST_INVALID",
        "closing PUT with `digest=sha256:not-hex`",
    );

    let (_, location) = reg.start_upload(REPO);
    let resp = reg.send(
        "PUT",
        &location,
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes.clone()),
    );
    expect_status(&resp, 400, "closing PUT without a digest parameter");
    let codes = resp.error_codes();
    assert!(
        codes
            .iter()
            .any(|c| c == "DIGEST_INVALID" || c == "BLOB_UPLOAD_INVALID"),
        "closing PUT without a digest: expected DIGEST_INVALID or BLOB_UPLOAD_INVALID, got \
         {codes:?}\n{resp}"
    );
}

conformance_test!(
    push_blob_upload_status_and_cancel,
    check_push_blob_upload_status_and_cancel
);

/// Upload session status and cancel (spec end-13, end-14): GET is 204 with `Range`, DELETE
/// is 204, and the cancelled session is then 404 `BLOB_UPLOAD_UNKNOWN`.
fn check_push_blob_upload_status_and_cancel(reg: &Registry) {
    reg.push_blob(REPO, &config_blob("status"));
    let (_, location) = reg.start_upload(REPO);
    let resp = reg.send(
        "PATCH",
        &location,
        &[("Content-Type", OCTET_STREAM)],
        Some(vec![7; 20]),
    );
    expect_status(&resp, 202, "streamed PATCH of 20 bytes");
    let location = resp.location("streamed PATCH of 20 bytes");

    let resp = reg.get(&location, &[]);
    expect_status(&resp, 204, "GET of an upload session holding 20 bytes");
    expect_header(
        &resp,
        "Range",
        "0-19",
        "GET of an upload session holding 20 bytes",
    );
    resp.location("GET of an upload session");

    let resp = reg.delete(&location);
    expect_status(&resp, 204, "DELETE (cancel) of an upload session");
    let resp = reg.get(&location, &[]);
    expect_error(
        &resp,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "GET of a cancelled upload session",
    );
    let resp = reg.send(
        "PATCH",
        &location,
        &[("Content-Type", OCTET_STREAM)],
        Some(vec![7; 5]),
    );
    expect_error(
        &resp,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "PATCH to a cancelled upload session",
    );

    let unknown = format!("/v2/{REPO}/blobs/uploads/00000000-0000-4000-8000-000000000000");
    let resp = reg.get(&unknown, &[]);
    expect_error(
        &resp,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "GET of an upload session that never existed",
    );
}

conformance_test!(push_blob_sha512, check_push_blob_sha512);

/// SPEC §1 "Digests are verified on every write (sha256 and sha512)": sha512 blobs upload
/// monolithically and in chunks, are served under their sha512 digest, and a wrong sha512
/// digest is refused.
fn check_push_blob_sha512(reg: &Registry) {
    let blob = Blob::sha512(pseudo_random_bytes(300, 9));
    let (_, location) = reg.start_upload(REPO);
    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", &blob.digest),
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes.clone()),
    );
    expect_status(&resp, 201, "PUT upload of a blob with a sha512 digest");
    if resp.header("Docker-Content-Digest").is_some() {
        expect_digest_header(
            &resp,
            &blob.bytes,
            &blob.digest,
            "PUT upload of a sha512 blob",
        );
    }
    let resp = reg.get(&resp.location("PUT upload of a sha512 blob"), &[]);
    expect_status(&resp, 200, "GET of the Location of a sha512 blob");
    expect_body(&resp, &blob.bytes, "GET of the Location of a sha512 blob");
    reg.expect_blob(REPO, &blob, "sha512 blob");
    let resp = reg.head(&format!("/v2/{REPO}/blobs/{}", blob.digest), &[]);
    expect_status(&resp, 200, "HEAD of a sha512 blob");
    expect_header(&resp, "Content-Length", "300", "HEAD of a sha512 blob");

    let chunked = Blob::sha512(pseudo_random_bytes(200, 10));
    let (_, location) = reg.start_upload(REPO);
    let resp = reg.patch_chunk(&location, &chunked.bytes[..120], "0-119");
    expect_status(&resp, 202, "first chunk of a sha512 blob");
    let location = resp.location("first chunk of a sha512 blob");
    let resp = reg.patch_chunk(&location, &chunked.bytes[120..], "120-199");
    expect_status(&resp, 202, "second chunk of a sha512 blob");
    let location = resp.location("second chunk of a sha512 blob");
    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", &chunked.digest),
        &[],
        Some(Vec::new()),
    );
    expect_status(&resp, 201, "PUT closing a chunked sha512 upload");
    reg.expect_blob(REPO, &chunked, "chunked sha512 blob");

    let wrong = sha512_digest(b"not these bytes");
    let (_, location) = reg.start_upload(REPO);
    let resp = reg.send(
        "PUT",
        &with_query(&location, "digest", &wrong),
        &[("Content-Type", OCTET_STREAM)],
        Some(blob.bytes.clone()),
    );
    expect_error(
        &resp,
        400,
        "DIGEST_INVALID",
        "PUT of a blob with a wrong sha512 digest",
    );
    let resp = reg.head(&format!("/v2/{REPO}/blobs/{wrong}"), &[]);
    expect_status(
        &resp,
        404,
        "HEAD of the wrong sha512 digest after a refused upload",
    );
}

// ---------------------------------------------------------------------------------------
// Push: cross-repository mount
// ---------------------------------------------------------------------------------------

conformance_test!(
    push_mount_without_from_unknown_blob,
    check_mount_without_from_unknown
);

/// Official "Cross-mounting of a blob without the from argument should yield session id":
/// a mount of a blob the registry does not have opens an upload session (202).
fn check_mount_without_from_unknown(reg: &Registry) {
    let missing = sha256_digest(b"hello world");
    let url = with_query(
        &format!("/v2/{CROSS_REPO}/blobs/uploads/"),
        "mount",
        &missing,
    );
    let resp = reg.send("POST", &url, &[], Some(Vec::new()));
    expect_status(&resp, 202, "POST ?mount= of an unknown blob without `from`");
    let location = resp.location("POST ?mount= of an unknown blob");
    let path = url_path(&location);
    assert!(
        path.starts_with(&format!("/v2/{CROSS_REPO}/blobs/uploads/")),
        "POST ?mount= of an unknown blob: expected an upload session under \
         /v2/{CROSS_REPO}/blobs/uploads/, got Location {location}\n{resp}"
    );
}

conformance_test!(
    push_mount_from_other_repository,
    check_mount_from_other_repository
);

/// Official "POST request to mount another repository's blob" and the GET that follows.
/// The suite accepts 201 or 202; Berth implements mounting (SPEC §1), so 201 is required,
/// with `Location: /v2/<name>/blobs/<digest>`.
fn check_mount_from_other_repository(reg: &Registry) {
    let blob = Blob::new(pseudo_random_bytes(42, 12));
    reg.push_blob(REPO, &blob);
    let url = with_query(
        &with_query(
            &format!("/v2/{CROSS_REPO}/blobs/uploads/"),
            "mount",
            &blob.digest,
        ),
        "from",
        REPO,
    );
    let resp = reg.send("POST", &url, &[], Some(Vec::new()));
    expect_status(
        &resp,
        201,
        "POST ?mount=<digest>&from=<repository holding it>",
    );
    let location = resp.location("cross-repository mount");
    assert_eq!(
        url_path(&location),
        format!("/v2/{CROSS_REPO}/blobs/{}", blob.digest),
        "cross-repository mount: expected Location /v2/{CROSS_REPO}/blobs/<digest>\n{resp}"
    );
    expect_optional_header(
        &resp,
        "Docker-Content-Digest",
        &blob.digest,
        "cross-repository mount",
    );
    let resp = reg.get(&location, &[]);
    expect_status(
        &resp,
        200,
        "GET of a blob within the cross-mount repository",
    );
    expect_body(&resp, &blob.bytes, "GET of a mounted blob");
}

conformance_test!(
    push_mount_without_from_known_blob,
    check_mount_without_from_known
);

/// Official "Cross-mounting without from" (automatic content discovery): the registry may
/// mount a blob it holds elsewhere (201, blob then readable) or open a session (202).
fn check_mount_without_from_known(reg: &Registry) {
    let blob = Blob::new(pseudo_random_bytes(42, 13));
    reg.push_blob(REPO, &blob);
    let url = with_query(
        &format!("/v2/{CROSS_REPO}/blobs/uploads/"),
        "mount",
        &blob.digest,
    );
    let resp = reg.send("POST", &url, &[], Some(Vec::new()));
    expect_status_in(
        &resp,
        &[201, 202],
        "POST ?mount= of a known blob without `from`",
    );
    let location = resp.location("POST ?mount= without `from`");
    if resp.status == 201 {
        reg.expect_blob(CROSS_REPO, &blob, "blob mounted without `from`");
    } else {
        assert!(
            url_path(&location).starts_with(&format!("/v2/{CROSS_REPO}/blobs/uploads/")),
            "POST ?mount= without `from` answered 202: expected an upload session under \
             /v2/{CROSS_REPO}/blobs/uploads/, got Location {location}\n{resp}"
        );
    }
}

conformance_test!(
    push_mount_from_repository_without_the_blob,
    check_mount_from_repository_without_blob
);

/// A mount naming a `from` repository that does not hold the blob must not mount it from
/// elsewhere (that would bypass the source's access control): 202 and a session.
fn check_mount_from_repository_without_blob(reg: &Registry) {
    let blob = Blob::new(pseudo_random_bytes(42, 14));
    reg.push_blob(REPO, &blob);
    reg.push_blob("conformance/other", &config_blob("other"));
    let url = with_query(
        &with_query(
            &format!("/v2/{CROSS_REPO}/blobs/uploads/"),
            "mount",
            &blob.digest,
        ),
        "from",
        "conformance/other",
    );
    let resp = reg.send("POST", &url, &[], Some(Vec::new()));
    expect_status(
        &resp,
        202,
        "POST ?mount=<digest>&from=<repository without it>",
    );
    let resp = reg.head(&format!("/v2/{CROSS_REPO}/blobs/{}", blob.digest), &[]);
    expect_status(
        &resp,
        404,
        "HEAD in the target repository after a refused mount",
    );
}

// ---------------------------------------------------------------------------------------
// Push: manifests
// ---------------------------------------------------------------------------------------

conformance_test!(push_manifest_by_tags, check_push_manifest_by_tags);

/// Official "Manifest Upload": the same manifest PUT to four tags is 201 with `Location`
/// each time; GET by digest is then 200. (Its "GET nonexistent manifest should return 404"
/// is in `pull_manifest_invalid_reference_is_404`.)
fn check_push_manifest_by_tags(reg: &Registry) {
    let image = test_image("push");
    image.push_blobs(reg, REPO);
    for tag in ["test0", "test1", "test2", "test3"] {
        let resp = reg.put_manifest(REPO, tag, OCI_MANIFEST, image.manifest.bytes.clone());
        expect_status(&resp, 201, &format!("PUT of a manifest to tag {tag}"));
        resp.location(&format!("PUT of a manifest to tag {tag}"));
        expect_header(
            &resp,
            "Docker-Content-Digest",
            &image.manifest.digest,
            "PUT of a manifest",
        );
    }
    reg.expect_manifest(
        REPO,
        &image.manifest.digest,
        &image.manifest,
        "manifest pushed by tag",
    );
    reg.expect_manifest(REPO, "test3", &image.manifest, "manifest pushed by tag");
}

conformance_test!(push_manifest_retag, check_push_manifest_retag);

/// PUT of another manifest to an existing tag moves the tag; the manifest it pointed to
/// stays reachable by digest.
fn check_push_manifest_retag(reg: &Registry) {
    let first = test_image("retag-first");
    let second = test_image("retag-second");
    first.push(reg, REPO, "latest");
    second.push(reg, REPO, "latest");
    reg.expect_manifest(
        REPO,
        "latest",
        &second.manifest,
        "manifest the tag was moved to",
    );
    reg.expect_manifest(
        REPO,
        &first.manifest.digest,
        &first.manifest,
        "manifest the tag was moved away from",
    );
    let resp = reg.get(&format!("/v2/{REPO}/tags/list"), &[]);
    expect_status(&resp, 200, "GET of the tag list after moving a tag");
    assert_eq!(
        tags_of(&resp),
        ["latest"],
        "tag list after moving a tag\n{resp}"
    );
}

conformance_test!(
    push_manifest_without_layers,
    check_push_manifest_without_layers
);

/// Official "Registry should accept a manifest upload with no layers" (the suite only warns
/// on refusal; Berth accepts it: the image spec allows an empty `layers`).
fn check_push_manifest_without_layers(reg: &Registry) {
    let config = config_blob("no-layers");
    reg.push_blob(REPO, &config);
    let manifest = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(OCI_CONFIG),
            "layers": [],
        }),
    );
    let resp = reg.put_manifest(REPO, "emptylayer", OCI_MANIFEST, manifest.bytes.clone());
    expect_status(&resp, 201, "PUT of a manifest with no layers");
    resp.location("PUT of a manifest with no layers");
    reg.expect_manifest(REPO, "emptylayer", &manifest, "manifest with no layers");
}

conformance_test!(push_manifest_empty_config, check_push_manifest_empty_config);

/// Official push "Setup" (the empty JSON blob has the image spec's digest) and a manifest
/// whose config is the empty descriptor `application/vnd.oci.empty.v1+json`.
fn check_push_manifest_empty_config(reg: &Registry) {
    let empty = Blob::new(b"{}".to_vec());
    assert_eq!(
        empty.digest, EMPTY_JSON_DIGEST,
        "the digest of `{{}}` must be the spec's constant"
    );
    reg.push_blob(REPO, &empty);
    let layer = layer_blob("empty-config");
    reg.push_blob(REPO, &layer);
    let manifest = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": empty.descriptor(OCI_EMPTY),
            "layers": [layer.descriptor(OCI_LAYER)],
        }),
    );
    let resp = reg.put_manifest(REPO, "emptyconfig", OCI_MANIFEST, manifest.bytes.clone());
    expect_status(
        &resp,
        201,
        "PUT of a manifest with the empty config descriptor",
    );
    reg.expect_manifest(
        REPO,
        "emptyconfig",
        &manifest,
        "manifest with an empty config",
    );
    reg.expect_manifest(
        REPO,
        &manifest.digest,
        &manifest,
        "manifest with an empty config",
    );
}

conformance_test!(push_manifest_artifacts, check_push_manifest_artifacts);

/// Official "manifest upload with custom config/mediaType (as artifact type)" and "with
/// custom artifactType" [OCI-Image v1.1].
fn check_push_manifest_artifacts(reg: &Registry) {
    let content = Blob::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
    let empty = Blob::new(b"{}".to_vec());
    let layer = layer_blob("artifacts");
    for blob in [&content, &empty, &layer] {
        reg.push_blob(REPO, blob);
    }
    let config_typed = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": content.descriptor(ARTIFACT_TYPE_A),
            "layers": [layer.descriptor(OCI_LAYER)],
        }),
    );
    let resp = reg.put_manifest(
        REPO,
        &config_typed.digest,
        OCI_MANIFEST,
        config_typed.bytes.clone(),
    );
    expect_status(
        &resp,
        201,
        "PUT of a manifest whose config mediaType is an artifact type",
    );
    reg.expect_manifest(
        REPO,
        &config_typed.digest,
        &config_typed,
        "config-typed artifact",
    );

    let artifact = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE_A,
            "config": empty.descriptor(OCI_EMPTY),
            "layers": [content.descriptor(ARTIFACT_TYPE_A)],
        }),
    );
    let resp = reg.put_manifest(REPO, &artifact.digest, OCI_MANIFEST, artifact.bytes.clone());
    expect_status(
        &resp,
        201,
        "PUT of a manifest with an artifactType and an empty config",
    );
    reg.expect_manifest(REPO, &artifact.digest, &artifact, "artifactType artifact");
}

conformance_test!(
    push_manifest_index_and_nested_index,
    check_push_index_and_nested_index
);

/// Official "manifest upload with image index" and "with nested image index".
fn check_push_index_and_nested_index(reg: &Registry) {
    let image = test_image("index");
    image.push(reg, REPO, "tagtest0");
    let index = Manifest::from_json(
        OCI_INDEX,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": ARTIFACT_TYPE_INDEX,
            "manifests": [image.manifest.descriptor()],
            "annotations": {ANNOTATION_KEY: "test index"},
        }),
    );
    let resp = reg.put_manifest(REPO, &index.digest, OCI_INDEX, index.bytes.clone());
    expect_status(&resp, 201, "PUT of an image index");
    reg.expect_manifest(REPO, &index.digest, &index, "image index");

    let nested = Manifest::from_json(
        OCI_INDEX,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": ARTIFACT_TYPE_INDEX,
            "manifests": [index.descriptor()],
            "annotations": {ANNOTATION_KEY: "test nested index"},
        }),
    );
    let resp = reg.put_manifest(REPO, "nested", OCI_INDEX, nested.bytes.clone());
    expect_status(&resp, 201, "PUT of an index of an index");
    reg.expect_manifest(REPO, "nested", &nested, "nested image index");
}

conformance_test!(
    push_manifest_dangling_subject,
    check_push_manifest_dangling_subject
);

/// Official "Dangling subject": a manifest whose `subject` is not (yet) in the registry is
/// accepted, and the registry says it processed the subject with `OCI-Subject`.
fn check_push_manifest_dangling_subject(reg: &Registry) {
    let empty = Blob::new(b"{}".to_vec());
    let content = Blob::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
    reg.push_blob(REPO, &empty);
    reg.push_blob(REPO, &content);
    let absent = test_image("never-pushed");
    let referrer = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE_B,
            "config": empty.descriptor(OCI_EMPTY),
            "layers": [content.descriptor(ARTIFACT_TYPE_B)],
            "subject": absent.manifest.descriptor(),
        }),
    );
    let resp = reg.put_manifest(REPO, &referrer.digest, OCI_MANIFEST, referrer.bytes.clone());
    expect_status(&resp, 201, "PUT of a manifest whose subject does not exist");
    expect_header(
        &resp,
        "OCI-Subject",
        &absent.manifest.digest,
        "PUT of a manifest with a subject",
    );
    reg.expect_manifest(
        REPO,
        &referrer.digest,
        &referrer,
        "manifest with a dangling subject",
    );
}

conformance_test!(
    push_manifest_docker_media_types,
    check_push_docker_media_types
);

/// SPEC §1 content negotiation: Docker schema 2 manifests and manifest lists are stored and
/// served with their own media type.
fn check_push_docker_media_types(reg: &Registry) {
    let config = config_blob("docker");
    let layer = layer_blob("docker");
    reg.push_blob(REPO, &config);
    reg.push_blob(REPO, &layer);
    let manifest = Manifest::from_json(
        DOCKER_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config.descriptor(DOCKER_CONFIG),
            "layers": [layer.descriptor(DOCKER_LAYER)],
        }),
    );
    let resp = reg.put_manifest(REPO, "docker", DOCKER_MANIFEST, manifest.bytes.clone());
    expect_status(&resp, 201, "PUT of a Docker schema 2 manifest");
    reg.expect_manifest(REPO, "docker", &manifest, "Docker schema 2 manifest");

    let mut descriptor = manifest.descriptor();
    descriptor["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let list = Manifest::from_json(
        DOCKER_LIST,
        &json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [descriptor]}),
    );
    let resp = reg.put_manifest(REPO, "dockerlist", DOCKER_LIST, list.bytes.clone());
    expect_status(&resp, 201, "PUT of a Docker manifest list");
    reg.expect_manifest(REPO, "dockerlist", &list, "Docker manifest list");
}

conformance_test!(
    push_manifest_bytes_served_verbatim,
    check_push_manifest_verbatim
);

/// The registry stores a manifest "exactly as provided": odd whitespace, key order, CRLF,
/// escapes and raw UTF-8 all come back byte for byte, under the digest of those bytes.
fn check_push_manifest_verbatim(reg: &Registry) {
    let config = config_blob("verbatim");
    let layer = layer_blob("verbatim");
    reg.push_blob(REPO, &config);
    reg.push_blob(REPO, &layer);
    let text = format!(
        "{{\n\t\"schemaVersion\" :2 ,\r\n  \"mediaType\":\"{OCI_MANIFEST}\",\n\n   \"config\": {{ \
         \"size\": {}, \"digest\":\"{}\",   \"mediaType\": \"{OCI_CONFIG}\" }},\n\"layers\":[ \
         {{\"mediaType\":\"{OCI_LAYER}\",\"size\":{},\"digest\":\"{}\"}}\t] ,\"annotations\":\
         {{\"note\":\"caf\\u00e9 \u{2603} \\\"quoted\\\"\"}}   \n}}\n\n",
        config.bytes.len(),
        config.digest,
        layer.bytes.len(),
        layer.digest,
    );
    serde_json::from_str::<Value>(&text).expect("the hand-written manifest is valid JSON");
    let manifest = Manifest::raw(OCI_MANIFEST, text.into_bytes());
    let resp = reg.put_manifest(REPO, "verbatim", OCI_MANIFEST, manifest.bytes.clone());
    expect_status(&resp, 201, "PUT of a manifest with unusual whitespace");
    expect_header(
        &resp,
        "Docker-Content-Digest",
        &manifest.digest,
        "PUT of a manifest with unusual whitespace",
    );
    reg.expect_manifest(
        REPO,
        "verbatim",
        &manifest,
        "manifest with unusual whitespace",
    );
    reg.expect_manifest(
        REPO,
        &manifest.digest,
        &manifest,
        "manifest with unusual whitespace",
    );
}

conformance_test!(
    push_manifest_missing_blob_refused,
    check_push_manifest_missing_blob
);

/// SPEC §1 "a manifest [is visible] only after every blob ... it references exists": a
/// missing layer or config is 400 `MANIFEST_BLOB_UNKNOWN` and nothing becomes visible.
fn check_push_manifest_missing_blob(reg: &Registry) {
    let image = test_image("missing-layer");
    reg.push_blob(REPO, &image.config); // the layer is never pushed
    let resp = reg.put_manifest(REPO, "broken", OCI_MANIFEST, image.manifest.bytes.clone());
    expect_error(
        &resp,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "PUT of a manifest whose layer is missing",
    );
    reg.expect_no_manifest(
        REPO,
        "broken",
        &image.manifest.digest,
        "manifest with a missing layer",
    );

    let image = test_image("missing-config");
    reg.push_blob(REPO, &image.layer); // the config is never pushed
    let resp = reg.put_manifest(
        REPO,
        &image.manifest.digest,
        OCI_MANIFEST,
        image.manifest.bytes.clone(),
    );
    expect_error(
        &resp,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "PUT of a manifest whose config is missing",
    );
    reg.expect_no_manifest(
        REPO,
        "broken",
        &image.manifest.digest,
        "manifest with a missing config",
    );
}

conformance_test!(
    push_index_missing_child_refused,
    check_push_index_missing_child
);

/// An index naming a child manifest the repository does not hold is 400
/// `MANIFEST_BLOB_UNKNOWN`, and is not visible afterwards.
fn check_push_index_missing_child(reg: &Registry) {
    let present = test_image("present-child");
    present.push(reg, REPO, "child");
    let absent = test_image("absent-child");
    let index = Manifest::from_json(
        OCI_INDEX,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [present.manifest.descriptor(), absent.manifest.descriptor()],
        }),
    );
    let resp = reg.put_manifest(REPO, "brokenindex", OCI_INDEX, index.bytes.clone());
    expect_error(
        &resp,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "PUT of an index whose child manifest is missing",
    );
    reg.expect_no_manifest(
        REPO,
        "brokenindex",
        &index.digest,
        "index with a missing child",
    );
}

conformance_test!(push_manifest_invalid_refused, check_push_manifest_invalid);

/// A body that is not a manifest of the declared type is 400 `MANIFEST_INVALID`.
fn check_push_manifest_invalid(reg: &Registry) {
    let resp = reg.put_manifest(REPO, "garbage", OCI_MANIFEST, b"blablabla".to_vec());
    expect_error(
        &resp,
        400,
        "MANIFEST_INVALID",
        "PUT of `blablabla` as a manifest",
    );

    let no_config = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []});
    let resp = reg.put_manifest(
        REPO,
        "noconfig",
        OCI_MANIFEST,
        serde_json::to_vec(&no_config).unwrap(),
    );
    expect_error(
        &resp,
        400,
        "MANIFEST_INVALID",
        "PUT of an OCI manifest without a config",
    );

    let resp = reg.get(&format!("/v2/{REPO}/manifests/garbage"), &[]);
    expect_status(&resp, 404, "GET of a tag whose manifest was refused");
}

conformance_test!(
    push_manifest_digest_mismatch_refused,
    check_push_manifest_digest_mismatch
);

/// A manifest PUT by digest whose body has another digest is 400 `DIGEST_INVALID`.
fn check_push_manifest_digest_mismatch(reg: &Registry) {
    let image = test_image("mismatch");
    image.push_blobs(reg, REPO);
    let wrong = sha256_digest(b"another manifest");
    let resp = reg.put_manifest(REPO, &wrong, OCI_MANIFEST, image.manifest.bytes.clone());
    expect_error(
        &resp,
        400,
        "DIGEST_INVALID",
        "PUT of a manifest to a digest that is not its own",
    );
    for digest in [&wrong, &image.manifest.digest] {
        let resp = reg.get(
            &format!("/v2/{REPO}/manifests/{digest}"),
            &[("Accept", OCI_MANIFEST)],
        );
        expect_status(&resp, 404, &format!("GET of {digest} after a refused PUT"));
    }
}

conformance_test!(
    push_manifest_invalid_tag_refused,
    check_push_manifest_invalid_tag
);

/// A PUT to a reference that is neither a digest nor a tag (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`)
/// is 400 `TAG_INVALID`.
fn check_push_manifest_invalid_tag(reg: &Registry) {
    let image = test_image("badtag");
    image.push_blobs(reg, REPO);
    let too_long = "t".repeat(129);
    for tag in [INVALID_REFERENCE, "-leadingdash", too_long.as_str()] {
        let resp = reg.put_manifest(REPO, tag, OCI_MANIFEST, image.manifest.bytes.clone());
        expect_error(
            &resp,
            400,
            "TAG_INVALID",
            &format!("PUT of a manifest to the invalid tag `{tag}`"),
        );
    }
    let longest = "t".repeat(128);
    let resp = reg.put_manifest(REPO, &longest, OCI_MANIFEST, image.manifest.bytes.clone());
    expect_status(
        &resp,
        201,
        "PUT of a manifest to a 128-character tag (the longest valid one)",
    );
}

conformance_test!(push_manifest_size_limit, check_push_manifest_size_limit);

/// Spec: registries should accept manifests of at least 4 MiB and refuse larger ones with
/// 413. A manifest of exactly 4 MiB is accepted and served intact; one byte more is 413
/// and stays invisible.
fn check_push_manifest_size_limit(reg: &Registry) {
    let config = config_blob("large");
    let layer = layer_blob("large");
    reg.push_blob(REPO, &config);
    reg.push_blob(REPO, &layer);

    let at_limit = padded_manifest(&config, &layer, MANIFEST_LIMIT);
    let resp = reg.put_manifest(REPO, "exactly4mib", OCI_MANIFEST, at_limit.bytes.clone());
    expect_status(
        &resp,
        201,
        "PUT of a manifest of exactly 4 MiB (4194304 bytes)",
    );
    reg.expect_manifest(REPO, "exactly4mib", &at_limit, "manifest of exactly 4 MiB");

    let over = padded_manifest(&config, &layer, MANIFEST_LIMIT + 1);
    let resp = reg.put_manifest(REPO, "over4mib", OCI_MANIFEST, over.bytes.clone());
    expect_status(&resp, 413, "PUT of a manifest of 4 MiB + 1 byte");
    reg.expect_no_manifest(REPO, "over4mib", &over.digest, "manifest over 4 MiB");
}

conformance_test!(push_manifest_sha512, check_push_manifest_sha512);

/// SPEC §1 sha512: a manifest PUT under its sha512 digest is stored and served under that
/// digest, a wrong sha512 digest is refused, and manifests may reference sha512 blobs.
fn check_push_manifest_sha512(reg: &Registry) {
    let image = test_image("sha512");
    image.push_blobs(reg, REPO);
    let digest = sha512_digest(&image.manifest.bytes);
    let resp = reg.put_manifest(REPO, &digest, OCI_MANIFEST, image.manifest.bytes.clone());
    expect_status(&resp, 201, "PUT of a manifest by its sha512 digest");
    expect_header(
        &resp,
        "Docker-Content-Digest",
        &digest,
        "PUT of a manifest by its sha512 digest",
    );
    let by_sha512 = Manifest {
        digest: digest.clone(),
        ..image.manifest.clone()
    };
    reg.expect_manifest(
        REPO,
        &digest,
        &by_sha512,
        "manifest pushed by sha512 digest",
    );
    let resp = reg.head(
        &format!("/v2/{REPO}/manifests/{digest}"),
        &[("Accept", OCI_MANIFEST)],
    );
    expect_status(&resp, 200, "HEAD of a manifest by its sha512 digest");
    expect_digest_header(
        &resp,
        &image.manifest.bytes,
        &digest,
        "HEAD of a manifest by its sha512 digest",
    );

    let other = test_image("sha512-wrong");
    other.push_blobs(reg, REPO);
    let wrong = sha512_digest(b"a different manifest");
    let resp = reg.put_manifest(REPO, &wrong, OCI_MANIFEST, other.manifest.bytes.clone());
    expect_error(
        &resp,
        400,
        "DIGEST_INVALID",
        "PUT of a manifest to a sha512 digest that is not its own",
    );

    let config = Blob::sha512(config_blob("sha512-config").bytes);
    let layer = Blob::sha512(layer_blob("sha512-layer").bytes);
    reg.push_blob(REPO, &config);
    reg.push_blob(REPO, &layer);
    let manifest = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(OCI_CONFIG),
            "layers": [layer.descriptor(OCI_LAYER)],
        }),
    );
    let resp = reg.put_manifest(REPO, "sha512blobs", OCI_MANIFEST, manifest.bytes.clone());
    expect_status(&resp, 201, "PUT of a manifest referencing sha512 blobs");
    reg.expect_manifest(
        REPO,
        "sha512blobs",
        &manifest,
        "manifest referencing sha512 blobs",
    );
}

conformance_test!(push_teardown_deletes, check_push_teardown);

/// Official push "Teardown": the manifest, the config and layer blobs, and the empty JSON
/// blob can be deleted (202; the suite also accepts 404/405, Berth supports deletes).
fn check_push_teardown(reg: &Registry) {
    let image = test_image("push-teardown");
    image.push(reg, REPO, "test0");
    let empty = Blob::new(b"{}".to_vec());
    reg.push_blob(REPO, &empty);
    let resp = reg.delete(&format!("/v2/{REPO}/manifests/{}", image.manifest.digest));
    expect_status(&resp, 202, "DELETE of the manifest created in tests");
    for (what, blob) in [
        ("config", &image.config),
        ("layer", &image.layer),
        ("empty JSON", &empty),
    ] {
        let resp = reg.delete(&format!("/v2/{REPO}/blobs/{}", blob.digest));
        expect_status(
            &resp,
            202,
            &format!("DELETE of the {what} blob created in tests"),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Content discovery: tags and catalog
// ---------------------------------------------------------------------------------------

/// Pushes one manifest under `test0`..`test3`, as the official discovery setup does.
fn tags_setup(reg: &Registry) -> Image {
    let image = test_image("discovery");
    image.push_blobs(reg, REPO);
    for tag in ["test0", "test1", "test2", "test3"] {
        let resp = reg.put_manifest(REPO, tag, OCI_MANIFEST, image.manifest.bytes.clone());
        expect_status(&resp, 201, &format!("PUT of a manifest to tag {tag}"));
    }
    image
}

conformance_test!(discovery_tags_list, check_tags_list);

/// Official "GET request to list tags should yield 200 response": the exact tag set, sorted.
fn check_tags_list(reg: &Registry) {
    tags_setup(reg);
    let resp = reg.get(&format!("/v2/{REPO}/tags/list"), &[]);
    expect_status(&resp, 200, "GET of the tag list");
    let body = resp.json("GET of the tag list");
    assert_eq!(
        body["name"],
        json!(REPO),
        "tag list: expected `name` to be {REPO}\n{resp}"
    );
    assert_eq!(
        tags_of(&resp),
        ["test0", "test1", "test2", "test3"],
        "tag list: unexpected tags\n{resp}"
    );
}

conformance_test!(
    discovery_tags_pagination_n_and_link,
    check_tags_pagination_n
);

/// Official "number of tags should be limitable by `n`"; beyond it, the `Link` header of
/// SPEC §1 leads to the next page, and the last page has none.
fn check_tags_pagination_n(reg: &Registry) {
    tags_setup(reg);
    let resp = reg.get(&format!("/v2/{REPO}/tags/list?n=2"), &[]);
    expect_status(&resp, 200, "GET of the tag list with n=2");
    assert_eq!(
        tags_of(&resp),
        ["test0", "test1"],
        "tag list with n=2: expected the first two tags\n{resp}"
    );
    let next = next_link(&resp).unwrap_or_else(|| {
        panic!("tag list with n=2 of 4 tags: expected a `Link: <...>; rel=\"next\"` header\n{resp}")
    });
    let resp = reg.get(&next, &[]);
    expect_status(&resp, 200, "GET of the tag list's next page");
    assert_eq!(
        tags_of(&resp),
        ["test2", "test3"],
        "tag list, second page: expected the last two tags\n{resp}"
    );
    if let Some(link) = next_link(&resp) {
        let resp = reg.get(&link, &[]);
        expect_status(&resp, 200, "GET of the tag list's (empty) third page");
        assert!(
            tags_of(&resp).is_empty(),
            "tag list, third page: expected no tags\n{resp}"
        );
    }
    let resp = reg.get(&format!("/v2/{REPO}/tags/list?n=10"), &[]);
    expect_status(&resp, 200, "GET of the tag list with n=10");
    assert_eq!(
        tags_of(&resp).len(),
        4,
        "tag list with n=10 of 4 tags: expected all four\n{resp}"
    );
    assert!(
        next_link(&resp).is_none(),
        "tag list with n=10 of 4 tags: expected no Link header\n{resp}"
    );
}

conformance_test!(discovery_tags_pagination_last, check_tags_pagination_last);

/// Official "start of tag is set by `last`": tags strictly after `last`, at most `n`.
fn check_tags_pagination_last(reg: &Registry) {
    tags_setup(reg);
    let resp = reg.get(&format!("/v2/{REPO}/tags/list?n=2&last=test1"), &[]);
    expect_status(&resp, 200, "GET of the tag list with n=2&last=test1");
    assert_eq!(
        tags_of(&resp),
        ["test2", "test3"],
        "tag list with n=2&last=test1\n{resp}"
    );
    let resp = reg.get(&format!("/v2/{REPO}/tags/list?n=1&last=test0"), &[]);
    expect_status(&resp, 200, "GET of the tag list with n=1&last=test0");
    assert_eq!(
        tags_of(&resp),
        ["test1"],
        "tag list with n=1&last=test0\n{resp}"
    );
    let resp = reg.get(&format!("/v2/{REPO}/tags/list?last=test2"), &[]);
    expect_status(&resp, 200, "GET of the tag list with last=test2");
    assert_eq!(
        tags_of(&resp),
        ["test3"],
        "tag list with last=test2 (no n)\n{resp}"
    );
    let resp = reg.get(&format!("/v2/{REPO}/tags/list?n=2&last=test3"), &[]);
    expect_status(&resp, 200, "GET of the tag list with n=2&last=test3");
    assert!(
        tags_of(&resp).is_empty(),
        "tag list after the last tag: expected no tags\n{resp}"
    );
}

conformance_test!(discovery_tags_lexical_order, check_tags_lexical_order);

/// Tags come back in lexical order, whatever the push order. The tags are all lowercase so
/// that the spec's two allowed orders (case-insensitive lexical, or ASCII as Go's
/// `sort.Strings`) agree.
fn check_tags_lexical_order(reg: &Registry) {
    let image = test_image("order");
    image.push_blobs(reg, REPO);
    for tag in ["b", "a10", "c0", "a2", "a1.0", "a1-0"] {
        let resp = reg.put_manifest(REPO, tag, OCI_MANIFEST, image.manifest.bytes.clone());
        expect_status(&resp, 201, &format!("PUT of a manifest to tag {tag}"));
    }
    let resp = reg.get(&format!("/v2/{REPO}/tags/list"), &[]);
    expect_status(&resp, 200, "GET of the tag list");
    assert_eq!(
        tags_of(&resp),
        ["a1-0", "a1.0", "a10", "a2", "b", "c0"],
        "tag list: expected lexical order\n{resp}"
    );
}

conformance_test!(
    discovery_tags_unknown_repository,
    check_tags_unknown_repository
);

/// The tag list of a repository that does not exist is 404 `NAME_UNKNOWN`.
fn check_tags_unknown_repository(reg: &Registry) {
    let resp = reg.get("/v2/conformance/nosuchrepo/tags/list", &[]);
    expect_error(
        &resp,
        404,
        "NAME_UNKNOWN",
        "GET of the tag list of a repository never pushed to",
    );
}

conformance_test!(discovery_catalog_pagination, check_catalog);

/// SPEC §1 "`/v2/_catalog` with the same pagination": lexical order, `n`, `last`, `Link`.
fn check_catalog(reg: &Registry) {
    let repos = ["c", "b/repo", "a/repo", "a/deeper/x"];
    for (i, repo) in repos.iter().enumerate() {
        test_image(&format!("catalog-{i}")).push(reg, repo, "latest");
    }
    let sorted = ["a/deeper/x", "a/repo", "b/repo", "c"];
    let resp = reg.get("/v2/_catalog", &[]);
    expect_status(&resp, 200, "GET /v2/_catalog");
    assert_eq!(
        repositories_of(&resp),
        sorted,
        "catalog: expected every repository in lexical order\n{resp}"
    );

    let resp = reg.get("/v2/_catalog?n=2", &[]);
    expect_status(&resp, 200, "GET /v2/_catalog?n=2");
    assert_eq!(
        repositories_of(&resp),
        sorted[..2],
        "catalog with n=2: expected the first two\n{resp}"
    );
    let next = next_link(&resp).unwrap_or_else(|| {
        panic!("catalog with n=2 of 4: expected a `Link: <...>; rel=\"next\"` header\n{resp}")
    });
    let resp = reg.get(&next, &[]);
    expect_status(&resp, 200, "GET of the catalog's next page");
    assert_eq!(
        repositories_of(&resp),
        sorted[2..],
        "catalog, second page: expected the last two\n{resp}"
    );

    let resp = reg.get("/v2/_catalog?n=10&last=a/repo", &[]);
    expect_status(&resp, 200, "GET /v2/_catalog?n=10&last=a/repo");
    assert_eq!(
        repositories_of(&resp),
        sorted[2..],
        "catalog after `a/repo`\n{resp}"
    );
    assert!(
        next_link(&resp).is_none(),
        "catalog with everything returned: expected no Link header\n{resp}"
    );
}

// ---------------------------------------------------------------------------------------
// Content discovery: referrers
// ---------------------------------------------------------------------------------------

/// The official referrers setup: a subject image, five artifacts pointing at it (two with
/// an artifact type in the config, two with `artifactType`, one index) pushed before and
/// after the subject, and one artifact whose subject was never pushed.
struct Referrers {
    subject: Image,
    missing_subject: Image,
    /// (manifest, expected artifactType, annotation value), subject's referrers only.
    of_subject: Vec<(Manifest, &'static str, &'static str)>,
    dangling: Manifest,
    /// The response to each PUT of a manifest with a subject, and the subject it named.
    pushes: Vec<(Resp, String)>,
}

fn referrers_setup(reg: &Registry) -> Referrers {
    let empty = Blob::new(b"{}".to_vec());
    let content_a = Blob::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
    let content_b = Blob::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
    let subject = test_image("referrers-subject");
    let missing_subject = test_image("referrers-missing");
    let subject_desc = subject.manifest.descriptor();
    let config_artifact = |content: &Blob, artifact_type: &str, note: &str| {
        Manifest::from_json(
            OCI_MANIFEST,
            &json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": content.descriptor(artifact_type),
                "layers": [empty.descriptor(OCI_EMPTY)],
                "subject": subject_desc,
                "annotations": {ANNOTATION_KEY: note},
            }),
        )
    };
    let typed_artifact = |content: &Blob, artifact_type: &str, subject: &Value, note: &str| {
        Manifest::from_json(
            OCI_MANIFEST,
            &json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": empty.descriptor(OCI_EMPTY),
                "layers": [content.descriptor(artifact_type)],
                "subject": subject,
                "annotations": {ANNOTATION_KEY: note},
            }),
        )
    };
    let a_config = config_artifact(&content_a, ARTIFACT_TYPE_A, "test config a");
    let a_layer = typed_artifact(&content_a, ARTIFACT_TYPE_A, &subject_desc, "test layer a");
    let index = Manifest::from_json(
        OCI_INDEX,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": ARTIFACT_TYPE_INDEX,
            "manifests": [a_config.descriptor(), a_layer.descriptor()],
            "subject": subject_desc,
            "annotations": {ANNOTATION_KEY: "test index"},
        }),
    );
    let b_config = config_artifact(&content_b, ARTIFACT_TYPE_B, "test config b");
    let b_layer = typed_artifact(&content_b, ARTIFACT_TYPE_B, &subject_desc, "test layer b");
    let dangling = typed_artifact(
        &content_b,
        ARTIFACT_TYPE_B,
        &missing_subject.manifest.descriptor(),
        "test layer c",
    );

    reg.push_blob(REPO, &empty);
    reg.push_blob(REPO, &content_a);
    // Only the status is required here; `OCI-Subject` is checked by its own test so that a
    // missing header does not hide how the referrers API itself behaves.
    let mut pushes = Vec::new();
    // Referrers pushed before their subject exists.
    for m in [&a_config, &a_layer, &index] {
        let resp = reg.put_manifest(REPO, &m.digest, &m.media_type, m.bytes.clone());
        expect_status(&resp, 201, "PUT of a referrer before its subject");
        pushes.push((resp, subject.manifest.digest.clone()));
    }
    subject.push(reg, REPO, "tagtest0");
    reg.push_blob(REPO, &content_b);
    // Referrers pushed after it.
    for m in [&b_config, &b_layer] {
        let resp = reg.put_manifest(REPO, &m.digest, &m.media_type, m.bytes.clone());
        expect_status(&resp, 201, "PUT of a referrer after its subject");
        pushes.push((resp, subject.manifest.digest.clone()));
    }
    let resp = reg.put_manifest(REPO, &dangling.digest, OCI_MANIFEST, dangling.bytes.clone());
    expect_status(&resp, 201, "PUT of a referrer whose subject does not exist");
    pushes.push((resp, missing_subject.manifest.digest.clone()));

    Referrers {
        subject,
        missing_subject,
        of_subject: vec![
            (a_config, ARTIFACT_TYPE_A, "test config a"),
            (a_layer, ARTIFACT_TYPE_A, "test layer a"),
            (index, ARTIFACT_TYPE_INDEX, "test index"),
            (b_config, ARTIFACT_TYPE_B, "test config b"),
            (b_layer, ARTIFACT_TYPE_B, "test layer b"),
        ],
        dangling,
        pushes,
    }
}

conformance_test!(discovery_referrers_push_with_subject, check_referrers_setup);

/// Official "References setup": every manifest with a `subject` is accepted with
/// `OCI-Subject: <subject digest>`, before or after the subject exists.
fn check_referrers_setup(reg: &Registry) {
    let fixture = referrers_setup(reg);
    for (resp, subject) in &fixture.pushes {
        expect_header(
            resp,
            "OCI-Subject",
            subject,
            "PUT of a manifest with a subject",
        );
    }
    reg.expect_manifest(
        REPO,
        "tagtest0",
        &fixture.subject.manifest,
        "referrers' subject",
    );
    for (m, _, _) in &fixture.of_subject {
        reg.expect_manifest(REPO, &m.digest, m, "referrer");
    }
}

conformance_test!(discovery_referrers_list, check_referrers_list);

/// Official "GET request to existing blob should yield 200" (referrers): an image index of
/// exactly the five referrers, each with its media type, size, artifact type (falling back
/// to the config media type) and annotations.
fn check_referrers_list(reg: &Registry) {
    let fixture = referrers_setup(reg);
    let resp = reg.get(
        &format!("/v2/{REPO}/referrers/{}", fixture.subject.manifest.digest),
        &[],
    );
    let what = "GET of the referrers of the subject";
    expect_referrers_index(&resp, what);
    expect_referrers(&resp, &fixture.of_subject.iter().collect::<Vec<_>>(), what);
}

conformance_test!(
    discovery_referrers_filter_by_artifact_type,
    check_referrers_filter
);

/// Official "GET request to existing blob with filter": SPEC §1 `?artifactType=` is
/// implemented by Berth, so the filter must be applied and announced with
/// `OCI-Filters-Applied: artifactType` (the suite also accepts an unfiltered answer).
fn check_referrers_filter(reg: &Registry) {
    let fixture = referrers_setup(reg);
    let url = with_query(
        &format!("/v2/{REPO}/referrers/{}", fixture.subject.manifest.digest),
        "artifactType",
        ARTIFACT_TYPE_A,
    );
    let resp = reg.get(&url, &[]);
    let what = "GET of the referrers of the subject filtered by artifactType";
    expect_referrers_index(&resp, what);
    expect_header(&resp, "OCI-Filters-Applied", "artifactType", what);
    let expected: Vec<_> = fixture
        .of_subject
        .iter()
        .filter(|(_, t, _)| *t == ARTIFACT_TYPE_A)
        .collect();
    expect_referrers(&resp, &expected, what);

    let url = with_query(
        &format!("/v2/{REPO}/referrers/{}", fixture.subject.manifest.digest),
        "artifactType",
        "application/vnd.berth.conformance.nothing",
    );
    let resp = reg.get(&url, &[]);
    let what = "GET of the referrers filtered by an artifactType nobody has";
    expect_referrers_index(&resp, what);
    expect_referrers(&resp, &[], what);
}

conformance_test!(
    discovery_referrers_missing_subject,
    check_referrers_missing_subject
);

/// Official "GET request to missing manifest should yield 200": the referrers of a subject
/// that was never pushed list the one manifest pointing at it.
fn check_referrers_missing_subject(reg: &Registry) {
    let fixture = referrers_setup(reg);
    let resp = reg.get(
        &format!(
            "/v2/{REPO}/referrers/{}",
            fixture.missing_subject.manifest.digest
        ),
        &[],
    );
    let what = "GET of the referrers of a subject that was never pushed";
    expect_referrers_index(&resp, what);
    expect_referrers(
        &resp,
        &[&(fixture.dangling.clone(), ARTIFACT_TYPE_B, "test layer c")],
        what,
    );
}

conformance_test!(
    discovery_referrers_unknown_digest_is_empty,
    check_referrers_unknown_digest
);

/// Official "GET request to nonexistent blob should result in empty 200 response".
fn check_referrers_unknown_digest(reg: &Registry) {
    referrers_setup(reg);
    let resp = reg.get(
        &format!("/v2/{REPO}/referrers/{}", sha256_digest(b"hello world")),
        &[],
    );
    let what = "GET of the referrers of an unknown digest";
    expect_referrers_index(&resp, what);
    expect_referrers(&resp, &[], what);
}

conformance_test!(
    discovery_referrers_invalid_digest,
    check_referrers_invalid_digest
);

/// Spec: "If the request is invalid, such as a `<digest>` with an invalid syntax, a
/// `400 Bad Request` MUST be returned."
fn check_referrers_invalid_digest(reg: &Registry) {
    referrers_setup(reg);
    let resp = reg.get(&format!("/v2/{REPO}/referrers/sha256:not-a-digest"), &[]);
    expect_status(&resp, 400, "GET of the referrers of `sha256:not-a-digest`");
}

conformance_test!(
    discovery_referrers_follow_deletion,
    check_referrers_follow_deletion
);

/// A deleted referrer leaves the referrers list (official discovery "Teardown" deletes
/// each referrer; this also checks the list afterwards).
fn check_referrers_follow_deletion(reg: &Registry) {
    let fixture = referrers_setup(reg);
    let (gone, _, _) = &fixture.of_subject[0];
    let resp = reg.delete(&format!("/v2/{REPO}/manifests/{}", gone.digest));
    expect_status(&resp, 202, "DELETE of a referrer");
    let resp = reg.get(
        &format!("/v2/{REPO}/referrers/{}", fixture.subject.manifest.digest),
        &[],
    );
    let what = "GET of the referrers after deleting one";
    expect_referrers_index(&resp, what);
    expect_referrers(
        &resp,
        &fixture.of_subject[1..].iter().collect::<Vec<_>>(),
        what,
    );
    for (m, _, _) in &fixture.of_subject[1..] {
        let resp = reg.delete(&format!("/v2/{REPO}/manifests/{}", m.digest));
        expect_status(&resp, 202, "DELETE of a referrer (teardown)");
    }
    let resp = reg.delete(&format!(
        "/v2/{REPO}/manifests/{}",
        fixture.subject.manifest.digest
    ));
    expect_status(&resp, 202, "DELETE of the subject (teardown)");
    let resp = reg.delete(&format!("/v2/{REPO}/manifests/{}", fixture.dangling.digest));
    expect_status(&resp, 202, "DELETE of the dangling referrer (teardown)");
}

/// A referrers response is 200 with `Content-Type` of an OCI index and an index body.
#[track_caller]
fn expect_referrers_index(resp: &Resp, what: &str) {
    expect_status(resp, 200, what);
    expect_header(resp, "Content-Type", OCI_INDEX, what);
    let body = resp.json(what);
    assert_eq!(
        body["schemaVersion"],
        json!(2),
        "{what}: expected schemaVersion 2\n{resp}"
    );
    assert_eq!(
        body["mediaType"],
        json!(OCI_INDEX),
        "{what}: expected mediaType {OCI_INDEX}\n{resp}"
    );
    assert!(
        body["manifests"].is_array(),
        "{what}: expected a `manifests` array\n{resp}"
    );
}

/// The response lists exactly `expected` (in any order), each descriptor complete.
#[track_caller]
fn expect_referrers(resp: &Resp, expected: &[&(Manifest, &'static str, &'static str)], what: &str) {
    let body = resp.json(what);
    let listed = body["manifests"].as_array().cloned().unwrap_or_default();
    let mut listed_digests: Vec<String> = listed
        .iter()
        .map(|d| d["digest"].as_str().unwrap_or("").to_owned())
        .collect();
    let mut expected_digests: Vec<String> =
        expected.iter().map(|(m, _, _)| m.digest.clone()).collect();
    listed_digests.sort();
    expected_digests.sort();
    assert_eq!(
        listed_digests, expected_digests,
        "{what}: unexpected set of referrer digests\n{resp}"
    );
    for (m, artifact_type, note) in expected {
        let d = listed
            .iter()
            .find(|d| d["digest"] == json!(m.digest))
            .expect("listed");
        assert_eq!(
            d["mediaType"],
            json!(m.media_type),
            "{what}: mediaType of {}\n{resp}",
            m.digest
        );
        assert_eq!(
            d["size"],
            json!(m.bytes.len()),
            "{what}: size of {}\n{resp}",
            m.digest
        );
        assert_eq!(
            d["artifactType"],
            json!(artifact_type),
            "{what}: artifactType of {}\n{resp}",
            m.digest
        );
        assert_eq!(
            d["annotations"],
            json!({ANNOTATION_KEY: note}),
            "{what}: annotations of {} must be copied from the manifest\n{resp}",
            m.digest
        );
    }
}

// ---------------------------------------------------------------------------------------
// Content management
// ---------------------------------------------------------------------------------------

/// The official management setup (config, layer, manifest tagged `tagtest0`), plus a second
/// tag on it and an unrelated image tagged `other` that must survive every delete.
fn management_setup(reg: &Registry) -> (Image, Image) {
    let image = test_image("management");
    image.push(reg, REPO, "tagtest0");
    let resp = reg.put_manifest(REPO, "alias", OCI_MANIFEST, image.manifest.bytes.clone());
    expect_status(&resp, 201, "PUT of a second tag");
    let other = test_image("management-other");
    other.push(reg, REPO, "other");
    let resp = reg.get(&format!("/v2/{REPO}/tags/list"), &[]);
    expect_status(
        &resp,
        200,
        "GET of the tag list before anything gets deleted",
    );
    assert_eq!(
        tags_of(&resp),
        ["alias", "other", "tagtest0"],
        "tag list before deletes\n{resp}"
    );
    (image, other)
}

conformance_test!(management_delete_tag, check_delete_tag);

/// Official "DELETE request to manifest tag should return 202" (the suite also accepts 400
/// `UNSUPPORTED` or 405; Berth supports untagging, SPEC §2 `content/delete`). Deleting a tag
/// removes only that tag.
fn check_delete_tag(reg: &Registry) {
    let (image, _) = management_setup(reg);
    let resp = reg.delete(&format!("/v2/{REPO}/manifests/tagtest0"));
    expect_status(&resp, 202, "DELETE of a tag");
    let resp = reg.get(
        &format!("/v2/{REPO}/manifests/tagtest0"),
        &[("Accept", OCI_MANIFEST)],
    );
    expect_error(&resp, 404, "MANIFEST_UNKNOWN", "GET of a deleted tag");
    reg.expect_manifest(
        REPO,
        &image.manifest.digest,
        &image.manifest,
        "manifest after one of its tags was deleted",
    );
    reg.expect_manifest(REPO, "alias", &image.manifest, "the manifest's other tag");
    let resp = reg.get(&format!("/v2/{REPO}/tags/list"), &[]);
    expect_status(&resp, 200, "GET of the tag list after deleting a tag");
    assert_eq!(
        tags_of(&resp),
        ["alias", "other"],
        "tag list after deleting `tagtest0`\n{resp}"
    );
}

conformance_test!(management_delete_manifest, check_delete_manifest);

/// Official "DELETE request to manifest (digest) should yield 202", "GET request to deleted
/// manifest URL should yield 404" and "GET request to tags list should reflect manifest
/// deletion": every tag of the deleted manifest goes with it.
fn check_delete_manifest(reg: &Registry) {
    let (image, other) = management_setup(reg);
    let resp = reg.delete(&format!("/v2/{REPO}/manifests/{}", image.manifest.digest));
    expect_status(&resp, 202, "DELETE of a manifest by digest");
    let resp = reg.get(
        &format!("/v2/{REPO}/manifests/{}", image.manifest.digest),
        &[("Accept", OCI_MANIFEST)],
    );
    expect_error(&resp, 404, "MANIFEST_UNKNOWN", "GET of a deleted manifest");
    for tag in ["tagtest0", "alias"] {
        let resp = reg.get(
            &format!("/v2/{REPO}/manifests/{tag}"),
            &[("Accept", OCI_MANIFEST)],
        );
        expect_status(
            &resp,
            404,
            &format!("GET of tag {tag} of a deleted manifest"),
        );
    }
    let resp = reg.get(&format!("/v2/{REPO}/tags/list"), &[]);
    expect_status(&resp, 200, "GET of the tag list after deleting a manifest");
    assert_eq!(
        tags_of(&resp),
        ["other"],
        "tag list after deleting the manifest\n{resp}"
    );
    reg.expect_manifest(REPO, "other", &other.manifest, "unrelated manifest");
}

conformance_test!(management_delete_blob, check_delete_blob);

/// Official "DELETE request to blob URL should yield 202" and "GET request to deleted blob
/// URL should yield 404"; a second DELETE is 404 `BLOB_UNKNOWN`.
fn check_delete_blob(reg: &Registry) {
    let (image, _) = management_setup(reg);
    let resp = reg.delete(&format!("/v2/{REPO}/manifests/{}", image.manifest.digest));
    expect_status(&resp, 202, "DELETE of the manifest before its blobs");
    for (what, blob) in [("config", &image.config), ("layer", &image.layer)] {
        let path = format!("/v2/{REPO}/blobs/{}", blob.digest);
        let resp = reg.delete(&path);
        expect_status(&resp, 202, &format!("DELETE of the {what} blob"));
        let resp = reg.get(&path, &[]);
        expect_error(
            &resp,
            404,
            "BLOB_UNKNOWN",
            &format!("GET of the deleted {what} blob"),
        );
        let resp = reg.head(&path, &[]);
        expect_status(&resp, 404, &format!("HEAD of the deleted {what} blob"));
        let resp = reg.delete(&path);
        expect_error(
            &resp,
            404,
            "BLOB_UNKNOWN",
            &format!("second DELETE of the {what} blob"),
        );
    }
}

conformance_test!(management_delete_unknown, check_delete_unknown);

/// Deleting what is not there is 404 with the matching code.
fn check_delete_unknown(reg: &Registry) {
    management_setup(reg);
    let resp = reg.delete(&format!(
        "/v2/{REPO}/manifests/{}",
        sha256_digest(b"no such manifest")
    ));
    expect_error(
        &resp,
        404,
        "MANIFEST_UNKNOWN",
        "DELETE of a manifest that does not exist",
    );
    let resp = reg.delete(&format!(
        "/v2/{REPO}/blobs/{}",
        sha256_digest(b"no such blob")
    ));
    expect_error(
        &resp,
        404,
        "BLOB_UNKNOWN",
        "DELETE of a blob that does not exist",
    );
}

// ---------------------------------------------------------------------------------------
// Repository names
// ---------------------------------------------------------------------------------------

conformance_test!(names_invalid_grammar_refused, check_invalid_names);

/// Repository names must match `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/...)*`: a `..` (as a
/// component or inside one), an empty component or an uppercase letter is 400
/// `NAME_INVALID`. Sent over a raw socket so no client library normalises the path.
fn check_invalid_names(reg: &Registry) {
    let bad_names = [
        "foo/../bar",
        "foo..bar",
        "foo//bar",
        "Foo/bar",
        "foo/Bar",
        "foo/",
        "foo-/bar",
    ];
    let mut failures = Vec::new();
    for name in bad_names {
        for (method, path, body) in [
            ("POST", format!("/v2/{name}/blobs/uploads/"), ""),
            ("GET", format!("/v2/{name}/tags/list"), ""),
            ("PUT", format!("/v2/{name}/manifests/latest"), "{}"),
        ] {
            let (status, raw) = reg.raw_request(method, &path, body);
            if status != 400 || !raw.contains("NAME_INVALID") {
                failures.push(format!(
                    "{method} {path} (invalid name `{name}`): got status {status}\n{}",
                    raw.trim_end()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "expected 400 with NAME_INVALID for each request below; {} did not get it:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The same names' valid neighbours are accepted.
    for name in ["foo/bar", "foo.bar", "foo__bar/b-a--r"] {
        let (_, location) = reg.start_upload(name);
        assert!(!location.is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures: blobs, manifests and images
// ---------------------------------------------------------------------------------------

/// Content and its digest.
#[derive(Clone)]
struct Blob {
    bytes: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        let digest = sha256_digest(&bytes);
        Blob { bytes, digest }
    }

    fn sha512(bytes: Vec<u8>) -> Self {
        let digest = sha512_digest(&bytes);
        Blob { bytes, digest }
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A manifest or index as the exact bytes pushed.
#[derive(Clone)]
struct Manifest {
    bytes: Vec<u8>,
    digest: String,
    media_type: String,
}

impl Manifest {
    fn from_json(media_type: &str, value: &Value) -> Self {
        Self::raw(
            media_type,
            serde_json::to_vec_pretty(value).expect("serialise a manifest"),
        )
    }

    fn raw(media_type: &str, bytes: Vec<u8>) -> Self {
        let digest = sha256_digest(&bytes);
        Manifest {
            bytes,
            digest,
            media_type: media_type.to_owned(),
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// An image: a config, one layer and the OCI manifest that ties them.
struct Image {
    config: Blob,
    layer: Blob,
    manifest: Manifest,
}

impl Image {
    fn push_blobs(&self, reg: &Registry, repo: &str) {
        reg.push_blob(repo, &self.config);
        reg.push_blob(repo, &self.layer);
    }

    fn push(&self, reg: &Registry, repo: &str, tag: &str) {
        self.push_blobs(reg, repo);
        let resp = reg.put_manifest(repo, tag, OCI_MANIFEST, self.manifest.bytes.clone());
        expect_status(
            &resp,
            201,
            &format!("PUT of the manifest of image {repo}:{tag}"),
        );
    }
}

/// An image whose content is unique to `seed`.
fn test_image(seed: &str) -> Image {
    let config = config_blob(seed);
    let layer = layer_blob(seed);
    let manifest = Manifest::from_json(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(OCI_CONFIG),
            "layers": [layer.descriptor(OCI_LAYER)],
        }),
    );
    Image {
        config,
        layer,
        manifest,
    }
}

/// An image config; the author makes its digest unique to `seed`.
fn config_blob(seed: &str) -> Blob {
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "author": seed,
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    Blob::new(serde_json::to_vec_pretty(&config).expect("serialise a config"))
}

/// Opaque layer bytes unique to `seed` (registries do not look inside layers).
fn layer_blob(seed: &str) -> Blob {
    let seed = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    Blob::new(pseudo_random_bytes(512, seed))
}

/// A manifest of exactly `size` bytes, padded with an annotation.
fn padded_manifest(config: &Blob, layer: &Blob, size: usize) -> Manifest {
    let build = |pad: usize| {
        serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(OCI_CONFIG),
            "layers": [layer.descriptor(OCI_LAYER)],
            "annotations": {"org.example.padding": "a".repeat(pad)},
        }))
        .expect("serialise a manifest")
    };
    let bytes = build(size - build(0).len());
    assert_eq!(bytes.len(), size, "padded manifest size");
    Manifest::raw(OCI_MANIFEST, bytes)
}

/// A blob for chunked uploads, at least twice the registry's `OCI-Chunk-Min-Length`.
fn chunkable_blob(post: &Resp, seed: u64) -> Blob {
    let min = chunk_min_length(post);
    Blob::new(pseudo_random_bytes((2 * min).max(64) + 1, seed))
}

/// Where to cut a chunkable blob so that the first chunk honours the minimum length.
fn chunk_split(post: &Resp, blob: &Blob) -> usize {
    (blob.bytes.len() / 2 + 1).max(chunk_min_length(post))
}

fn chunk_min_length(post: &Resp) -> usize {
    post.header("OCI-Chunk-Min-Length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Deterministic bytes (xorshift), so failures reproduce.
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

fn sha512_digest(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(bytes)))
}

// ---------------------------------------------------------------------------------------
// HTTP: the registry client and its responses
// ---------------------------------------------------------------------------------------

/// A registry under test, reached at `base` (e.g. `http://127.0.0.1:41234`).
struct Registry {
    base: String,
    http: Client,
    /// The credential sent with every request.
    cred: Cred,
}

impl Registry {
    fn new(base: &str) -> Self {
        berth_server::tls::install_crypto_provider();
        let http = Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("build an HTTP client");
        Registry {
            base: base.trim_end_matches('/').to_owned(),
            http,
            cred: Cred::None,
        }
    }

    /// Sends `Authorization: Basic` with `user` and `password` on every request.
    fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        self.cred = Cred::basic(user, password);
        self
    }

    /// The `Authorization` header value, if credentials are set.
    fn authorization(&self) -> Option<String> {
        match &self.cred {
            Cred::Basic(user, password) => Some(format!("Basic {}", basic_token(user, password))),
            Cred::None | Cred::Bearer(_) => None,
        }
    }

    /// An absolute URL for a path or a `Location` (absolute or relative).
    fn url(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_owned()
        } else {
            format!("{}{target}", self.base)
        }
    }

    fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        authn::send(
            &self.http,
            method,
            &self.url(target),
            &self.cred,
            headers,
            body,
        )
    }

    fn get(&self, target: &str, headers: &[(&str, &str)]) -> Resp {
        self.send("GET", target, headers, None)
    }

    fn head(&self, target: &str, headers: &[(&str, &str)]) -> Resp {
        self.send("HEAD", target, headers, None)
    }

    fn delete(&self, target: &str) -> Resp {
        self.send("DELETE", target, &[], None)
    }

    /// `POST /v2/<repo>/blobs/uploads/` with an empty body: 202 and a session `Location`.
    fn start_upload(&self, repo: &str) -> (Resp, String) {
        let resp = self.send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            Some(Vec::new()),
        );
        expect_status(
            &resp,
            202,
            &format!("POST starting an upload session in {repo}"),
        );
        let location = resp.location(&format!("POST starting an upload session in {repo}"));
        (resp, location)
    }

    fn patch_chunk(&self, location: &str, chunk: &[u8], range: &str) -> Resp {
        self.send(
            "PATCH",
            location,
            &[("Content-Type", OCTET_STREAM), ("Content-Range", range)],
            Some(chunk.to_vec()),
        )
    }

    /// POST + PUT of a whole blob; must be 201.
    fn push_blob(&self, repo: &str, blob: &Blob) {
        let (_, location) = self.start_upload(repo);
        let resp = self.send(
            "PUT",
            &with_query(&location, "digest", &blob.digest),
            &[("Content-Type", OCTET_STREAM)],
            Some(blob.bytes.clone()),
        );
        expect_status(
            &resp,
            201,
            &format!("PUT completing the upload of {} to {repo}", blob.digest),
        );
    }

    fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: Vec<u8>) -> Resp {
        self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            Some(bytes),
        )
    }

    /// The blob is served, byte for byte, with its digest.
    #[track_caller]
    fn expect_blob(&self, repo: &str, blob: &Blob, what: &str) {
        let resp = self.get(&format!("/v2/{repo}/blobs/{}", blob.digest), &[]);
        expect_status(&resp, 200, &format!("GET of the {what}"));
        expect_body(&resp, &blob.bytes, &format!("GET of the {what}"));
        expect_digest_header(
            &resp,
            &blob.bytes,
            &blob.digest,
            &format!("GET of the {what}"),
        );
    }

    /// The manifest is served under `reference`, byte for byte, with its type and digest.
    #[track_caller]
    fn expect_manifest(&self, repo: &str, reference: &str, manifest: &Manifest, what: &str) {
        let what = format!("GET of the {what} by `{reference}`");
        let resp = self.get(
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", &manifest.media_type)],
        );
        expect_status(&resp, 200, &what);
        expect_body(&resp, &manifest.bytes, &what);
        expect_header(&resp, "Content-Type", &manifest.media_type, &what);
        expect_digest_header(&resp, &manifest.bytes, &manifest.digest, &what);
    }

    /// Neither the tag nor the digest resolves, and the tag is not listed.
    #[track_caller]
    fn expect_no_manifest(&self, repo: &str, tag: &str, digest: &str, what: &str) {
        let accept = [(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )];
        for reference in [tag, digest] {
            let resp = self.get(&format!("/v2/{repo}/manifests/{reference}"), &accept);
            expect_status(
                &resp,
                404,
                &format!("GET of the refused {what} by `{reference}`"),
            );
        }
        let resp = self.get(&format!("/v2/{repo}/tags/list"), &[]);
        if resp.status == 200 {
            assert!(
                !tags_of(&resp).iter().any(|t| t == tag),
                "tag list after refusing the {what}: tag `{tag}` must not be listed\n{resp}"
            );
        } else {
            expect_error(
                &resp,
                404,
                "NAME_UNKNOWN",
                &format!("tag list after refusing the {what}"),
            );
        }
    }

    /// Sends a request over a plain socket, path untouched; returns the status and the raw
    /// response text.
    fn raw_request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let host = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).expect("connect to the registry");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set a read timeout");
        let authorization = self
            .authorization()
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {OCI_MANIFEST}\r\n\
             {authorization}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .expect("send a raw request");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, raw)
    }
}

/// Appends `key=value` to a URL that may already carry a query.
fn with_query(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{key}={}", value.replace('+', "%2B"))
}

/// The path (and query) of an absolute or relative URL.
fn url_path(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned()),
        None => location.to_owned(),
    }
}

/// The target of a `Link: <...>; rel="next"` header.
fn next_link(resp: &Resp) -> Option<String> {
    let header = resp.header("Link")?;
    header
        .split(',')
        .find(|part| part.contains("rel=\"next\"") || part.contains("rel=next"))
        .and_then(|part| Some(part[part.find('<')? + 1..part.find('>')?].trim().to_owned()))
}

fn tags_of(resp: &Resp) -> Vec<String> {
    string_list(resp, "tags")
}

fn repositories_of(resp: &Resp) -> Vec<String> {
    string_list(resp, "repositories")
}

#[track_caller]
fn string_list(resp: &Resp, field: &str) -> Vec<String> {
    let body = resp.json(&format!("list of {field}"));
    match &body[field] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("`{field}` holds a non-string\n{resp}"))
                    .to_owned()
            })
            .collect(),
        _ => panic!("expected `{field}` to be an array\n{resp}"),
    }
}

// ---------------------------------------------------------------------------------------
// Assertions: each names what it expected and prints the whole exchange.
// ---------------------------------------------------------------------------------------

#[track_caller]
fn expect_status_in(resp: &Resp, expected: &[u16], what: &str) {
    assert!(
        expected.contains(&resp.status),
        "{what}: expected a status among {expected:?}, got {}\n{resp}",
        resp.status
    );
}

#[track_caller]
fn expect_header(resp: &Resp, name: &str, expected: &str, what: &str) {
    let got = resp.header(name);
    assert!(
        got.as_deref() == Some(expected),
        "{what}: expected header `{name}: {expected}`, got {}\n{resp}",
        got.map_or_else(|| "no such header".to_owned(), |v| format!("`{name}: {v}`"))
    );
}

/// `Docker-Content-Digest` names `bytes`. For content addressed by sha256 it must be exactly
/// `digest`. For content addressed by sha512 the registry may answer in either algorithm (the
/// spec lets the header's algorithm differ from the request's), but it must be a digest of
/// these very bytes.
#[track_caller]
fn expect_digest_header(resp: &Resp, bytes: &[u8], digest: &str, what: &str) {
    if !digest.starts_with("sha512:") {
        expect_header(resp, "Docker-Content-Digest", digest, what);
        return;
    }
    let got = resp.header("Docker-Content-Digest");
    let sha256 = sha256_digest(bytes);
    assert!(
        got.as_deref() == Some(digest) || got.as_deref() == Some(sha256.as_str()),
        "{what}: expected header `Docker-Content-Digest: {digest}` (or the sha256 digest of the \
         same bytes, {sha256}), got {got:?}\n{resp}"
    );
}

/// The header may be absent; if present it must have this value.
#[track_caller]
fn expect_optional_header(resp: &Resp, name: &str, expected: &str, what: &str) {
    if resp.header(name).is_some() {
        expect_header(resp, name, expected, what);
    }
}

#[track_caller]
fn expect_body(resp: &Resp, expected: &[u8], what: &str) {
    assert!(
        resp.body == expected,
        "{what}: expected a body of {} bytes ({}), got {} bytes ({})\n{resp}",
        expected.len(),
        sha256_digest(expected),
        resp.body.len(),
        sha256_digest(&resp.body)
    );
}

#[track_caller]
fn expect_empty_body(resp: &Resp, what: &str) {
    assert!(
        resp.body.is_empty(),
        "{what}: expected no body, got {} bytes\n{resp}",
        resp.body.len()
    );
}
