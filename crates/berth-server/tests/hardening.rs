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

#[tokio::test]
async fn ranges_from_clients_never_overflow() {
    let app = app().await;
    let empty = app.push_blob("a", b"").await;
    for range in ["bytes=-1", "bytes=0-", "bytes=0-0"] {
        let r = app
            .call(
                "GET",
                &format!("/v2/a/blobs/{empty}"),
                &[("range", range)],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.header("content-range"), "bytes */0");
        assert_eq!(r.json()["errors"][0]["code"], "RANGE_INVALID");
    }
    // A chunk whose Content-Range ends at u64::MAX.
    let r = app
        .call("POST", "/v2/a/blobs/uploads/", &[], Body::empty())
        .await;
    let location = r.header("location").to_owned();
    for content_range in [
        "0-18446744073709551615",
        "bytes 0-9/3",
        "bytes 0-9/x",
        "0-9/10/11",
        "bytesbytes=0-9",
        "",
    ] {
        let r = app
            .call(
                "PATCH",
                &location,
                &[("content-range", content_range), ("content-length", "10")],
                vec![0u8; 10],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{content_range:?}"
        );
        assert_eq!(r.header("range"), "0-0", "{content_range:?}");
    }
    // A Content-Range that is not text is not ignored either.
    let mut request = http::Request::builder()
        .method("PATCH")
        .uri(&location)
        .header("host", "registry.test")
        .header("authorization", admin_basic())
        .header(
            "content-range",
            http::HeaderValue::from_bytes(b"0-9\xff").unwrap(),
        )
        .body(Body::from(vec![0u8; 10]))
        .unwrap();
    request.headers_mut().insert("content-length", 10.into());
    let response = tower::ServiceExt::oneshot(app.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = app.call("GET", &location, &[], Body::empty()).await;
    assert_eq!(r.header("range"), "0-0", "nothing was appended");
}
