//! Repository names, tags, references and digests: parsing never panics, and what is
//! accepted prints back to the same text.
#![no_main]

use berth_oci::{Digest, Reference, RepositoryName, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = RepositoryName::parse(text, 255) {
        assert_eq!(name.as_str(), text);
        assert!(!name.as_str().contains(".."));
    }
    if let Ok(tag) = Tag::parse(text) {
        assert_eq!(tag.as_str(), text);
    }
    let _ = Reference::parse(text);
    if let Ok(digest) = text.parse::<Digest>() {
        assert_eq!(digest.to_string(), text);
    }
});
