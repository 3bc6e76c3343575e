//! A client of any OCI distribution registry, for reading one repository: manifests (with
//! the `Accept` of every OCI and Docker schema 2 type), blobs (streamed, from an offset),
//! and referrers (the referrers API, else the spec's fallback tag).
//!
//! Authentication as docker does it: requests go out anonymous; a `401` carrying
//! `WWW-Authenticate: Bearer realm=…,service=…` sends the client to the realm for a token
//! (with the credentials, when given, as Basic) and the request is sent again with it; a
//! `Basic` challenge gets the credentials themselves. A token that expires during a long
//! import is renewed the same way, once per request. Redirects (blob downloads from a CDN or
//! object store) are followed, at most 5; reqwest drops the `Authorization` header when a
//! redirect leaves the source's host.
//!
//! Failures are retried where a retry can help: a `5xx` or `429` (waiting what
//! `Retry-After` says, at most 30 s) and, once the source has answered at least once, a
//! connection that failed or was cut; at most [`RETRIES`] times per request, 1, 2, then 4 s
//! apart. A source that never answered is reported unreachable at once: the address is most
//! likely wrong, and the admin should hear it now.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_oci::manifest::{Descriptor, Manifest, media_type};
use berth_oci::{Digest, Reference};
use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, RANGE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use serde::Deserialize;

use crate::challenge::{self, Challenge};
use crate::error::ImportError;
use crate::source::{SourceReference, is_loopback};

/// Every manifest type Berth stores, for `Accept`.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// How many times a failed request is tried again.
pub const RETRIES: u32 = 3;
/// How long a request for a manifest, a token or a list of referrers may take, whole.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long any read from the source may wait (a blob transfer as a whole has no limit).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured; longer ones are waited this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Pages of referrers followed through `Link` at most.
const MAX_REFERRER_PAGES: usize = 100;

/// Credentials for the source registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (or an access token the registry takes as a password).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"…")
            .finish()
    }
}

/// What requests carry, as learnt from the source's challenges.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Authorization {
    /// Nothing (yet).
    Anonymous,
    /// The credentials, as Basic.
    Basic,
    /// A token from the source's token service.
    Bearer(String),
}

/// A manifest as fetched: its bytes, the `Content-Type` it came with, and its digest,
/// checked.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The source's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The exact bytes.
    pub bytes: Bytes,
}

/// A client of one repository of a source registry.
pub struct SourceClient {
    http: reqwest::Client,
    source: SourceReference,
    credentials: Option<Credentials>,
    insecure: bool,
    authorization: tokio::sync::Mutex<Authorization>,
    /// Whether the source has answered anything yet.
    answered: AtomicBool,
}

impl SourceClient {
    /// A client for `source`, with `credentials` when given, trusting the system's store and
    /// the PEM certificates of `ca_certificates`. `insecure` lets credentials go to a token
    /// service over plain HTTP (the source itself was checked when it was parsed).
    pub fn new(
        source: SourceReference,
        credentials: Option<Credentials>,
        insecure: bool,
        ca_certificates: Option<&str>,
    ) -> Result<Self, ImportError> {
        berth_tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION"), " (import)"))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(pem) = ca_certificates {
            let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    ImportError::Invalid("`ca_certificates` holds no PEM certificate".to_owned())
                })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ImportError::Invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(SourceClient {
            http,
            source,
            credentials,
            insecure,
            authorization: tokio::sync::Mutex::new(Authorization::Anonymous),
            answered: AtomicBool::new(false),
        })
    }

    /// The source this client reads.
    pub fn source(&self) -> &SourceReference {
        &self.source
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.source.base.clone();
        url.set_path(&format!("/v2/{}/{path}", self.source.repository));
        url
    }

    /// The manifest `reference`, at most `max` bytes, its digest checked: against the
    /// digest asked for, else against the source's `Docker-Content-Digest` when it sends one.
    pub async fn manifest(
        &self,
        reference: &Reference,
        max: usize,
    ) -> Result<FetchedManifest, ImportError> {
        let url = self.url(&format!("manifests/{reference}"));
        let response = self.get(&url, ACCEPT_MANIFESTS, 0, true).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ImportError::ManifestUnknown {
                source_image: self.source.image(),
                reference: reference.to_string(),
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let claimed = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = self.read_limited(response, max, reference).await?;
        let expected = match reference {
            Reference::Digest(digest) => Some(digest.clone()),
            Reference::Tag(_) => claimed,
        };
        let digest = match expected {
            Some(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if actual != expected {
                    return Err(ImportError::DigestMismatch {
                        source_image: self.source.image(),
                        what: "manifest",
                        expected,
                        actual,
                    });
                }
                actual
            }
            None => Digest::sha256(&bytes),
        };
        Ok(FetchedManifest {
            digest,
            content_type,
            bytes,
        })
    }

    /// Reads a manifest's body, refusing one over `max` bytes before and while reading it.
    async fn read_limited(
        &self,
        mut response: Response,
        max: usize,
        reference: &Reference,
    ) -> Result<Bytes, ImportError> {
        let too_large = |size: String| {
            ImportError::SizeInvalid(format!(
                "manifest `{reference}` of `{}` is {size} bytes; this registry takes manifests of at most {max} bytes (max_manifest_size)",
                self.source.image()
            ))
        };
        if let Some(length) = content_length(&response)
            && length > max as u64
        {
            return Err(too_large(length.to_string()));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.cut(&e))? {
            if body.len() + chunk.len() > max {
                return Err(too_large(format!("more than {max}")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// `GET` of blob `digest` from byte `offset` on: a `200` (the whole blob) or a `206`
    /// (from `offset`, when the source honours `Range`).
    pub async fn blob(&self, digest: &Digest, offset: u64) -> Result<Response, ImportError> {
        let url = self.url(&format!("blobs/{digest}"));
        let response = self.get(&url, "*/*", offset, false).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ImportError::BlobUnknown {
                source_image: self.source.image(),
                digest: digest.clone(),
            });
        }
        Ok(response)
    }

    /// The manifests whose `subject` is `digest`: from the referrers API (every page), or,
    /// when the source does not serve it, from the index the spec's fallback tag
    /// (`sha256-<hex>`) names, if there is one.
    pub async fn referrers(
        &self,
        digest: &Digest,
        max: usize,
    ) -> Result<Vec<Descriptor>, ImportError> {
        let mut url = self.url(&format!("referrers/{digest}"));
        let mut found = Vec::new();
        for _ in 0..MAX_REFERRER_PAGES {
            let response = self.get(&url, media_type::OCI_INDEX, 0, true).await?;
            if response.status() == StatusCode::NOT_FOUND {
                if found.is_empty() {
                    return self.fallback_referrers(digest, max).await;
                }
                break;
            }
            let next = next_link(&response, &url);
            let reference = Reference::Digest(digest.clone());
            let bytes = self.read_limited(response, max, &reference).await?;
            found.extend(self.index_entries(&bytes, "the referrers of")?);
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(found)
    }

    async fn fallback_referrers(
        &self,
        digest: &Digest,
        max: usize,
    ) -> Result<Vec<Descriptor>, ImportError> {
        let tag = format!("{}-{}", digest.algorithm().as_str(), digest.hex());
        let tag = berth_oci::Tag::parse(&tag).map_err(|e| ImportError::SourceInvalid {
            source_registry: self.source.registry.clone(),
            why: e.to_string(),
        })?;
        match self.manifest(&Reference::Tag(tag), max).await {
            Ok(index) => self.index_entries(&index.bytes, "the referrers tag of"),
            Err(ImportError::ManifestUnknown { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The manifests an index lists (what the referrers API answers is one).
    fn index_entries(&self, bytes: &[u8], what: &str) -> Result<Vec<Descriptor>, ImportError> {
        let index = Manifest::parse(bytes, None).map_err(|e| ImportError::SourceInvalid {
            source_registry: self.source.registry.clone(),
            why: format!("{what} a manifest is not an image index: {e}"),
        })?;
        if index.kind != berth_oci::manifest::ManifestKind::Index {
            return Err(ImportError::SourceInvalid {
                source_registry: self.source.registry.clone(),
                why: format!("{what} a manifest is not an image index"),
            });
        }
        Ok(index.children)
    }

    /// Sends `GET url` with what the source asked for, renewing the authorization once on a
    /// `401` and retrying what a retry can fix. Answers `2xx` and `404` are the caller's.
    async fn get(
        &self,
        url: &Url,
        accept: &str,
        offset: u64,
        whole_timeout: bool,
    ) -> Result<Response, ImportError> {
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            let used = self.authorization.lock().await.clone();
            let mut request = self.http.get(url.clone()).header(ACCEPT, accept);
            if offset > 0 {
                request = request.header(RANGE, format!("bytes={offset}-"));
            }
            if whole_timeout {
                request = request.timeout(REQUEST_TIMEOUT);
            }
            request = match (&used, &self.credentials) {
                (Authorization::Basic, Some(c)) => {
                    request.basic_auth(&c.username, Some(&c.password))
                }
                (Authorization::Bearer(token), _) => request.bearer_auth(token),
                _ => request,
            };
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) if self.answered.load(Ordering::Relaxed) && attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!(url = %url, attempt, error = %e, "retrying a request to the import source");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(self.unreachable(&e)),
            };
            self.answered.store(true, Ordering::Relaxed);
            let status = response.status();
            if status.is_success() || status == StatusCode::NOT_FOUND {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                self.authenticate(&response, &used).await?;
                continue;
            }
            let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            if retryable && attempt < RETRIES {
                attempt += 1;
                let wait = retry_after(&response).unwrap_or_else(|| backoff(attempt));
                tracing::debug!(url = %url, %status, attempt, "retrying a request to the import source");
                tokio::time::sleep(wait).await;
                continue;
            }
            let message = error_message(response).await;
            let source_registry = self.source.registry.clone();
            return Err(match status {
                StatusCode::UNAUTHORIZED => ImportError::Unauthorized {
                    source_registry,
                    why: self.refusal(&message),
                },
                StatusCode::FORBIDDEN => ImportError::Denied {
                    source_registry,
                    why: format!("{} to `{}`: {message}", status, self.source.repository),
                },
                StatusCode::TOO_MANY_REQUESTS => ImportError::TooManyRequests {
                    source_registry,
                    why: message,
                },
                s if s.is_server_error() => ImportError::Unreachable {
                    source_registry,
                    why: format!("it keeps failing ({s}): {message}"),
                },
                s => ImportError::SourceInvalid {
                    source_registry,
                    why: format!("{s} to GET {}: {message}", url.path()),
                },
            });
        }
    }

    /// Learns from a `401` what requests must carry from now on.
    async fn authenticate(
        &self,
        response: &Response,
        used: &Authorization,
    ) -> Result<(), ImportError> {
        let challenges: Vec<Challenge> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(challenge::parse)
            .collect();
        let mut authorization = self.authorization.lock().await;
        if *authorization != *used {
            // Another request renewed it meanwhile: use theirs.
            return Ok(());
        }
        let unauthorized = |why: String| ImportError::Unauthorized {
            source_registry: self.source.registry.clone(),
            why,
        };
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            *authorization = Authorization::Bearer(self.token(bearer).await?);
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match (&self.credentials, used) {
                (Some(_), Authorization::Anonymous) => {
                    *authorization = Authorization::Basic;
                    Ok(())
                }
                _ => Err(unauthorized(self.refusal("Basic authentication failed"))),
            };
        }
        Err(unauthorized(
            "it answered 401 without a Bearer or Basic challenge".to_owned(),
        ))
    }

    /// A token from the realm of a Bearer challenge, for pulling the source repository.
    async fn token(&self, challenge: &Challenge) -> Result<String, ImportError> {
        let invalid = |why: String| ImportError::SourceInvalid {
            source_registry: self.source.registry.clone(),
            why,
        };
        let realm = challenge
            .param("realm")
            .ok_or_else(|| invalid("a Bearer challenge without a realm".to_owned()))?;
        let mut url = Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| invalid(format!("the token realm `{realm}` is not an HTTP URL")))?;
        let realm_host = url.host_str().unwrap_or_default().to_owned();
        if url.scheme() == "http"
            && self.credentials.is_some()
            && !self.insecure
            && !is_loopback(&realm_host)
        {
            return Err(ImportError::Unauthorized {
                source_registry: self.source.registry.clone(),
                why: format!(
                    "its token service `{realm}` is plain HTTP; refusing to send the credentials there (pass insecure, --source-insecure, to accept it)"
                ),
            });
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:pull", self.source.repository),
            );
        }
        let mut request = self.http.get(url).timeout(REQUEST_TIMEOUT);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let message = error_message(response).await;
            return Err(ImportError::Unauthorized {
                source_registry: self.source.registry.clone(),
                why: format!(
                    "its token service at `{realm_host}` {}: {message}",
                    match &self.credentials {
                        Some(c) => format!("refused the credentials of `{}`", c.username),
                        None => "refused anonymous access; give a username and password".to_owned(),
                    }
                ),
            });
        }
        if !status.is_success() {
            let message = error_message(response).await;
            return Err(invalid(format!(
                "its token service at `{realm_host}` answered {status}: {message}"
            )));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| invalid(format!("its token service answered no token: {e}")))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("its token service answered no token".to_owned()))
    }

    /// Why the source refused, for people: whose credentials, or that it wants some.
    fn refusal(&self, message: &str) -> String {
        match &self.credentials {
            Some(c) => format!("it refused the credentials of `{}`: {message}", c.username),
            None => format!("it requires credentials (give a username and password): {message}"),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> ImportError {
        ImportError::Unreachable {
            source_registry: self.source.registry.clone(),
            why: describe(error),
        }
    }

    /// A body cut part way.
    pub(crate) fn cut(&self, error: &reqwest::Error) -> ImportError {
        ImportError::Unreachable {
            source_registry: self.source.registry.clone(),
            why: format!("the connection broke: {}", describe(error)),
        }
    }
}

/// The innermost cause of a reqwest error ("Connection refused", a certificate problem):
/// the outer layers only repeat the URL.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "it did not answer in time".to_owned();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// `Content-Length`, when the answer has one.
pub(crate) fn content_length(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// 1, 2, 4 s for attempts 1, 2, 3.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(5))
}

fn retry_after(response: &Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The next page of a paginated answer: `Link: <url>; rel="next"`, relative to `url`.
fn next_link(response: &Response, url: &Url) -> Option<Url> {
    let link = response
        .headers()
        .get(reqwest::header::LINK)?
        .to_str()
        .ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next")
            .then(|| url.join(target).ok())
            .flatten()
    })
}

/// The source's error message: the spec's error body (`CODE: message`), else the start of
/// the body, else the status.
async fn error_message(response: Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    #[derive(Deserialize)]
    struct Body {
        errors: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(parsed) = serde_json::from_str::<Body>(&body)
        && let Some(first) = parsed.errors.first()
    {
        return match (&first.code, &first.message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(text), None) | (None, Some(text)) => text.clone(),
            (None, None) => status.to_string(),
        };
    }
    let snippet: String = body.trim().chars().take(200).collect();
    if snippet.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {snippet}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(4));
    }

    #[test]
    fn credentials_do_not_print_their_password() {
        let c = Credentials {
            username: "bob".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
