//! The in-process test harness: a router on a fresh data directory, called with
//! `oneshot`, no socket.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use berth_auth::{Identity, IdentityConfig, SigningKey, SqliteIdentityStore};
use berth_registry::{Registry, RegistryConfig};
use berth_server::AppState;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub struct App {
    pub router: Router,
    pub registry: Arc<Registry>,
    /// The app's read-only switch (`AppState::read_only`): `Some(reason)` makes it refuse
    /// writes with `reason`, as a connected registry in ReadOnly mode does.
    pub read_only: Arc<RwLock<Option<String>>>,
    pub dir: tempfile::TempDir,
}

pub const ADMIN_PASSWORD: &str = "in-process-admin";

pub async fn app_with(config: RegistryConfig) -> App {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open_local(dir.path(), config).await.unwrap());
    app_on(registry, dir).await
}

/// An app serving `registry`, with its identities in `dir`.
pub async fn app_on(registry: Arc<Registry>, dir: tempfile::TempDir) -> App {
    let identity = open_identity(dir.path()).await;
    let state = AppState::new(Arc::clone(&registry), Arc::new(identity));
    App {
        read_only: Arc::clone(&state.read_only),
        router: berth_server::router(state),
        registry,
        dir,
    }
}

/// The identities of a registry whose data directory is `dir` (`identity.db`), a fresh
/// signing key, and [`ADMIN_PASSWORD`] as the admin's password.
pub async fn open_identity(dir: &Path) -> Identity {
    let store = SqliteIdentityStore::open(&dir.join("identity.db"))
        .await
        .unwrap();
    let identity_config = IdentityConfig {
        admin_password: Some(ADMIN_PASSWORD.into()),
        ..IdentityConfig::default()
    };
    let (identity, _) = Identity::open(Arc::new(store), SigningKey::generate(), identity_config)
        .await
        .unwrap();
    identity
}

/// `Authorization: Basic …` for `user` and `password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// `Authorization: Basic …` for the admin.
pub fn admin_basic() -> String {
    basic("admin", ADMIN_PASSWORD)
}

pub async fn app() -> App {
    app_with(RegistryConfig::default()).await
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    /// The status, headers and whole body of `response`.
    pub async fn of(response: Response<Body>) -> Reply {
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    /// The message of the first error of an error body (empty if it has none).
    pub fn message(&self) -> String {
        self.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// A header's value; panics when it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

impl App {
    /// `method uri` on host `registry.test` with `headers` and `body`.
    /// Makes the app read-only for `reason` (as a connected registry in ReadOnly mode is).
    pub fn set_read_only(&self, reason: &str) {
        *self.read_only.write().unwrap() = Some(reason.to_owned());
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        // As the admin, unless `headers` carry their own `authorization`.
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "registry.test");
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            request = request.header("authorization", admin_basic());
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    /// `GET uri` as the admin.
    pub async fn get(&self, uri: &str) -> Reply {
        self.call("GET", uri, &[], Body::empty()).await
    }

    /// `PUT /v2/<repo>/manifests/<reference>` of `manifest` as an OCI image manifest, as
    /// the admin.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: impl Into<Body>,
    ) -> Reply {
        self.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", OCI_MANIFEST)],
            manifest,
        )
        .await
    }

    /// Sends `request` as it is (no host or credentials added) to the router.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        Reply::of(self.router.clone().oneshot(request).await.unwrap()).await
    }

    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self
            .call(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        digest
    }
}

pub fn sha256(data: &[u8]) -> String {
    berth_oci::Digest::sha256(data).to_string()
}

pub fn image_manifest(config: &str, config_len: usize, layers: &[(&str, usize)]) -> String {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, n)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}))
        .collect();
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": layers,
    })
    .to_string()
}
