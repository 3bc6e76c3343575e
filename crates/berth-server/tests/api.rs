//! In-process tests of the distribution API: the router is called with `oneshot`, no socket.
//! They pin the exact error bodies and the behaviours that real clients are less likely to
//! exercise (bad input, path tricks, the change log).

use std::time::Duration;

use axum::body::Body;
use berth_registry::{ChangeAction, RegistryConfig};
use http::StatusCode;
use serde_json::json;

mod support;
use support::*;

#[tokio::test]
async fn error_bodies_follow_the_spec() {
    let app = app().await;
    let missing = sha256(b"missing");
    let r = app.get(&format!("/v2/a/blobs/{missing}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    assert_eq!(
        r.json(),
        json!({"errors": [{"code": "BLOB_UNKNOWN", "message": format!("blob `{missing}` is not in the repository"), "detail": {"digest": missing}}]})
    );

    let r = app.get("/v2/Upper/tags/list").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "NAME_INVALID");

    let r = app.get("/v2/a/blobs/sha256:abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "DIGEST_INVALID");

    let r = app.call("PUT", "/v2/a/manifests/-bad", &[], "{}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "TAG_INVALID");
    // A tag that cannot exist is simply unknown when read, as the conformance suite expects.
    let r = app.get("/v2/a/manifests/-bad").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");

    let r = app.get("/v2/nothing/tags/list").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["code"], "NAME_UNKNOWN");

    let r = app
        .call("POST", "/v2/a/tags/list", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json()["errors"][0]["code"], "UNSUPPORTED");
}

#[tokio::test]
async fn path_tricks_are_refused() {
    let app = app().await;
    let d = sha256(b"x");
    for path in [
        format!("/v2/a/../b/blobs/{d}"),
        format!("/v2/a/./b/blobs/{d}"),
        format!("/v2/a//b/blobs/{d}"),
        format!("/v2/%2e%2e/blobs/{d}"),
        format!("/v2/a%2Fb/blobs/{d}"),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {:?}", r.body);
        assert_eq!(r.json()["errors"][0]["code"], "NAME_INVALID", "{path}");
    }
    let r = app
        .call(
            "PATCH",
            "/v2/a/blobs/uploads/..%2F..%2Fetc",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn chunk_out_of_order_is_416_with_the_current_range() {
    let app = app().await;
    let r = app
        .call("POST", "/v2/a/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let location = r.header("location").to_owned();
    let r = app
        .call(
            "PATCH",
            &location,
            &[("content-range", "0-4"), ("content-length", "5")],
            "hello",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-4");
    let r = app
        .call(
            "PATCH",
            &location,
            &[("content-range", "10-14"), ("content-length", "5")],
            "world",
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), "0-4");
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UPLOAD_INVALID");
    // The session is intact: the right chunk still completes it.
    let r = app
        .call(
            "PATCH",
            &location,
            &[("content-range", "5-9"), ("content-length", "5")],
            "world",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let digest = sha256(b"helloworld");
    let r = app
        .call(
            "PUT",
            &format!("{location}?digest={digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app.get(&format!("/v2/a/blobs/{digest}")).await;
    assert_eq!(&r.body[..], b"helloworld");
}

#[tokio::test]
async fn wrong_digest_is_refused_and_nothing_appears() {
    let app = app().await;
    let claimed = sha256(b"something else");
    let r = app
        .call(
            "POST",
            &format!("/v2/a/blobs/uploads/?digest={claimed}"),
            &[],
            "actual bytes",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "DIGEST_INVALID");
    assert_eq!(
        r.json()["errors"][0]["detail"]["actual"],
        sha256(b"actual bytes")
    );
    for digest in [claimed, sha256(b"actual bytes")] {
        let r = app
            .call("HEAD", &format!("/v2/a/blobs/{digest}"), &[], Body::empty())
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn manifest_with_missing_blob_is_refused_and_invisible() {
    let app = app().await;
    let config = app.push_blob("a", b"{}").await;
    let missing = sha256(b"never pushed");
    let manifest = image_manifest(&config, 2, &[(&missing, 12)]);
    let r = app.put_manifest("a", "v1", manifest.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    let r = app.get("/v2/a/manifests/v1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            "GET",
            &format!("/v2/a/manifests/{}", sha256(manifest.as_bytes())),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A blob of another repository does not count either.
    app.push_blob("other", b"never pushed").await;
    let r = app.put_manifest("a", "v1", manifest).await;
    assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn manifest_size_limit() {
    let app = app_with(RegistryConfig {
        max_manifest_size: 1000,
        ..RegistryConfig::default()
    })
    .await;
    let config = app.push_blob("a", b"{}").await;
    let mut manifest = image_manifest(&config, 2, &[]);
    let r = app.put_manifest("a", "small", manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    manifest.insert_str(
        manifest.len() - 1,
        &format!(r#","annotations":{{"pad":"{}"}}"#, "x".repeat(1000)),
    );
    let r = app.put_manifest("a", "big", manifest).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["errors"][0]["code"], "SIZE_INVALID");
}

#[tokio::test]
async fn exact_bytes_are_served_and_the_change_log_records_every_change() {
    let app = app().await;
    let config = app.push_blob("a", b"{}").await;
    // Unusual whitespace and key order: the registry must not re-serialise.
    let manifest = format!(
        "{{\n  \"schemaVersion\" : 2,\n\t\"config\": {{\"size\": 2, \"digest\": \"{config}\", \"mediaType\": \"application/vnd.oci.image.config.v1+json\"}},\n  \"mediaType\": \"{OCI_MANIFEST}\", \"layers\": [] }}\n\n"
    );
    let digest = sha256(manifest.as_bytes());
    let r = app.put_manifest("a", "v1", manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("docker-content-digest"), digest);
    let r = app
        .call(
            "GET",
            "/v2/a/manifests/v1",
            &[("accept", OCI_MANIFEST)],
            Body::empty(),
        )
        .await;
    assert_eq!(&r.body[..], manifest.as_bytes());
    assert_eq!(r.header("content-type"), OCI_MANIFEST);

    // Tag moves, re-pushes (no change), tag and manifest deletes.
    let r = app.put_manifest("a", "v2", manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app.put_manifest("a", "v2", manifest.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .call("DELETE", "/v2/a/manifests/v2", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = app
        .call(
            "DELETE",
            &format!("/v2/a/manifests/{digest}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = app.get("/v2/a/manifests/v1").await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "deleting the manifest deletes its tags"
    );

    let changes = app.registry.changes(0, 100).await.unwrap();
    let summary: Vec<(ChangeAction, Option<&str>)> = changes
        .iter()
        .map(|c| (c.event.action(), c.event.tag().map(|t| t.as_str())))
        .collect();
    assert_eq!(
        summary,
        [
            (ChangeAction::ManifestPut, None),
            (ChangeAction::TagPut, Some("v1")),
            (ChangeAction::TagPut, Some("v2")),
            (ChangeAction::TagDelete, Some("v2")),
            (ChangeAction::TagDelete, Some("v1")),
            (ChangeAction::ManifestDelete, None),
        ]
    );
    assert!(
        changes.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequence numbers strictly increase"
    );
    assert!(changes.iter().all(|c| {
        c.repository.as_str() == "a"
            && c.event
                .digest()
                .is_some_and(|d| d.to_string() == digest.as_str())
    }));
}

#[tokio::test]
async fn catalog_and_tags_paginate_with_link() {
    let app = app().await;
    let config = app.push_blob("x", b"{}").await;
    let manifest = image_manifest(&config, 2, &[]);
    for tag in ["c", "a", "b", "d"] {
        let r = app.put_manifest("x", tag, manifest.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = app.get("/v2/x/tags/list?n=2").await;
    assert_eq!(r.json(), json!({"name": "x", "tags": ["a", "b"]}));
    assert_eq!(
        r.header("link"),
        "</v2/x/tags/list?n=2&last=b>; rel=\"next\""
    );
    let r = app.get("/v2/x/tags/list?n=2&last=b").await;
    assert_eq!(r.json(), json!({"name": "x", "tags": ["c", "d"]}));
    assert!(r.headers.get("link").is_none());

    for repo in ["z", "y/1", "b"] {
        app.push_blob(repo, b"{}").await;
    }
    let r = app.get("/v2/_catalog?n=3").await;
    assert_eq!(r.json(), json!({"repositories": ["b", "x", "y/1"]}));
    assert_eq!(
        r.header("link"),
        "</v2/_catalog?n=3&last=y%2F1>; rel=\"next\""
    );
    let r = app.get("/v2/_catalog?n=3&last=y%2F1").await;
    assert_eq!(r.json(), json!({"repositories": ["z"]}));
}

#[tokio::test]
async fn abandoned_uploads_are_swept() {
    let app = app_with(RegistryConfig {
        upload_max_age: Duration::from_secs(1),
        ..RegistryConfig::default()
    })
    .await;
    let r = app
        .call("POST", "/v2/a/blobs/uploads/", &[], Body::empty())
        .await;
    let location = r.header("location").to_owned();
    app.call("PATCH", &location, &[], "partial").await;
    assert_eq!(
        app.registry.uploads().sweep().await.unwrap(),
        0,
        "a fresh session is kept"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.registry.uploads().sweep().await.unwrap(), 1);
    let r = app.get(&location).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn challenges_name_realm_service_and_scope() {
    let app = app().await;
    let r = app
        .call("GET", "/v2/", &[("authorization", "")], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app
        .call(
            "GET",
            "/v2/team/app/manifests/v1",
            &[("authorization", "")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer realm=\"http://registry.test/oauth2/token\",service=\"registry.test\",scope=\"repository:team/app:pull\""
    );
    assert_eq!(
        r.json(),
        json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required to pull `team/app`",
                           "detail": [{"Type": "repository", "Name": "team/app", "Action": "pull"}]}]})
    );
    let r = app
        .call(
            "POST",
            "/v2/team/app/blobs/uploads/",
            &[("authorization", "")],
            Body::empty(),
        )
        .await;
    assert!(
        r.header("www-authenticate")
            .ends_with("scope=\"repository:team/app:pull,push\"")
    );
    let wrong = format!("Basic {}", {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("admin:wrong")
    });
    let r = app
        .call("GET", "/v2/", &[("authorization", &wrong)], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").starts_with("Bearer realm="));
}

/// The token realm and service in a challenge come from `--public-url` when one is set (the
/// host clients were given), else from the request's `Host`.
#[tokio::test]
async fn challenges_name_the_public_url_when_one_is_set() {
    use std::sync::Arc;
    use tower::ServiceExt as _;

    let challenge = |router: axum::Router| async move {
        let request = http::Request::builder()
            .uri("/v2/a/manifests/latest")
            .header("host", "10.0.0.5:5000")
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(
        berth_registry::Registry::open_local(dir.path(), RegistryConfig::default())
            .await
            .unwrap(),
    );
    let identity = Arc::new(open_identity(dir.path()).await);
    let mut state = berth_server::AppState::new(Arc::clone(&registry), Arc::clone(&identity));
    assert_eq!(
        challenge(berth_server::router(state.clone())).await,
        r#"Bearer realm="http://10.0.0.5:5000/oauth2/token",service="10.0.0.5:5000",scope="repository:a:pull""#
    );
    state.public_url = Some(Arc::from("https://registry.example.com/"));
    assert_eq!(
        challenge(berth_server::router(state)).await,
        r#"Bearer realm="https://registry.example.com/oauth2/token",service="registry.example.com",scope="repository:a:pull""#
    );
}
