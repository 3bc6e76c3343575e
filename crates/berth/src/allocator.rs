//! Tuning of glibc's allocator: the only `unsafe` in Berth, for a measured reason.
//!
//! With glibc's defaults, the resident size of `berth serve` ratchets up and stays there:
//! one Argon2 check of the admin password frees a 19 MiB block, which raises glibc's dynamic
//! mmap threshold to 19 MiB, so later buffers (request bodies, 256 KiB blob reads) come from
//! per-thread arenas that are rarely returned to the system; `bench/` measured 30 MiB after
//! one admin login and 117 MiB peak during 64 concurrent pulls. A fixed mmap threshold and
//! few arenas keep the resident size near the working set. (mimalloc was tried instead: it
//! held 41 MiB at idle.)

/// Sets glibc's allocator options; call first thing in `main`, before any thread starts.
#[allow(unsafe_code)]
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called before any other
    // thread exists, with options and values documented in mallopt(3).
    unsafe {
        // A fixed threshold also turns off the dynamic adjustment described above. It sits
        // above Berth's own buffers (256 KiB blob reads, 1 MiB write batches), which must come
        // from the heap: served by mmap, each would cost a map, page faults and an unmap
        // (measured: pulls at half speed with a 256 KiB threshold).
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
