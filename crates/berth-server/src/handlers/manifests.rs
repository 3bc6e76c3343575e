//! `HEAD`/`GET`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::response::Response;
use berth_oci::{ErrorCode, NameError, Reference, RepositoryName, Tag};
use berth_registry::RegistryError;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode, header};

use super::{QueryParams, content_length, header_str};
use crate::error::ApiError;
use crate::state::AppState;

/// Parses a manifest reference; a bad digest is `DIGEST_INVALID`, a bad tag `TAG_INVALID`.
pub fn parse_reference(reference: &str) -> Result<Reference, ApiError> {
    Reference::parse(reference).map_err(|e| match e {
        NameError::Digest(_) => RegistryError::DigestInvalid(e.to_string()).into(),
        other => RegistryError::TagInvalid(other).into(),
    })
}

/// Whether an `Accept` header admits `media_type`. No header, or a wildcard, admits anything.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any_accept = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let item = item.split(';').next().unwrap_or("").trim();
            if item.is_empty() {
                continue;
            }
            any_accept = true;
            if item == media_type || item == "*/*" || item == "application/*" {
                return true;
            }
        }
    }
    !any_accept
}

/// Parses a reference to read or delete: a tag that cannot exist is simply unknown (`404`),
/// as the conformance suite expects; a malformed digest stays `DIGEST_INVALID`.
fn existing_reference(reference: &str) -> Result<Reference, ApiError> {
    match Reference::parse(reference) {
        Ok(reference) => Ok(reference),
        Err(NameError::Digest(e)) => Err(RegistryError::DigestInvalid(e.to_string()).into()),
        Err(_) => Err(RegistryError::ManifestUnknown(reference.to_owned()).into()),
    }
}

/// `GET` (or `HEAD`, with `head`) of a manifest by tag or digest.
pub async fn get(
    state: &AppState,
    name: &RepositoryName,
    reference: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let reference = existing_reference(reference)?;
    let manifest = state.registry.manifest(name, &reference).await?;
    if !accepts(headers, &manifest.media_type) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::ManifestUnknown,
            format!(
                "the manifest is of type `{}`, which the request's Accept header does not admit",
                manifest.media_type
            ),
        ));
    }
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &manifest.media_type)
        .header(header::CONTENT_LENGTH, manifest.content.len())
        .header("Docker-Content-Digest", manifest.digest.to_string())
        .header(header::ETAG, format!("\"{}\"", manifest.digest));
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.content.clone())
    };
    Ok(builder.body(body).expect("valid response parts"))
}

/// `PUT` of a manifest, by tag or by digest, with optional `?tag=` parameters.
pub async fn put(
    state: &AppState,
    name: &RepositoryName,
    reference: &str,
    params: &QueryParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let reference = parse_reference(reference)?;
    let extra_tags = params
        .all("tag")
        .map(Tag::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(RegistryError::TagInvalid)?;
    let max = state.registry.config().max_manifest_size;
    // Refused before a byte of the body is read when the client says it is too large. The
    // body is then read on and thrown away in the background (up to a bound), so that the
    // client, still sending, reads the 413 instead of a reset connection.
    if let Some(len) = content_length(headers)
        && len > max as u64
    {
        tokio::spawn(discard(body));
        return Err(RegistryError::ManifestTooLarge {
            size: usize::try_from(len).unwrap_or(usize::MAX),
            max,
        }
        .into());
    }
    let content = read_manifest_body(body, max).await?;
    let content_type = header_str(headers, header::CONTENT_TYPE);
    let pushed = state
        .registry
        .put_manifest(name, &reference, content_type, content, extra_tags.clone())
        .await?;
    let mut builder = Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/v2/{name}/manifests/{}", pushed.digest),
        )
        .header("Docker-Content-Digest", pushed.digest.to_string())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = &pushed.subject {
        builder = builder.header("OCI-Subject", subject.to_string());
    }
    for tag in &extra_tags {
        builder = builder.header("OCI-Tag", tag.as_str());
    }
    Ok(builder.body(Body::empty()).expect("valid response parts"))
}

/// The most of a refused body read on and thrown away, and for how long.
const DISCARD_AT_MOST: usize = 64 << 20;
const DISCARD_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads `body` to its end and throws it away, up to [`DISCARD_AT_MOST`] bytes within
/// [`DISCARD_FOR`]; then drops it, which closes the connection if it was not over.
async fn discard(body: Body) {
    let mut body = body.into_data_stream();
    let mut received = 0usize;
    let _ = tokio::time::timeout(DISCARD_FOR, async {
        while let Some(Ok(chunk)) = body.next().await {
            received += chunk.len();
            if received > DISCARD_AT_MOST {
                break;
            }
        }
    })
    .await;
}

/// Reads a manifest body of at most `max` bytes. A larger body is read on and discarded (up
/// to a bound) before the `413` is sent, so that the client, still sending, reads the error
/// instead of a reset connection.
async fn read_manifest_body(body: Body, max: usize) -> Result<bytes::Bytes, ApiError> {
    let mut body = body.into_data_stream();
    let mut content = bytes::BytesMut::new();
    let mut received = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                ErrorCode::ManifestInvalid,
                format!("the manifest body could not be received: {e}"),
            )
        })?;
        received += chunk.len();
        if received <= max {
            content.extend_from_slice(&chunk);
        } else if received > max + DISCARD_AT_MOST {
            break;
        }
    }
    if received > max {
        return Err(RegistryError::ManifestTooLarge {
            size: received,
            max,
        }
        .into());
    }
    Ok(content.freeze())
}

/// `DELETE` of a manifest (by digest: the manifest and its tags) or of a tag.
pub async fn delete(
    state: &AppState,
    name: &RepositoryName,
    reference: &str,
) -> Result<Response, ApiError> {
    let reference = existing_reference(reference)?;
    state.registry.delete_manifest(name, &reference).await?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_accept(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn accept_negotiation() {
        let oci = berth_oci::media_type::OCI_MANIFEST;
        assert!(accepts(&with_accept(&[]), oci));
        assert!(accepts(&with_accept(&[oci]), oci));
        assert!(accepts(
            &with_accept(&["application/vnd.docker.distribution.manifest.v2+json", oci]),
            oci
        ));
        assert!(accepts(
            &with_accept(&[&format!("text/plain, {oci};q=0.5")]),
            oci
        ));
        assert!(accepts(&with_accept(&["*/*"]), oci));
        assert!(!accepts(
            &with_accept(&["application/vnd.docker.distribution.manifest.v2+json"]),
            oci
        ));
    }
}
