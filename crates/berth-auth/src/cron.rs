//! The cron expression of a scheduled sync, parsed once, and when it ticks: in UTC, to the
//! second.
//!
//! croner does the matching. It searches over any date and time type that implements its
//! [`CronDateTime`] trait; its own implementation for jiff is for jiff 0.2, while Berth
//! uses jiff 1, so this module implements the trait for jiff 1's civil time read as UTC
//! (the way croner implements it for its naive types). A UTC clock never jumps or
//! repeats, so each civil time is exactly one instant.

use std::cmp::Ordering;
use std::str::FromStr;

use croner::errors::CronError;
use croner::{CivilDate, CivilDateTime, CivilTime, CronDateTime, Resolution, Weekday};
use jiff::civil::DateTime;
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};

/// A cron expression, parsed: when a scheduled sync ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron(croner::Cron);

impl Cron {
    /// The first tick strictly after `after`, or `None` when croner finds none (an
    /// expression that never fires, such as `0 0 31 2 *`).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = UtcClock(Offset::UTC.to_datetime(after));
        let tick = self.0.find_next_occurrence(&start, false).ok()?;
        Offset::UTC.to_timestamp(tick.0).ok()
    }
}

impl FromStr for Cron {
    type Err = CronError;

    /// Parses a cron expression with croner's grammar; the 5-field shape and the fields'
    /// ranges are `connected`'s to check first.
    fn from_str(text: &str) -> Result<Self, CronError> {
        text.parse().map(Cron)
    }
}

/// A time on the UTC clock, as croner searches over it.
#[derive(Clone)]
struct UtcClock(DateTime);

impl CronDateTime for UtcClock {
    fn to_civil(&self) -> CivilDateTime {
        let t = self.0;
        // jiff keeps every part within its range, as croner requires.
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(i32::from(t.year()), t.month() as u32, t.day() as u32),
            CivilTime::from_parts_unchecked(t.hour() as u32, t.minute() as u32, t.second() as u32),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        Weekday::from_days_from_sunday(self.0.weekday().to_sunday_zero_offset() as u32)
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        // Beyond jiff's years (-9999 to 9999) there is no time to resolve to.
        let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
        let t = DateTime::new(
            year,
            civil.month() as i8,
            civil.day() as i8,
            civil.hour() as i8,
            civil.minute() as i8,
            civil.second() as i8,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        Ok(Resolution::Single(UtcClock(t)))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(SignedDuration::from_secs(seconds))
            .ok()
            .map(UtcClock)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(cron: &str, after: &str) -> Option<Timestamp> {
        cron.parse::<Cron>().unwrap().next_after(at(after))
    }

    #[test]
    fn ticks_strictly_after_in_utc() {
        assert_eq!(
            next("0 */2 * * *", "2026-01-01T02:30:00Z"),
            Some(at("2026-01-01T04:00:00Z"))
        );
        // Strictly after: a time on a tick gives the next one, with or without sub-seconds.
        assert_eq!(
            next("0 * * * *", "2026-01-01T03:00:00Z"),
            Some(at("2026-01-01T04:00:00Z"))
        );
        assert_eq!(
            next("0 * * * *", "2026-01-01T02:59:59.5Z"),
            Some(at("2026-01-01T03:00:00Z"))
        );
        // Weekdays (2026-01-04 is a Sunday), month ends, leap days, years.
        assert_eq!(
            next("30 12 * * 1", "2026-01-04T00:00:00Z"),
            Some(at("2026-01-05T12:30:00Z"))
        );
        assert_eq!(
            next("0 0 31 * *", "2026-04-01T00:00:00Z"),
            Some(at("2026-05-31T00:00:00Z"))
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z"),
            Some(at("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            next("0 0 1 1 *", "2026-06-01T00:00:00Z"),
            Some(at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(next("0 0 31 2 *", "2026-01-01T00:00:00Z"), None);
    }
}
