//! The clock, in the unit Berth records times in: whole seconds since the Unix epoch (and
//! milliseconds where a record needs them).
//!
//! Tables, change logs, status reports, tokens and signed URLs all keep times this way, so
//! every crate reads the clock here rather than each keeping a copy of the conversion.
//! Reading the clock is not I/O in this crate's sense: no file, no socket, nothing that can
//! fail or block.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in whole seconds since the Unix epoch (0 on a clock set before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Now, in milliseconds since the Unix epoch (0 on a clock set before it): for the few
/// records that need finer times, such as a blob's garbage-collection clock.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_now_is_the_system_clock_in_seconds() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let now = unix_now();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (before..=after).contains(&now),
            "{before} <= {now} <= {after}"
        );
    }
}
