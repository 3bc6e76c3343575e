//! The dedicated data endpoint: blob downloads offloaded to their own listener (and host
//! name), so firewalls can scope bulk traffic apart from the login server.
//!
//! A blob `GET` on the login server (or a private endpoint), once authorized, answers `307`
//! with a URL on the data endpoint signed with a key only Berth holds:
//!
//! ```text
//! {base}/berth/data/v1/{repository}/blobs/{digest}?expires={unix seconds}&signature={tag}
//! ```
//!
//! The tag is HMAC-SHA256 over the purpose, repository, digest and expiry, so a URL cannot be
//! reused for another blob, another repository or a later time. The data endpoint serves
//! only such URLs (`GET` and `HEAD`, with `Range`), without credentials. A URL handed out
//! stays good until it expires, even if the data endpoint is switched off meanwhile: a
//! client may be part way through a download.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use berth_oci::time::unix_now;
use std::sync::Arc;

use berth_auth::KeyRing;
use berth_oci::{Digest, ErrorCode, RepositoryName};
use berth_registry::Registry;
use http::{Method, StatusCode, header};

use crate::error::ApiError;
use crate::handlers::{QueryParams, blobs};
use crate::route::Route;
use crate::state::AppState;

/// The path prefix of signed URLs.
pub const PREFIX: &str = "/berth/data/v1/";

/// Shortest and longest validity of a signed URL.
pub const TTL_RANGE: (Duration, Duration) =
    (Duration::from_secs(20 * 60), Duration::from_secs(30 * 60));

/// Where the keys that sign data URLs come from (the identity store, which rotates them).
pub type DataUrlKeys = Arc<dyn Fn() -> Option<KeyRing> + Send + Sync>;

/// The data endpoint's address and the keys its URLs are signed with.
pub struct DataEndpoint {
    /// Base URL clients reach the data endpoint at (`https://data.registry.example.com`).
    pub url: String,
    /// How long a signed URL is valid, within [`TTL_RANGE`].
    pub ttl: Duration,
    keys: DataUrlKeys,
}

impl std::fmt::Debug for DataEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataEndpoint")
            .field("url", &self.url)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn message(repository: &str, digest: &str, expires: i64) -> Vec<u8> {
    format!("berth-data-v1\n{repository}\n{digest}\n{expires}").into_bytes()
}

impl DataEndpoint {
    /// A data endpoint at `url` whose URLs live `ttl` and are signed with the current key
    /// of `keys` (and verified with any of them: a URL signed before a rotation stays valid
    /// until it expires).
    pub fn new(url: &str, ttl: Duration, keys: DataUrlKeys) -> Self {
        DataEndpoint {
            url: url.trim_end_matches('/').to_owned(),
            ttl,
            keys,
        }
    }

    /// The endpoint's `host[:port]`, as a connection string names it.
    pub fn host(&self) -> &str {
        self.url.split("://").nth(1).unwrap_or(&self.url)
    }

    /// A signed URL for one blob of one repository, valid from `now` for the TTL.
    pub fn sign(&self, repository: &RepositoryName, digest: &Digest, now: i64) -> String {
        let expires = now + self.ttl.as_secs() as i64;
        let (repository, digest) = (repository.as_str(), digest.to_string());
        let keys = (self.keys)().expect("a data URL key exists from the first start");
        let tag = B64.encode(keys.current.tag(&message(repository, &digest, expires)));
        format!(
            "{}{PREFIX}{repository}/blobs/{digest}?expires={expires}&signature={tag}",
            self.url
        )
    }

    /// Checks a signed URL's parts at `now`.
    pub fn verify(
        &self,
        repository: &str,
        digest: &str,
        expires: Option<&str>,
        signature: Option<&str>,
        now: i64,
    ) -> Result<(), ApiError> {
        let refuse = |why: &str| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Denied,
                format!("{why}; ask the registry for the blob again to get a fresh URL"),
            )
        };
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(refuse(
                "the data endpoint serves only signed URLs, and this one has no signature",
            ));
        };
        let expires: i64 = expires
            .parse()
            .map_err(|_| refuse("the URL's expiry is malformed"))?;
        let tag = B64
            .decode(signature)
            .map_err(|_| refuse("the URL's signature is malformed"))?;
        let message = message(repository, digest, expires);
        if !(self.keys)().is_some_and(|keys| keys.verify_tag(&message, &tag)) {
            return Err(refuse(
                "the URL's signature does not match: it was altered, or signed by another registry",
            ));
        }
        if expires < now {
            return Err(refuse("the URL expired"));
        }
        Ok(())
    }
}

/// The data endpoint's router: signed blob URLs and nothing else.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/berth/data/v1/{*rest}", any(serve_signed))
        .fallback(|request: Request| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::Unsupported,
                format!(
                    "`{}` is not served here: this is the registry's data endpoint, which serves only signed blob URLs",
                    request.uri().path()
                ),
            )
            .into_response()
        })
        .with_state(state)
}

async fn serve_signed(State(state): State<AppState>, request: Request) -> Response {
    serve(&state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn serve(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let head = match parts.method {
        Method::GET => false,
        Method::HEAD => true,
        ref other => return Err(ApiError::method_not_allowed(other)),
    };
    let Some(data) = &state.network.data else {
        return Err(ApiError::not_found(parts.uri.path()));
    };
    let rest = parts.uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let Some(Route::Blob { name, digest }) = Route::parse(rest) else {
        return Err(ApiError::not_found(parts.uri.path()));
    };
    let params = QueryParams::parse(parts.uri.query());
    data.verify(
        name,
        digest,
        params.get("expires"),
        params.get("signature"),
        unix_now(),
    )?;
    let name = state.registry.repository_name(name)?;
    let digest = Registry::digest(digest)?;
    let mut response = blobs::get(state, &name, &digest, &parts.headers, head).await?;
    // The URL stays valid for minutes; caches may keep the bytes as long as they like, as
    // they are addressed by digest.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("private, max-age=1200, immutable"),
    );
    Ok(response)
}

/// How long a URL signed by the blob store lives when no data endpoint listener sets it.
const STORE_URL_TTL: Duration = Duration::from_secs(25 * 60);

/// `307` for a blob the caller may read, when the data endpoint is on: to a URL the blob
/// store signs itself (object storage: bytes flow from the store, not through the nodes),
/// else to the data endpoint's listener when one is configured. The blob must be in the
/// repository: a missing one is a 404 here, not after the redirect.
pub async fn redirect(
    state: &AppState,
    name: &RepositoryName,
    digest: &Digest,
) -> Result<Option<Response>, ApiError> {
    if !state
        .identity
        .management()
        .network()
        .settings
        .data_endpoint_enabled
    {
        return Ok(None);
    }
    let data = state.network.data.as_ref();
    // Switched on, but nowhere to send the client: the blob is served here.
    if data.is_none() && !state.registry.signs_blob_urls() {
        return Ok(None);
    }
    let ttl = data.map_or(STORE_URL_TTL, |d| d.ttl);
    state.registry.blob(name, digest).await?;
    let location = match state.registry.signed_blob_url(digest, ttl).await? {
        Some(url) => url,
        None => match data {
            Some(data) => data.sign(name, digest, unix_now()),
            None => return Ok(None),
        },
    };
    Ok(Some(
        Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, location)
            .header("Docker-Content-Digest", digest.to_string())
            .header(header::CONTENT_LENGTH, 0)
            .body(axum::body::Body::empty())
            .expect("valid response parts"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> DataEndpoint {
        let ring = KeyRing {
            current: berth_auth::SigningKey::generate(),
            previous: Vec::new(),
        };
        DataEndpoint::new(
            "http://127.0.0.3:5000/",
            Duration::from_secs(25 * 60),
            Arc::new(move || Some(ring.clone())),
        )
    }

    fn parts(url: &str) -> (String, String, String, String) {
        let rest = url.split(PREFIX).nth(1).unwrap();
        let (path, query) = rest.split_once('?').unwrap();
        let (name, digest) = path.split_once("/blobs/").unwrap();
        let params = QueryParams::parse(Some(query));
        (
            name.to_owned(),
            digest.to_owned(),
            params.get("expires").unwrap().to_owned(),
            params.get("signature").unwrap().to_owned(),
        )
    }

    #[test]
    fn signed_urls_verify_until_they_expire_and_only_for_their_blob() {
        let data = endpoint();
        let name = RepositoryName::parse("factory/app", 255).unwrap();
        let digest = Digest::sha256(b"layer");
        let url = data.sign(&name, &digest, 1_000);
        assert!(url.starts_with("http://127.0.0.3:5000/berth/data/v1/factory/app/blobs/sha256:"));
        let (n, d, e, s) = parts(&url);
        assert_eq!(e, (1_000 + 25 * 60).to_string());
        assert!(data.verify(&n, &d, Some(&e), Some(&s), 1_000).is_ok());
        assert!(
            data.verify(&n, &d, Some(&e), Some(&s), 1_000 + 25 * 60)
                .is_ok()
        );
        let refused = |r: Result<(), ApiError>| {
            let e = r.unwrap_err();
            assert_eq!(e.status(), StatusCode::FORBIDDEN);
            format!("{e:?}")
        };
        assert!(
            refused(data.verify(&n, &d, Some(&e), Some(&s), 1_000 + 25 * 60 + 1))
                .contains("expired")
        );
        let later = (1_000 + 3600).to_string();
        assert!(
            refused(data.verify(&n, &d, Some(&later), Some(&s), 1_000)).contains("does not match")
        );
        assert!(
            refused(data.verify("factory/other", &d, Some(&e), Some(&s), 1_000))
                .contains("does not match")
        );
        let other = Digest::sha256(b"other").to_string();
        assert!(
            refused(data.verify(&n, &other, Some(&e), Some(&s), 1_000)).contains("does not match")
        );
        assert!(refused(data.verify(&n, &d, Some(&e), None, 1_000)).contains("no signature"));
        assert!(refused(data.verify(&n, &d, Some(&e), Some("!!"), 1_000)).contains("malformed"));
        // Another registry's key.
        assert!(
            refused(endpoint().verify(&n, &d, Some(&e), Some(&s), 1_000))
                .contains("does not match")
        );
    }

    #[test]
    fn a_url_signed_before_a_rotation_stays_valid_until_it_expires() {
        let (old, new) = (
            berth_auth::SigningKey::generate(),
            berth_auth::SigningKey::generate(),
        );
        let with = |current: &berth_auth::SigningKey, previous: Vec<berth_auth::SigningKey>| {
            let ring = KeyRing {
                current: current.clone(),
                previous,
            };
            DataEndpoint::new(
                "http://127.0.0.3:5000",
                Duration::from_secs(25 * 60),
                Arc::new(move || Some(ring.clone())),
            )
        };
        let n = RepositoryName::parse("factory/app", 255).unwrap();
        let d = Digest::sha256(b"layer");
        let url = with(&old, Vec::new()).sign(&n, &d, 1_000);
        let (repository, digest, expires, signature) = parts(&url);
        let check = |endpoint: &DataEndpoint| {
            endpoint.verify(
                &repository,
                &digest,
                Some(&expires),
                Some(&signature),
                1_000,
            )
        };
        assert!(
            check(&with(&new, vec![old.clone()])).is_ok(),
            "old key retired, within grace"
        );
        assert!(check(&with(&new, Vec::new())).is_err(), "old key gone");
    }
}
