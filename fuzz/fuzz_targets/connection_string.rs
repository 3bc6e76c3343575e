//! Connection strings, as an operator pastes them: parsing never panics.
#![no_main]

use berth_fuzz::connection::ConnectionString;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ConnectionString::parse(text);
});
