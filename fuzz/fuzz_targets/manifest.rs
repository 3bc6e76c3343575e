//! Manifest bytes as a client pushes them: parsing never panics, and a manifest accepted is
//! UTF-8 and references only valid digests.
#![no_main]

use berth_oci::{Manifest, media_type};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for content_type in [
        None,
        Some(media_type::OCI_MANIFEST),
        Some("application/json"),
    ] {
        if let Ok(manifest) = Manifest::parse(data, content_type) {
            assert!(std::str::from_utf8(data).is_ok());
            for blob in manifest.required_blobs() {
                assert_eq!(
                    blob.digest
                        .to_string()
                        .parse::<berth_oci::Digest>()
                        .as_ref(),
                    Ok(&blob.digest)
                );
            }
        }
    }
});
