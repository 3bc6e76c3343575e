//! The one place where failures become HTTP: the spec's status codes and JSON error body
//! (`{"errors":[{"code","message","detail"}]}`, written as `berth_api::ErrorBody`).
//!
//! The message a client sees is kept apart from what is logged: a storage failure is logged
//! once, here, with its cause, and the client gets a generic 500.

use axum::response::{IntoResponse, Response};
use berth_api::ErrorBody;
use berth_oci::ErrorCode;
use berth_oci::manifest::ManifestError;
use berth_registry::RegistryError;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

/// An error response of the distribution API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: serde_json::Value,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with the spec's `code`, a status and a message for the client.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.as_str(),
            message: message.into(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
        }
    }

    /// An error with a code of Berth's management API (`NOT_FOUND`, `CONFLICT`, ...).
    pub fn management(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
        }
    }

    /// Adds a `detail` object.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// Adds a response header.
    pub fn with_header(
        mut self,
        name: header::HeaderName,
        value: impl TryInto<HeaderValue>,
    ) -> Self {
        if let Ok(value) = value.try_into() {
            self.headers.push((name, value));
        }
        self
    }

    /// The status code this error travels with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// 404 for a path that is no endpoint of the API.
    pub fn not_found(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NameUnknown,
            format!("`{path}` is not an endpoint of the registry API"),
        )
    }

    /// 405 for a method an endpoint does not serve.
    pub fn method_not_allowed(method: &http::Method) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            format!("method {method} is not supported here"),
        )
    }

    /// 400 for a malformed request header or parameter.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed on a storage error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "UNKNOWN",
            message: "internal storage error; see the registry's log".into(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
        }
    }
}

impl From<berth_auth::IdentityError> for ApiError {
    fn from(e: berth_auth::IdentityError) -> Self {
        use berth_auth::IdentityError as E;
        let message = e.to_string();
        match e {
            E::InvalidName { .. }
            | E::UnknownChoice { .. }
            | E::Malformed { .. }
            | E::InvalidSchedule { .. }
            | E::SettingOutOfRange { .. }
            | E::InvalidRequest(_)
            | E::BreaksHierarchy(_) => {
                ApiError::management(StatusCode::BAD_REQUEST, "INVALID", message)
            }
            E::NotFound { .. } => ApiError::management(StatusCode::NOT_FOUND, "NOT_FOUND", message),
            E::AlreadyExists { .. }
            | E::InUse { .. }
            | E::AdminName { .. }
            | E::NoParentAddress(_)
            | E::Contended => ApiError::management(StatusCode::CONFLICT, "CONFLICT", message),
            E::ReadOnly { .. } => ApiError::management(StatusCode::CONFLICT, "READ_ONLY", message),
            E::AlreadyActivated { .. } => {
                ApiError::management(StatusCode::CONFLICT, "ALREADY_ACTIVATED", message)
            }
            E::InstanceDeactivated { .. } => {
                ApiError::management(StatusCode::CONFLICT, "INSTANCE_DEACTIVATED", message)
            }
            E::InstanceNotActive { .. } => {
                ApiError::management(StatusCode::CONFLICT, "INSTANCE_NOT_ACTIVE", message)
            }
            E::ManagedByParent { .. } => {
                ApiError::management(StatusCode::FORBIDDEN, "MANAGED_BY_PARENT", message)
            }
            // The registry's own records, not the request, are at fault: logged, and the
            // client gets the generic 500 of any storage failure.
            E::Corrupt(ref cause) => ApiError::internal(cause),
            E::Store(ref cause) => ApiError::internal(cause),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use RegistryError as E;
        use StatusCode as S;
        let message = e.to_string();
        match e {
            E::NameInvalid(_) => ApiError::new(S::BAD_REQUEST, ErrorCode::NameInvalid, message),
            E::TagInvalid(_) => ApiError::new(S::BAD_REQUEST, ErrorCode::TagInvalid, message),
            E::DigestInvalid(_) => ApiError::new(S::BAD_REQUEST, ErrorCode::DigestInvalid, message),
            E::NameUnknown(_) => ApiError::new(S::NOT_FOUND, ErrorCode::NameUnknown, message),
            E::BlobUnknown(ref d) => ApiError::new(S::NOT_FOUND, ErrorCode::BlobUnknown, message)
                .with_detail(json!({ "digest": d.to_string() })),
            E::ManifestUnknown(ref r) => {
                ApiError::new(S::NOT_FOUND, ErrorCode::ManifestUnknown, message)
                    .with_detail(json!({ "reference": r }))
            }
            E::UploadUnknown(_) => {
                ApiError::new(S::NOT_FOUND, ErrorCode::BlobUploadUnknown, message)
            }
            E::UploadRangeInvalid { offset } => ApiError::new(
                S::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                message,
            )
            .with_header(header::RANGE, range_header(offset)),
            E::UploadInvalid(_) => {
                ApiError::new(S::BAD_REQUEST, ErrorCode::BlobUploadInvalid, message)
            }
            E::DigestMismatch {
                ref expected,
                ref actual,
            } => ApiError::new(S::BAD_REQUEST, ErrorCode::DigestInvalid, message).with_detail(
                json!({ "expected": expected.to_string(), "actual": actual.to_string() }),
            ),
            E::ManifestInvalid(ManifestError::Unsupported(_)) => {
                ApiError::new(S::UNSUPPORTED_MEDIA_TYPE, ErrorCode::Unsupported, message)
            }
            E::ManifestInvalid(ManifestError::Invalid(_)) => {
                ApiError::new(S::BAD_REQUEST, ErrorCode::ManifestInvalid, message)
            }
            E::ManifestReferenceUnknown(_) => {
                ApiError::new(S::BAD_REQUEST, ErrorCode::ManifestBlobUnknown, message)
            }
            E::ManifestTooLarge { size, max } => {
                ApiError::new(S::PAYLOAD_TOO_LARGE, ErrorCode::SizeInvalid, message)
                    .with_detail(json!({ "size": size, "limit": max }))
            }
            E::Io(ref cause) => ApiError::internal(cause),
            // Logged by the registry, once per episode; clients retry a 5xx.
            E::StorageFull(_) => ApiError {
                status: S::INSUFFICIENT_STORAGE,
                code: "UNKNOWN",
                message: "the registry's storage is full; try again later".into(),
                detail: serde_json::Value::Null,
                headers: vec![(header::RETRY_AFTER, HeaderValue::from_static("60"))],
            },
            // Retryable by any client: a 5xx with a short Retry-After.
            E::BlobCollecting(_) => ApiError {
                status: S::SERVICE_UNAVAILABLE,
                code: "UNKNOWN",
                message,
                detail: serde_json::Value::Null,
                headers: vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            },
            E::Metadata(ref cause) => ApiError::internal(cause),
            E::RepositoryBusy(_) => ApiError::management(S::CONFLICT, "CONFLICT", message),
        }
    }
}

/// The `Range` header value for an upload holding `offset` bytes (`0-<last byte>`).
pub fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = (!self.detail.is_null()).then_some(self.detail);
        let body = serde_json::to_string(&ErrorBody::one(self.code, self.message, detail))
            .expect("an error body is plain JSON");
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
