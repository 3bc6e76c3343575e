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

/// An access token for `scope`, as the admin, asked on host `host`.
async fn admin_access_token(app: &App, host: &str, scope: &str) -> String {
    let request = http::Request::builder()
        .uri(format!("/oauth2/token?service={host}&scope={scope}"))
        .header("host", host)
        .header("authorization", admin_basic())
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["token"].as_str().unwrap().to_owned()
}

async fn with_bearer(app: &App, host: &str, method: &str, uri: &str, token: &str) -> StatusCode {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    tower::ServiceExt::oneshot(app.router.clone(), request)
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn access_tokens_stay_within_their_audience_and_purpose() {
    let app = app().await;
    app.push_blob("a", b"x").await;
    let pull = admin_access_token(&app, "registry.test", "repository:a:pull").await;
    let blob = format!("/v2/a/blobs/{}", sha256(b"x"));
    assert_eq!(
        with_bearer(&app, "registry.test", "GET", &blob, &pull).await,
        StatusCode::OK
    );
    // The same token presented to another service (another host name of this registry).
    assert_eq!(
        with_bearer(&app, "other.test", "GET", &blob, &pull).await,
        StatusCode::UNAUTHORIZED
    );
    // An admin token obtained for a pull does not open the management API...
    assert_eq!(
        with_bearer(&app, "registry.test", "GET", "/berth/v1/tokens", &pull).await,
        StatusCode::FORBIDDEN
    );
    // ...a token scoped to it does, and Basic credentials do.
    let manage = admin_access_token(&app, "registry.test", "registry:management:*").await;
    assert_eq!(
        with_bearer(&app, "registry.test", "GET", "/berth/v1/tokens", &manage).await,
        StatusCode::OK
    );
    let r = app
        .call("GET", "/berth/v1/tokens", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_oversized_manifest_is_refused_before_its_body() {
    let app = app().await;
    // A body that never arrives: the answer must not wait for it.
    let never = Body::from_stream(futures_util::stream::pending::<
        Result<bytes::Bytes, std::io::Error>,
    >());
    let request = http::Request::builder()
        .method("PUT")
        .uri("/v2/a/manifests/big")
        .header("host", "registry.test")
        .header("authorization", admin_basic())
        .header("content-type", OCI_MANIFEST)
        .header("content-length", (5u64 << 20).to_string())
        .body(never)
        .unwrap();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tower::ServiceExt::oneshot(app.router.clone(), request),
    )
    .await
    .expect("answered without reading the body")
    .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_second_host_header_is_refused() {
    let app = app().await;
    let mut request = http::Request::builder()
        .uri("/v2/")
        .header("authorization", admin_basic())
        .body(Body::empty())
        .unwrap();
    request
        .headers_mut()
        .append("host", http::HeaderValue::from_static("registry.test"));
    request
        .headers_mut()
        .append("host", http::HeaderValue::from_static("evil.test"));
    let response = tower::ServiceExt::oneshot(app.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Host")
    );
}
