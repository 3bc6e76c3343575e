//! `HEAD`/`GET`/`DELETE /v2/<name>/blobs/<digest>`.

use std::ops::Range;

use axum::body::Body;
use axum::response::Response;
use berth_oci::{Digest, ErrorCode, RepositoryName};
use http::{HeaderMap, StatusCode, header};

use super::header_str;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET` (or `HEAD`, with `head`) of a blob, honouring a single `Range`.
pub async fn get(
    state: &AppState,
    name: &RepositoryName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let blob = state.registry.blob(name, digest).await?;
    let range = match header_str(headers, header::RANGE) {
        Some(value) => parse_range(value, blob.size)?,
        None => None,
    };
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header("Docker-Content-Digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""));
    let (builder, len) = match &range {
        Some(r) => (
            builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end - 1, blob.size),
            ),
            r.end - r.start,
        ),
        None => (builder.status(StatusCode::OK), blob.size),
    };
    let builder = builder.header(header::CONTENT_LENGTH, len);
    let body = if head || len == 0 {
        Body::empty()
    } else {
        Body::from_stream(blob.read(range).await?)
    };
    Ok(builder.body(body).expect("valid response parts"))
}

/// `DELETE` of a blob: unlinks it from the repository.
pub async fn delete(
    state: &AppState,
    name: &RepositoryName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    state.registry.delete_blob(name, digest).await?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid"))
}

/// Parses `Range` against a blob of `size` bytes ([`crate::range::blob_range`]); an
/// unsatisfiable range is `416` with `Content-Range: bytes */<size>`.
fn parse_range(value: &str, size: u64) -> Result<Option<Range<u64>>, ApiError> {
    crate::range::blob_range(value, size).map_err(|_| {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::RangeInvalid,
            format!("range `{value}` is outside the blob's {size} bytes"),
        )
        .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
    })
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some(0..10));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some(90..100));
        assert_eq!(parse_range("bytes=90-500", 100).unwrap(), Some(90..100));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some(90..100));
        assert_eq!(parse_range("bytes=-500", 100).unwrap(), Some(0..100));
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(
            parse_range("bytes=0-18446744073709551615", 100).unwrap(),
            Some(0..100)
        );
        for on_empty in [
            "bytes=-1",
            "bytes=0-",
            "bytes=0-0",
            "bytes=-18446744073709551615",
        ] {
            assert!(parse_range(on_empty, 0).is_err(), "{on_empty}");
        }
        for bad in [
            "bytes=100-",
            "bytes=5-4",
            "bytes=-0",
            "items=0-1",
            "bytes=x-1",
            "bytes=0-1-2",
        ] {
            assert_eq!(
                parse_range(bad, 100).unwrap_err().status(),
                http::StatusCode::RANGE_NOT_SATISFIABLE,
                "{bad}"
            );
        }
    }
}
