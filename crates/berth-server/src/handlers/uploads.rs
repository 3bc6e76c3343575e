//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (monolithic, session start, mount),
//! `PATCH`/`PUT`/`GET`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use axum::body::Body;
use axum::response::Response;
use berth_oci::{Digest, ErrorCode, RepositoryName};
use berth_registry::{Registry, RegistryError, UploadId};
use http::{HeaderMap, StatusCode, header};

use super::{QueryParams, body_stream, content_length};
use crate::error::{ApiError, range_header};
use crate::state::AppState;

fn upload_location(name: &RepositoryName, id: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn session_response(
    status: StatusCode,
    name: &RepositoryName,
    id: &UploadId,
    offset: u64,
) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, upload_location(name, id))
        .header(header::RANGE, range_header(offset))
        .header("Docker-Upload-UUID", id.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response parts")
}

fn created(name: &RepositoryName, digest: &Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header("Docker-Content-Digest", digest.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response parts")
}

fn parse_id(id: &str) -> Result<UploadId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadUnknown,
            format!("upload `{id}` is not known"),
        )
    })
}

fn required_digest(params: &QueryParams) -> Result<Digest, ApiError> {
    let digest = params.get("digest").ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::DigestInvalid,
            "the `digest` query parameter is required to complete an upload",
        )
    })?;
    Ok(Registry::digest(digest)?)
}

/// Where a chunk starts, from `Content-Range`: `<start>-<end>` (as the distribution spec
/// writes it), or `bytes <start>-<end>/<total|*>` (RFC 9110), checked against
/// `Content-Length` when both are present. A header that is present but malformed is refused
/// (`416`), never ignored.
fn chunk_start(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let invalid = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            format!("Content-Range `{text}` is not `<start>-<end>`"),
        )
    };
    let (start, end) = crate::range::parse_content_range(value.to_str().map_err(|_| invalid())?)
        .ok_or_else(invalid)?;
    // `end >= start`, so the length is at least 1; it overflows only for `0-u64::MAX`.
    let covered = (end - start).checked_add(1).ok_or_else(invalid)?;
    if let Some(len) = content_length(headers)
        && len != covered
    {
        return Err(ApiError::bad_request(
            ErrorCode::SizeInvalid,
            format!("Content-Range `{text}` covers {covered} bytes but Content-Length is {len}"),
        ));
    }
    Ok(Some(start))
}

/// `POST /v2/<name>/blobs/uploads/`: a mount (`?mount=&from=`, when the caller may read
/// `from`), a monolithic upload (`?digest=` with the body), or the start of a session.
pub async fn start(
    state: &AppState,
    name: &RepositoryName,
    params: &QueryParams,
    may_mount: bool,
    body: Body,
) -> Result<Response, ApiError> {
    let registry = &state.registry;
    if let Some(mount) = params.get("mount") {
        let digest = Registry::digest(mount)?;
        if let Some(from) = params.get("from").filter(|_| may_mount) {
            let from = registry.repository_name(from)?;
            if registry.mount_blob(name, &digest, &from).await? {
                return Ok(created(name, &digest));
            }
        }
        // Not mountable: fall back to a normal session, as the spec requires.
        let id = registry.uploads().start(name).await?;
        return Ok(session_response(StatusCode::ACCEPTED, name, &id, 0));
    }
    if let Some(digest) = params.get("digest") {
        let digest = Registry::digest(digest)?;
        let id = registry.uploads().start(name).await?;
        let result = registry
            .uploads()
            .finish(name, &id, &digest, Some((None, body_stream(body))))
            .await;
        if result.is_err() {
            // Best effort: a failed monolithic upload leaves no session behind.
            let _ = registry.uploads().cancel(name, &id).await;
        }
        result?;
        return Ok(created(name, &digest));
    }
    let id = registry.uploads().start(name).await?;
    Ok(session_response(StatusCode::ACCEPTED, name, &id, 0))
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: appends a chunk (with `Content-Range`) or a stream.
pub async fn patch(
    state: &AppState,
    name: &RepositoryName,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = parse_id(id)?;
    let start = match chunk_start(headers) {
        Ok(start) => start,
        Err(e) => {
            let offset = state.registry.uploads().offset(name, &id).await?;
            return Err(e.with_header(header::RANGE, range_header(offset)));
        }
    };
    let offset = state
        .registry
        .uploads()
        .append(name, &id, start, body_stream(body))
        .await
        .map_err(|e| match e {
            RegistryError::UploadRangeInvalid { offset } => ApiError::from(e)
                .with_header(header::LOCATION, upload_location(name, &id))
                .with_header(header::RANGE, range_header(offset)),
            other => other.into(),
        })?;
    Ok(session_response(StatusCode::ACCEPTED, name, &id, offset))
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the optional last chunk, then the digest check.
pub async fn put(
    state: &AppState,
    name: &RepositoryName,
    id: &str,
    params: &QueryParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = parse_id(id)?;
    let digest = required_digest(params)?;
    let start = chunk_start(headers)?;
    state
        .registry
        .uploads()
        .finish(name, &id, &digest, Some((start, body_stream(body))))
        .await?;
    Ok(created(name, &digest))
}

/// `GET /v2/<name>/blobs/uploads/<id>`: how much the session holds.
pub async fn status(
    state: &AppState,
    name: &RepositoryName,
    id: &str,
) -> Result<Response, ApiError> {
    let id = parse_id(id)?;
    let offset = state.registry.uploads().offset(name, &id).await?;
    Ok(session_response(StatusCode::NO_CONTENT, name, &id, offset))
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`: cancels the session.
pub async fn cancel(
    state: &AppState,
    name: &RepositoryName,
    id: &str,
) -> Result<Response, ApiError> {
    let id = parse_id(id)?;
    state.registry.uploads().cancel(name, &id).await?;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .expect("valid response parts"))
}

#[cfg(test)]
mod tests {
    use crate::range::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes 10-19/20"), Some((10, 19)));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, 19)));
        assert_eq!(parse_content_range("bytes=10-19"), Some((10, 19)));
        assert_eq!(parse_content_range("0-9/10"), Some((0, 9)));
        for bad in [
            "",
            "-",
            "9-0",
            "a-b",
            "+1-2",
            "0-9/9",
            "bytes 0-9/9",
            "bytes 0-9/x",
            "bytesbytes=0-9",
            "bytes 0-99999999999999999999",
            "0-9-10",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }
}
