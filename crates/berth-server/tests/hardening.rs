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
        let r = app.put_manifest("a", "v1", bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_INVALID");
        // Nothing changed.
        let r = app.get("/v2/a/manifests/v1").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = app.put_manifest("a", "v1", valid).await;
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
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let r = app.get(&location).await;
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
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()["token"].as_str().unwrap().to_owned()
}

async fn with_bearer(app: &App, host: &str, method: &str, uri: &str, token: &str) -> StatusCode {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    app.send(request).await.status
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
    let r = app.get("/berth/v1/tokens").await;
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
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), app.send(request))
        .await
        .expect("answered without reading the body");
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
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
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Host")
    );
}

#[tokio::test]
async fn a_host_that_disagrees_with_the_request_authority_is_refused() {
    let app = app().await;
    // An absolute-form URI in HTTP/1, or HTTP/2's `:authority`: both reach the router as the
    // URI's authority, beside a Host header that could name another service.
    let send = |uri: &'static str, host: &'static str| {
        let request = http::Request::builder()
            .uri(uri)
            .header("host", host)
            .header("authorization", admin_basic())
            .body(Body::empty())
            .unwrap();
        app.send(request)
    };
    for (uri, host) in [
        ("http://registry.test/v2/", "evil.test"),
        ("http://registry.test/v2/", "registry.test:5000"),
        (
            "http://registry.test:5000/oauth2/token",
            "registry.test:5001",
        ),
    ] {
        let r = send(uri, host).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri} with Host {host}");
        assert_eq!(r.json()["errors"][0]["code"], "UNSUPPORTED");
        let message = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("Host"), "{message}");
    }
    // The same name, told either way (host names are case-insensitive; a scheme's default
    // port may be left out).
    for (uri, host) in [
        ("http://registry.test/v2/", "registry.test"),
        ("http://Registry.Test/v2/", "registry.test"),
        ("http://registry.test:80/v2/", "registry.test"),
        ("https://registry.test/v2/", "registry.test:443"),
    ] {
        let r = send(uri, host).await;
        assert_eq!(r.status, StatusCode::OK, "{uri} with Host {host}");
    }
}

/// A blob store whose disk fills up on demand: writes then fail with `ENOSPC`.
struct FillingDisk {
    inner: berth_registry::FsBlobStore,
    full: std::sync::atomic::AtomicBool,
}

impl FillingDisk {
    fn check(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            // ENOSPC, as the kernel reports it.
            return Err(std::io::Error::from_raw_os_error(28));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl berth_registry::BlobStore for FillingDisk {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn stat(&self, digest: &berth_oci::Digest) -> std::io::Result<Option<u64>> {
        self.inner.stat(digest).await
    }
    async fn read(
        &self,
        digest: &berth_oci::Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> std::io::Result<Option<berth_registry::ByteStream<'static>>> {
        self.inner.read(digest, range).await
    }
    async fn delete(&self, digest: &berth_oci::Digest) -> std::io::Result<bool> {
        self.inner.delete(digest).await
    }
    async fn create_upload(&self, id: &berth_registry::UploadId) -> std::io::Result<()> {
        self.inner.create_upload(id).await
    }
    async fn append_upload(
        &self,
        id: &berth_registry::UploadId,
        offset: u64,
        body: berth_registry::ByteStream<'_>,
    ) -> Result<u64, berth_registry::blob::AppendError> {
        self.check()?;
        self.inner.append_upload(id, offset, body).await
    }
    async fn upload_len(&self, id: &berth_registry::UploadId) -> std::io::Result<Option<u64>> {
        self.inner.upload_len(id).await
    }
    async fn read_upload(
        &self,
        id: &berth_registry::UploadId,
    ) -> std::io::Result<berth_registry::ByteStream<'static>> {
        self.inner.read_upload(id).await
    }
    async fn commit_upload(
        &self,
        id: &berth_registry::UploadId,
        digest: &berth_oci::Digest,
        len: u64,
    ) -> std::io::Result<()> {
        self.check()?;
        self.inner.commit_upload(id, digest, len).await
    }
    async fn put(&self, digest: &berth_oci::Digest, bytes: bytes::Bytes) -> std::io::Result<()> {
        self.check()?;
        self.inner.put(digest, bytes).await
    }
    async fn abort_upload(&self, id: &berth_registry::UploadId) -> std::io::Result<()> {
        self.inner.abort_upload(id).await
    }
    async fn list_uploads(
        &self,
    ) -> std::io::Result<Vec<(berth_registry::UploadId, std::time::SystemTime)>> {
        self.inner.list_uploads().await
    }

    async fn list_blobs(
        &self,
    ) -> std::io::Result<Vec<(berth_oci::Digest, u64, std::time::SystemTime)>> {
        self.inner.list_blobs().await
    }
}

#[tokio::test]
async fn a_full_disk_is_a_server_error_and_is_reported() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(FillingDisk {
        inner: berth_registry::FsBlobStore::open(dir.path()).unwrap(),
        full: false.into(),
    });
    let metadata = berth_registry::metadata::SqliteMetadata::open(&dir.path().join("metadata.db"))
        .await
        .unwrap();
    let registry = Arc::new(berth_registry::Registry::new(
        Arc::clone(&disk) as Arc<dyn berth_registry::BlobStore>,
        Arc::new(metadata),
        berth_registry::RegistryConfig::default(),
    ));
    let app = app_on(Arc::clone(&registry), dir).await;
    assert_eq!(registry.storage_full_since(), None);

    disk.full.store(true, Ordering::SeqCst);
    let r = app
        .call("POST", "/v2/a/blobs/uploads/", &[], Body::empty())
        .await;
    let location = r.header("location").to_owned();
    for _ in 0..2 {
        let r = app.call("PATCH", &location, &[], b"data".to_vec()).await;
        assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(r.json()["errors"][0]["code"].is_string());
        assert!(
            r.json()["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("full")
        );
    }
    let since = registry
        .storage_full_since()
        .expect("the registry knows its disk is full");
    // Monolithic uploads too.
    let digest = sha256(b"mono");
    let r = app
        .call(
            "POST",
            &format!("/v2/a/blobs/uploads/?digest={digest}"),
            &[],
            b"mono".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(
        registry.storage_full_since(),
        Some(since),
        "the first occurrence is kept"
    );

    // Space again: the next write succeeds and clears it.
    disk.full.store(false, Ordering::SeqCst);
    let r = app.call("PATCH", &location, &[], b"data".to_vec()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(registry.storage_full_since(), None);
}

#[tokio::test]
async fn malformed_query_parameters_get_the_api_error_format() {
    let app = app().await;
    // A webhook, so that its events' listing exists.
    let created = app
        .call(
            "POST",
            "/berth/v1/webhooks",
            &[("content-type", "application/json")],
            r#"{"name":"hookstest","uri":"http://127.0.0.1:9/","actions":["push"]}"#,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.message());
    for uri in [
        "/berth/v1/audit?limit=many",
        "/berth/v1/audit?after=-x",
        "/berth/v1/webhooks/hookstest/events?limit=-1",
        "/berth/v1/connected-registries?no_children=maybe",
    ] {
        let r = app.get(uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(r.header("content-type"), "application/json", "{uri}");
        assert_eq!(r.json()["errors"][0]["code"], "INVALID", "{uri}");
        assert!(r.message().contains("query"), "{uri}: {}", r.message());
    }
}
