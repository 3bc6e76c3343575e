//! Handlers of the distribution API, one module per resource. Each parses what it needs
//! from the request, makes one call into [`berth_registry::Registry`], and builds the
//! response with the spec's headers.

pub mod blobs;
pub mod listing;
pub mod manifests;
pub mod token;
pub mod uploads;

use std::io;

use axum::body::Body;
use berth_registry::ByteStream;
use futures_util::{StreamExt, TryStreamExt};
use http::HeaderMap;

/// The request's query parameters, in order, repeated keys kept.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Parses a raw query string.
    pub fn parse(query: Option<&str>) -> Self {
        QueryParams(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A request body as a stream of bytes for the registry.
pub fn body_stream(body: Body) -> ByteStream<'static> {
    body.into_data_stream().map_err(io::Error::other).boxed()
}

/// A header's value as text, if present and printable.
pub fn header_str(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Content-Length`, if present and numeric.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, http::header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}
