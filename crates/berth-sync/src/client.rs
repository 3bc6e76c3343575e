//! The instance's HTTP client for its parent's gateway.

use std::time::Duration;

use berth_auth::gateway::{ActivateRequest, ConfigDocument, EventsReport, StatusReport};
use reqwest::StatusCode;

use crate::connection::ConnectionString;

/// Why a call to the parent failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Another instance holds the connected registry.
    #[error("ALREADY_ACTIVATED: {0}")]
    AlreadyActivated(String),
    /// This instance was deactivated on the root (final).
    #[error("INSTANCE_DEACTIVATED: {0}")]
    Deactivated(String),
    /// This instance is not the active one (anymore).
    #[error("INSTANCE_NOT_ACTIVE: {0}")]
    NotActive(String),
    /// The connected registry no longer exists on the root (final).
    #[error("CONNECTED_REGISTRY_UNKNOWN: {0}")]
    Unknown(String),
    /// The sync token was refused (wrong password, disabled or deleted): `401`.
    #[error("the parent refused the sync token: {0}")]
    Refused(String),
    /// The parent refused the request (`403`: its network rules, or rights the sync token
    /// lacks for now); retried, as the parent's owner may change it.
    #[error("the parent refused the request: {0}")]
    Forbidden(String),
    /// What was asked for does not exist at the parent.
    #[error("not found at the parent: {0}")]
    NotFound(String),
    /// The parent could not be reached, or failed.
    #[error("the parent is unreachable: {0}")]
    Unreachable(String),
}

impl LinkError {
    /// Whether retrying cannot help: the parent said this instance or its registry is done,
    /// or refused its credentials.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            LinkError::AlreadyActivated(_)
                | LinkError::Deactivated(_)
                | LinkError::NotActive(_)
                | LinkError::Unknown(_)
                | LinkError::Refused(_)
        )
    }
}

/// A client of the parent's gateway, authenticated with the sync token.
#[derive(Clone)]
pub struct ParentClient {
    http: reqwest::Client,
    root: String,
    base: String,
    username: String,
    password: String,
}

/// How long a config long poll waits at the parent.
pub const LONG_POLL: Duration = Duration::from_secs(25);

impl ParentClient {
    /// A client for the parent named in `connection`.
    pub fn new(connection: &ConnectionString) -> Self {
        berth_tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder();
        // Checked when the configuration was loaded; a bundle that fails here adds nothing.
        for certificate in connection
            .parent_ca
            .as_deref()
            .and_then(|pem| reqwest::Certificate::from_pem_bundle(pem).ok())
            .unwrap_or_default()
        {
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .redirect(redirect_policy(connection))
            .connect_timeout(Duration::from_secs(5))
            .timeout(LONG_POLL + Duration::from_secs(15))
            .build()
            .expect("build an HTTP client");
        ParentClient {
            http,
            root: connection.parent_url(),
            base: format!("{}/berth/gateway/v1", connection.parent_url()),
            username: connection.sync_token.clone(),
            password: connection.password.clone(),
        }
    }
}

/// Redirects are followed only to the parent itself and to the data endpoint its connection
/// string names (blob downloads): a sync token's answers must not lead anywhere else.
fn redirect_policy(connection: &ConnectionString) -> reqwest::redirect::Policy {
    let allowed: Vec<String> = std::iter::once(&connection.parent_endpoint)
        .chain(connection.data_endpoint.as_ref())
        .map(|endpoint| endpoint.trim_end_matches('/').to_ascii_lowercase())
        .collect();
    reqwest::redirect::Policy::custom(move |attempt| {
        let url = attempt.url();
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let with_port = url
            .port_or_known_default()
            .map(|port| format!("{host}:{port}"));
        let known = allowed.iter().any(|a| {
            *a == host && url.port().is_none() || with_port.as_deref() == Some(a.as_str())
        });
        if attempt.previous().len() >= 5 {
            attempt.error("the parent redirected more than 5 times")
        } else if known {
            attempt.follow()
        } else {
            let refusal = format!(
                "the parent redirected to {host}, which is neither the parent nor the ParentDataEndpoint of the connection string; run `berth connected-registry get-settings` on the parent again"
            );
            attempt.error(refusal)
        }
    })
}

impl ParentClient {
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, LinkError> {
        let response = request
            .basic_auth(&self.username, Some(&self.password))
            .send()
            .await
            .map_err(|e| LinkError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let error = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .map(|v| v["errors"][0].clone());
        let code = error
            .as_ref()
            .and_then(|e| e["code"].as_str())
            .unwrap_or_default()
            .to_owned();
        let message = error
            .as_ref()
            .and_then(|e| e["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{status}: {body}"));
        // Final answers are recognised by their code only: a 404 or 409 from anything else
        // in the way (a proxy, a misrouted address) is no reason to stop for good.
        Err(match (status, code.as_str()) {
            (StatusCode::CONFLICT, "ALREADY_ACTIVATED") => LinkError::AlreadyActivated(message),
            (StatusCode::CONFLICT, "INSTANCE_DEACTIVATED") => LinkError::Deactivated(message),
            (StatusCode::CONFLICT, "INSTANCE_NOT_ACTIVE") => LinkError::NotActive(message),
            (StatusCode::NOT_FOUND, "CONNECTED_REGISTRY_UNKNOWN") => LinkError::Unknown(message),
            (StatusCode::NOT_FOUND, _) => LinkError::NotFound(message),
            (StatusCode::UNAUTHORIZED, _) => LinkError::Refused(message),
            (StatusCode::FORBIDDEN, _) => LinkError::Forbidden(message),
            _ => LinkError::Unreachable(message),
        })
    }

    async fn document(response: reqwest::Response) -> Result<ConfigDocument, LinkError> {
        response
            .json()
            .await
            .map_err(|e| LinkError::Unreachable(format!("unreadable configuration: {e}")))
    }

    /// `GET <parent><path>` with the sync token, e.g. a registry API path; errors mapped.
    pub async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, LinkError> {
        let mut request = self.http.get(format!("{}{path}", self.root));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        self.send(request).await
    }

    /// `GET <parent><path>` from byte `offset` on (`Range: bytes=<offset>-`, when not 0).
    pub async fn get_from(&self, path: &str, offset: u64) -> Result<reqwest::Response, LinkError> {
        let mut request = self.http.get(format!("{}{path}", self.root));
        if offset > 0 {
            request = request.header("range", format!("bytes={offset}-"));
        }
        self.send(request).await
    }

    /// `HEAD <parent><path>` with an `Accept` header; errors mapped.
    pub async fn head(&self, path: &str, accept: &str) -> Result<reqwest::Response, LinkError> {
        self.send(
            self.http
                .head(format!("{}{path}", self.root))
                .header("accept", accept),
        )
        .await
    }

    /// `HEAD <parent><path>`: whether it answers 200 (404 is `false`; other errors fail).
    pub async fn exists(&self, path: &str) -> Result<bool, LinkError> {
        match self
            .send(self.http.head(format!("{}{path}", self.root)))
            .await
        {
            Ok(_) => Ok(true),
            Err(LinkError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT <parent><path>` with a body of `content_type`.
    pub async fn put(
        &self,
        path: &str,
        content_type: &str,
        body: bytes::Bytes,
    ) -> Result<(), LinkError> {
        let request = self
            .http
            .put(format!("{}{path}", self.root))
            .header("content-type", content_type)
            .body(body);
        self.send(request).await.map(drop)
    }

    /// `POST <parent><path>` streaming `body` (a monolithic blob upload).
    pub async fn post_stream(&self, path: &str, body: reqwest::Body) -> Result<(), LinkError> {
        let request = self
            .http
            .post(format!("{}{path}", self.root))
            .header("content-type", "application/octet-stream")
            .body(body);
        self.send(request).await.map(drop)
    }

    /// `DELETE <parent><path>`; a 404 (already gone) is success.
    pub async fn delete(&self, path: &str) -> Result<(), LinkError> {
        match self
            .send(self.http.delete(format!("{}{path}", self.root)))
            .await
        {
            Ok(_) => Ok(()),
            Err(LinkError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Activates `registry` (this instance's, or a child's when relaying).
    pub async fn activate(
        &self,
        registry: &str,
        request: &ActivateRequest,
    ) -> Result<ConfigDocument, LinkError> {
        let response = self
            .send(
                self.http
                    .post(format!("{}/{registry}/activate", self.base))
                    .json(request),
            )
            .await?;
        Self::document(response).await
    }

    /// Waits for `registry`'s configuration to differ from `since`, as instance `instance`
    /// (refused as soon as it is not the active instance). With no `since`, answers at once.
    pub async fn config(
        &self,
        registry: &str,
        since: Option<&str>,
        instance: Option<&str>,
    ) -> Result<Option<ConfigDocument>, LinkError> {
        // ETags are hex and instance ids UUIDs, so they need no escaping in the query.
        let mut url = format!(
            "{}/{registry}/config?wait={}",
            self.base,
            LONG_POLL.as_secs()
        );
        if let Some(since) = since {
            url.push_str(&format!("&since={since}"));
        }
        if let Some(instance) = instance {
            url.push_str(&format!("&instance={instance}"));
        }
        let response = self.send(self.http.get(url)).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        Self::document(response).await.map(Some)
    }

    /// Sends events raised on `registry` up.
    pub async fn events(&self, registry: &str, report: &EventsReport) -> Result<(), LinkError> {
        self.send(
            self.http
                .post(format!("{}/{registry}/events", self.base))
                .json(report),
        )
        .await
        .map(drop)
    }

    /// Reports `registry`'s status.
    pub async fn status(&self, registry: &str, report: &StatusReport) -> Result<(), LinkError> {
        self.send(
            self.http
                .post(format!("{}/{registry}/status", self.base))
                .json(report),
        )
        .await
        .map(drop)
    }
}
