//! In-process tests of the red team's findings: manifests read the way clients read them,
//! ranges and sizes from clients never overflow, request headers that could be read two
//! ways are refused, access tokens stay within their audience and purpose, and a full disk
//! is the server's problem.

use axum::body::Body;
use http::StatusCode;

mod support;
use support::*;

#[tokio::test]
async fn manifests_with_keys_clients_read_differently_are_refused() {
    let app = app().await;
    let config = app.push_blob("a", b"{}").await;
    let layer = app.push_blob("a", b"layer").await;
    let never_pushed = sha256(b"never pushed");
    let valid = image_manifest(&config, 2, &[(&layer, 5)]);
    let shadowed = format!(
        r#"{},"Layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{never_pushed}","size":12}}]}}"#,
        valid.strip_suffix('}').unwrap()
    );
    let duplicate = format!(r#"{},"layers":[]}}"#, valid.strip_suffix('}').unwrap());
    let mut not_utf8 = format!(r#"{},"x":"AB"}}"#, valid.strip_suffix('}').unwrap()).into_bytes();
    let at = not_utf8.windows(2).position(|w| w == b"AB").unwrap();
    not_utf8[at] = 0xc3;
    for bad in [shadowed.into_bytes(), duplicate.into_bytes(), not_utf8] {
        let r = app
            .call(
                "PUT",
                "/v2/a/manifests/v1",
                &[("content-type", OCI_MANIFEST)],
                bad,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_INVALID");
        // Nothing changed.
        let r = app
            .call("GET", "/v2/a/manifests/v1", &[], Body::empty())
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = app
        .call(
            "PUT",
            "/v2/a/manifests/v1",
            &[("content-type", OCI_MANIFEST)],
            valid,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}
