//! Imports from a source that misbehaves on purpose, which no real registry in the
//! end-to-end tests will do: a fake registry (axum, on a loopback port) serving one image,
//! with Bearer or Basic authentication, expiring tokens, lying digests, blobs longer than
//! their descriptors, 503s, redirects to another host, paginated referrers, and a blob that
//! stalls until the import is cancelled. The imports run in a real `Imports` over a real
//! `Registry` in a temporary directory.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_import::{
    Credentials, ImportLimits, ImportRequest, Imports, JobState, JobView, Resolved,
};
use berth_oci::{Digest, Reference};
use berth_registry::{Registry, RegistryConfig};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// How the fake source asks for credentials.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Anonymous,
    Basic,
    /// Tokens from `/token`, each good for `uses` requests.
    Bearer {
        uses: u32,
    },
}

/// What the fake source does wrong.
#[derive(Default)]
struct Faults {
    /// Blob digest → the bytes served instead.
    blob_bytes: HashMap<String, Vec<u8>>,
    /// Serve blobs as a stream of unknown length.
    stream_blobs: bool,
    /// Answer this many blob requests with 503 first.
    blob_503s: AtomicU32,
    /// Redirect blob requests to `localhost` (another host, as far as the client knows).
    redirect_blobs: bool,
    /// The `Docker-Content-Digest` sent with manifests fetched by tag.
    lying_digest_header: Option<String>,
    /// A blob that sends its first bytes, then nothing until `release` is notified (for
    /// ever, if it never is).
    stall_blob: Option<String>,
    release: Arc<tokio::sync::Notify>,
}

struct Fake {
    auth: Auth,
    faults: Faults,
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
    /// Referrers of a digest: pages of descriptors.
    referrers: HashMap<String, Vec<Vec<serde_json::Value>>>,
    base: Mutex<String>,
    tokens_issued: AtomicU32,
    token_uses: AtomicU32,
    /// Whether each request that reached the redirect target carried credentials.
    redirected_with_auth: Mutex<Vec<bool>>,
}

const USER: &str = "puller";
const PASSWORD: &str = "s3cret";

impl Fake {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match self.auth {
            Auth::Anonymous => true,
            Auth::Basic => auth == basic(USER, PASSWORD),
            Auth::Bearer { uses } => {
                let issued = self.tokens_issued.load(Ordering::SeqCst);
                if issued == 0 || auth != format!("Bearer token-{issued}") {
                    return false;
                }
                // Each token is good for `uses` requests, then expires.
                self.token_uses.fetch_add(1, Ordering::SeqCst) < uses
            }
        }
    }

    fn challenge(&self) -> Response {
        let value = match self.auth {
            Auth::Basic => r#"Basic realm="fake""#.to_owned(),
            _ => format!(
                r#"Bearer realm="{}/token",service="fake",scope="repository:app:pull""#,
                self.base.lock().unwrap()
            ),
        };
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, value)],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
            .into_response()
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn serve(State(fake): State<Arc<Fake>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    if path == "/token" {
        let query = request.uri().query().unwrap_or_default();
        assert!(query.contains("scope=repository%3Aapp%3Apull"), "{query}");
        assert!(query.contains("service=fake"), "{query}");
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if auth != Some(basic(USER, PASSWORD).as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            )
                .into_response();
        }
        let n = fake.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
        fake.token_uses.store(0, Ordering::SeqCst);
        return axum::Json(json!({ "token": format!("token-{n}") })).into_response();
    }
    if let Some(digest) = path.strip_prefix("/elsewhere/") {
        fake.redirected_with_auth
            .lock()
            .unwrap()
            .push(headers.contains_key(header::AUTHORIZATION));
        return fake.blobs[digest].clone().into_response();
    }
    if !fake.authorized(&headers) {
        return fake.challenge();
    }
    if let Some(reference) = path.strip_prefix("/v2/app/manifests/") {
        let Some((media_type, bytes)) = fake.manifests.get(reference) else {
            return (
                StatusCode::NOT_FOUND,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
                .into_response();
        };
        let digest = match (&fake.faults.lying_digest_header, reference.contains(':')) {
            (Some(lie), false) => lie.clone(),
            _ => Digest::sha256(bytes).to_string(),
        };
        return (
            [
                (header::CONTENT_TYPE, media_type.clone()),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    digest,
                ),
            ],
            bytes.clone(),
        )
            .into_response();
    }
    if let Some(digest) = path.strip_prefix("/v2/app/blobs/") {
        if fake
            .faults
            .blob_503s
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        if fake.faults.redirect_blobs {
            let port = fake
                .base
                .lock()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_owned();
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [(
                    header::LOCATION,
                    format!("http://localhost:{port}/elsewhere/{digest}"),
                )],
            )
                .into_response();
        }
        let bytes = fake
            .faults
            .blob_bytes
            .get(digest)
            .or(fake.blobs.get(digest))
            .cloned();
        let Some(bytes) = bytes else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if fake.faults.stall_blob.as_deref() == Some(digest) {
            let first = Bytes::copy_from_slice(&bytes[..1024]);
            let rest = Bytes::copy_from_slice(&bytes[1024..]);
            let release = Arc::clone(&fake.faults.release);
            let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(first) })
                .chain(futures_util::stream::once(async move {
                    release.notified().await;
                    Ok::<_, Infallible>(rest)
                }));
            return Body::from_stream(stream).into_response();
        }
        if fake.faults.stream_blobs {
            let chunks: Vec<Result<Bytes, Infallible>> = bytes
                .chunks(8192)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            return Body::from_stream(futures_util::stream::iter(chunks)).into_response();
        }
        return bytes.into_response();
    }
    if let Some(digest) = path.strip_prefix("/v2/app/referrers/") {
        let Some(pages) = fake.referrers.get(digest) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let page: usize = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("page="))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": pages[page]});
        let mut response = ([(header::CONTENT_TYPE, OCI_INDEX)], body.to_string()).into_response();
        if page + 1 < pages.len() {
            response.headers_mut().insert(
                header::LINK,
                format!(
                    "</v2/app/referrers/{digest}?page={}>; rel=\"next\"",
                    page + 1
                )
                .parse()
                .unwrap(),
            );
        }
        return response;
    }
    StatusCode::NOT_FOUND.into_response()
}

use futures_util::StreamExt as _;

/// An image: a config, one layer of `layer_len` bytes, and its manifest.
struct TestImage {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl TestImage {
    fn new(layer_len: usize) -> Self {
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layer: Vec<u8> = (0..layer_len).map(|i| (i * 7 % 251) as u8).collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::sha256(&layer).to_string(), "size": layer.len()}],
        }))
        .unwrap();
        TestImage {
            config,
            layer,
            manifest,
        }
    }

    fn digest(&self) -> Digest {
        Digest::sha256(&self.manifest)
    }

    fn layer_digest(&self) -> String {
        Digest::sha256(&self.layer).to_string()
    }
}

/// A fake source serving `image` as `app:v1`, with `auth` and `faults`; plus referrer
/// pages of the image.
async fn fake_source(
    image: &TestImage,
    auth: Auth,
    faults: Faults,
    referrers: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
) -> (Arc<Fake>, String) {
    let mut manifests = HashMap::new();
    manifests.insert(
        "v1".to_owned(),
        (OCI_MANIFEST.to_owned(), image.manifest.clone()),
    );
    manifests.insert(
        image.digest().to_string(),
        (OCI_MANIFEST.to_owned(), image.manifest.clone()),
    );
    let mut blobs = HashMap::new();
    for blob in [&image.config, &image.layer] {
        blobs.insert(Digest::sha256(blob).to_string(), blob.clone());
    }
    let mut pages = Vec::new();
    for page in referrers {
        let mut descriptors = Vec::new();
        for (manifest, payload) in page {
            let digest = Digest::sha256(&manifest).to_string();
            manifests.insert(digest.clone(), (OCI_MANIFEST.to_owned(), manifest.clone()));
            blobs.insert(Digest::sha256(&payload).to_string(), payload);
            blobs.insert(Digest::sha256(b"{}").to_string(), b"{}".to_vec());
            descriptors.push(json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(), "artifactType": "application/vnd.example.sig"}));
        }
        pages.push(descriptors);
    }
    let mut referrers = HashMap::new();
    if !pages.is_empty() {
        referrers.insert(image.digest().to_string(), pages);
    }
    let fake = Arc::new(Fake {
        auth,
        faults,
        manifests,
        blobs,
        referrers,
        base: Mutex::default(),
        tokens_issued: AtomicU32::new(0),
        token_uses: AtomicU32::new(0),
        redirected_with_auth: Mutex::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    *fake.base.lock().unwrap() = format!("http://{host}");
    let router = Router::new().fallback(serve).with_state(Arc::clone(&fake));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (fake, host)
}

/// A signature of `subject` (an artifact with `payload` as its layer).
fn signature(subject: &TestImage, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256(b"{}").to_string(), "size": 2},
        "layers": [{"mediaType": "text/plain", "digest": Digest::sha256(payload).to_string(), "size": payload.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest().to_string(), "size": subject.manifest.len()},
    }))
    .unwrap();
    (manifest, payload.to_vec())
}

struct Target {
    registry: Arc<Registry>,
    imports: Imports,
    dir: tempfile::TempDir,
}

async fn new_target() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(
        Registry::open_local(dir.path(), RegistryConfig::default())
            .await
            .unwrap(),
    );
    let imports = Imports::new(Arc::clone(&registry), ImportLimits::default());
    Target {
        registry,
        imports,
        dir,
    }
}

impl Target {
    fn start(&self, source: &str, credentials: Option<(&str, &str)>, referrers: bool) -> String {
        let request = ImportRequest {
            source: source.to_owned(),
            images: Vec::new(),
            credentials: credentials.map(|(u, p)| Credentials {
                username: u.to_owned(),
                password: p.to_owned(),
            }),
            include_referrers: referrers,
            force: false,
            insecure: false,
            ca_certificates: None,
        };
        self.imports.start(request).unwrap().id
    }

    async fn finished(&self, id: &str) -> JobView {
        for _ in 0..600 {
            let job = self.imports.get(id).unwrap();
            if job.state.is_finished() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("import {id} did not finish: {:?}", self.imports.get(id));
    }

    async fn import(&self, source: &str, credentials: Option<(&str, &str)>) -> JobView {
        let id = self.start(source, credentials, false);
        self.finished(&id).await
    }

    /// Whether `app:v1` is here, as `digest`.
    async fn holds(&self, digest: &Digest) -> bool {
        let repository = self.registry.repository_name("app").unwrap();
        let tag = Reference::parse("v1").unwrap();
        self.registry
            .manifest(&repository, &tag)
            .await
            .is_ok_and(|m| m.digest == *digest)
    }

    /// Upload sessions left on disk.
    fn uploads_left(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("uploads"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// No manifest, no tag, no upload session: blobs an import linked before it failed
    /// stay (as a failed push's do) until garbage collection, and name no image.
    async fn nothing_stored(&self) -> bool {
        let repository = self.registry.repository_name("app").unwrap();
        let tags = self
            .registry
            .tags(&repository, None, 100)
            .await
            .unwrap_or_default();
        tags.is_empty() && self.uploads_left() == 0
    }
}

#[track_caller]
fn failed(job: &JobView, code: &str, needle: &str) {
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let error = job.error.as_ref().unwrap();
    assert_eq!(error.code, code, "{error:?}");
    assert!(
        error.message.contains(needle),
        "expected `{needle}` in {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_flow_with_tokens_that_expire() {
    let image = TestImage::new(200_000);
    // Each token is good for 2 requests: the import renews it as it goes.
    let (fake, host) =
        fake_source(&image, Auth::Bearer { uses: 2 }, Faults::default(), vec![]).await;
    let target = new_target().await;
    let job = target
        .import(&format!("{host}/app:v1"), Some((USER, PASSWORD)))
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(
        job.resolved,
        Some(Resolved {
            digest: image.digest(),
            media_type: OCI_MANIFEST.to_owned()
        })
    );
    assert!(target.holds(&image.digest()).await);
    assert!(
        fake.tokens_issued.load(Ordering::SeqCst) >= 2,
        "tokens were renewed"
    );
    assert_eq!(
        job.progress.bytes_done,
        (image.layer.len() + image.config.len()) as u64
    );

    // Wrong credentials, and none: refused, named, and nothing stored.
    let target = new_target().await;
    let job = target
        .import(&format!("{host}/app:v1"), Some((USER, "wrong")))
        .await;
    failed(&job, "SOURCE_UNAUTHORIZED", &format!("`{USER}`"));
    assert_eq!(job.error.unwrap().detail.unwrap()["source"], host.as_str());
    let job = target.import(&format!("{host}/app:v1"), None).await;
    failed(&job, "SOURCE_UNAUTHORIZED", "refused anonymous access");
    assert!(target.nothing_stored().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_authentication() {
    let image = TestImage::new(10_000);
    let (_, host) = fake_source(&image, Auth::Basic, Faults::default(), vec![]).await;
    let target = new_target().await;
    let job = target
        .import(&format!("{host}/app:v1"), Some((USER, PASSWORD)))
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let job = target
        .import(&format!("{host}/app:v1"), Some((USER, "wrong")))
        .await;
    failed(&job, "SOURCE_UNAUTHORIZED", "refused the credentials");
    let job = target.import(&format!("{host}/app:v1"), None).await;
    failed(&job, "SOURCE_UNAUTHORIZED", "requires credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_hash_to_its_digest_is_refused() {
    let image = TestImage::new(50_000);
    let mut faults = Faults::default();
    let mut forged = image.layer.clone();
    forged[100] ^= 1;
    faults.blob_bytes.insert(image.layer_digest(), forged);
    let (_, host) = fake_source(&image, Auth::Anonymous, faults, vec![]).await;
    let target = new_target().await;
    let job = target.import(&format!("{host}/app:v1"), None).await;
    failed(&job, "DIGEST_INVALID", &image.layer_digest());
    assert!(target.nothing_stored().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_longer_than_its_descriptor_is_refused_as_it_arrives() {
    let image = TestImage::new(50_000);
    for stream in [false, true] {
        let mut faults = Faults::default();
        let mut longer = image.layer.clone();
        longer.extend_from_slice(&[0; 20_000]);
        faults.blob_bytes.insert(image.layer_digest(), longer);
        faults.stream_blobs = stream;
        let (_, host) = fake_source(&image, Auth::Anonymous, faults, vec![]).await;
        let target = new_target().await;
        let job = target.import(&format!("{host}/app:v1"), None).await;
        failed(&job, "SIZE_INVALID", "longer than");
        assert!(target.nothing_stored().await, "streamed: {stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_header_that_lies_is_refused() {
    let image = TestImage::new(1_000);
    let faults = Faults {
        lying_digest_header: Some(Digest::sha256(b"something else").to_string()),
        ..Faults::default()
    };
    let (_, host) = fake_source(&image, Auth::Anonymous, faults, vec![]).await;
    let target = new_target().await;
    let job = target.import(&format!("{host}/app:v1"), None).await;
    failed(&job, "DIGEST_INVALID", "manifest");
    assert!(target.nothing_stored().await);
    // By digest, the header does not matter: the digest asked for is checked.
    let job = target
        .import(&format!("{host}/app@{}", image.digest()), None)
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let image = TestImage::new(1_000);
    let faults = Faults {
        blob_503s: AtomicU32::new(2),
        ..Faults::default()
    };
    let (fake, host) = fake_source(&image, Auth::Anonymous, faults, vec![]).await;
    let target = new_target().await;
    let job = target.import(&format!("{host}/app:v1"), None).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(fake.faults.blob_503s.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_another_host_carry_no_credentials() {
    let image = TestImage::new(1_000);
    let faults = Faults {
        redirect_blobs: true,
        ..Faults::default()
    };
    let (fake, host) = fake_source(&image, Auth::Basic, faults, vec![]).await;
    let target = new_target().await;
    let job = target
        .import(&format!("{host}/app:v1"), Some((USER, PASSWORD)))
        .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let seen = fake.redirected_with_auth.lock().unwrap().clone();
    assert_eq!(
        seen,
        [false, false],
        "both blobs, fetched without credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_are_followed_page_by_page() {
    let image = TestImage::new(1_000);
    let pages = vec![
        vec![signature(&image, b"first signature")],
        vec![signature(&image, b"second signature")],
    ];
    let (_, host) = fake_source(&image, Auth::Anonymous, Faults::default(), pages).await;
    let target = new_target().await;
    let id = target.start(&format!("{host}/app:v1"), None, true);
    let job = target.finished(&id).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.progress.referrers, 2);
    assert_eq!(job.progress.manifests, 3);
    let repository = target.registry.repository_name("app").unwrap();
    let referrers = target
        .registry
        .referrers(&repository, &image.digest(), None)
        .await
        .unwrap();
    assert_eq!(referrers.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_import_leaves_no_upload_behind() {
    let image = TestImage::new(100_000);
    let faults = Faults {
        stall_blob: Some(image.layer_digest()),
        ..Faults::default()
    };
    let (_, host) = fake_source(&image, Auth::Anonymous, faults, vec![]).await;
    let target = new_target().await;
    let id = target.start(&format!("{host}/app:v1"), None, false);
    for _ in 0..200 {
        if target.imports.get(&id).unwrap().progress.bytes_done >= 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(target.imports.get(&id).unwrap().state, JobState::Running);
    assert!(
        target.uploads_left() > 0,
        "the stalled blob has an upload session"
    );
    let job = target.imports.cancel(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled, "{job:?}");
    assert_eq!(target.uploads_left(), 0);
    let repository = target.registry.repository_name("app").unwrap();
    assert!(
        target
            .registry
            .manifest(&repository, &Reference::parse("v1").unwrap())
            .await
            .is_err(),
        "no tag"
    );

    // A registry shutting down cancels what is under way the same way.
    let id = target.start(&format!("{host}/app:v1"), None, false);
    for _ in 0..200 {
        if target.uploads_left() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    target.imports.shutdown(Duration::from_secs(5)).await;
    assert_eq!(target.imports.get(&id).unwrap().state, JobState::Cancelled);
    assert_eq!(target.uploads_left(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_collected_during_a_long_import_is_fetched_again() {
    let image = TestImage::new(100_000);
    let faults = Faults {
        stall_blob: Some(image.layer_digest()),
        ..Faults::default()
    };
    let release = Arc::clone(&faults.release);
    let (_, host) = fake_source(&image, Auth::Anonymous, faults, vec![]).await;
    let target = new_target().await;
    let id = target.start(&format!("{host}/app:v1"), None, false);
    // The config is in (linked, referenced by no manifest yet); the layer is under way.
    for _ in 0..200 {
        let job = target.imports.get(&id).unwrap();
        if job.progress.blobs_done == 1 && job.progress.bytes_done >= 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(target.imports.get(&id).unwrap().progress.blobs_done, 1);
    // A collection with no grace takes the config meanwhile.
    let handle = target.registry.gc().start(false).await.unwrap();
    let options = berth_registry::gc::GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
        retention: Vec::new(),
    };
    let run = target.registry.gc().collect(&handle, &options).await;
    assert_eq!(run.blobs_removed, 1, "{run:?}");
    release.notify_one();
    let job = target.finished(&id).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert!(target.holds(&image.digest()).await);
    let repository = target.registry.repository_name("app").unwrap();
    let config = Digest::sha256(&image.config);
    assert!(target.registry.blob(&repository, &config).await.is_ok());
}
