//! `Range` (blob downloads) and `Content-Range` (upload chunks): parsing never panics, and
//! a range accepted lies within the blob.
#![no_main]

use berth_fuzz::range::{blob_range, parse_content_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, text)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    // Small sizes are the interesting ones (0, 1), but any u64 must be safe.
    let size = u64::from_le_bytes(*size);
    for size in [size, size % 4] {
        if let Ok(Some(range)) = blob_range(text, size) {
            assert!(
                range.start < range.end && range.end <= size,
                "{text:?} {size} {range:?}"
            );
        }
    }
    if let Some((start, end)) = parse_content_range(text) {
        assert!(start <= end);
    }
});
