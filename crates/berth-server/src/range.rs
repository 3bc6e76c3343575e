//! Byte ranges from clients: `Range` on blob downloads and `Content-Range` on upload
//! chunks.
//!
//! Every number here comes from a client, so the arithmetic is checked. The module depends
//! on nothing but `std`, so that the fuzz targets (`fuzz/`) compile it on its own.

use std::ops::Range;

/// A `Range` that no byte of the blob satisfies (answered `416`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes into a
/// half-open range within it. Multiple ranges are not served: `Ok(None)`, the whole blob is
/// (as RFC 9110 allows).
pub fn blob_range(value: &str, size: u64) -> Result<Option<Range<u64>>, Unsatisfiable> {
    let spec = value.trim().strip_prefix("bytes=").ok_or(Unsatisfiable)?;
    if spec.contains(',') {
        return Ok(None);
    }
    // No range of an empty blob can be satisfied (and `size - 1` below would underflow).
    if size == 0 {
        return Err(Unsatisfiable);
    }
    let (start, end) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let suffix: u64 = end.parse().map_err(|_| Unsatisfiable)?;
        if suffix == 0 {
            return Err(Unsatisfiable);
        }
        size.saturating_sub(suffix)..size
    } else {
        let start: u64 = start.parse().map_err(|_| Unsatisfiable)?;
        let end = if end.is_empty() {
            size - 1
        } else {
            end.parse::<u64>().map_err(|_| Unsatisfiable)?.min(size - 1)
        };
        if start >= size || end < start {
            return Err(Unsatisfiable);
        }
        // `end < size`, so `end + 1` cannot overflow.
        start..end + 1
    };
    Ok(Some(range))
}

/// Parses a chunk's `Content-Range` into its inclusive `(start, end)`.
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let value = value.trim();
    let value = match value.strip_prefix("bytes") {
        Some(rest) => rest.strip_prefix(['=', ' '])?.trim_start(),
        None => value,
    };
    let (spec, total) = match value.split_once('/') {
        Some((spec, total)) => (spec, Some(total)),
        None => (value, None),
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (number(start)?, number(end)?);
    if end < start {
        return None;
    }
    match total.map(str::trim) {
        None | Some("*") => {}
        Some(total) => {
            if number(total)? <= end {
                return None;
            }
        }
    }
    Some((start, end))
}
