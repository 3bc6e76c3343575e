//! When a connected registry syncs content: continuously (`* * * * *`, the default), or at
//! each tick of a cron schedule for at most a window.
//!
//! Rules: a run starts at each tick and ends when the window closes (what is left goes on at
//! the next tick); a tick missed while the instance was down is made up as soon as it
//! starts; an instance's very first start counts as a run, so a new site waits for its first
//! tick. The end of the last run is kept in the data directory (`last-sync-run`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_auth::connected::{CONTINUOUS, SyncSettings, iso_duration};
use chrono::{DateTime, Utc};

/// Whether content may move now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Continuous sync: always.
    Open,
    /// A scheduled run is on until this time.
    OpenUntil(DateTime<Utc>),
    /// Closed until the next tick, at this time.
    ClosedUntil(DateTime<Utc>),
}

/// The schedule of one instance, and the memory of its last run.
pub struct Schedule {
    state_file: PathBuf,
}

fn parse(settings: &SyncSettings) -> Option<(croner::Cron, Option<Duration>)> {
    if settings
        .schedule
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        == CONTINUOUS
    {
        return None;
    }
    let cron: croner::Cron = settings.schedule.parse().ok()?;
    let window = settings
        .window
        .as_deref()
        .and_then(|w| iso_duration("sync window", w).ok());
    Some((cron, window))
}

impl Schedule {
    /// The schedule of the instance whose data directory is `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Schedule {
            state_file: data_dir.join("last-sync-run"),
        }
    }

    fn last_run(&self) -> Option<DateTime<Utc>> {
        let text = std::fs::read_to_string(&self.state_file).ok()?;
        DateTime::from_timestamp(text.trim().parse().ok()?, 0)
    }

    /// Records that a run (or the first start) happened at `at`.
    pub fn mark_run(&self, at: DateTime<Utc>) {
        let _ = std::fs::write(&self.state_file, at.timestamp().to_string());
    }

    /// Whether content may move at `now` under `settings`.
    pub fn gate(&self, settings: &SyncSettings, now: DateTime<Utc>) -> Gate {
        let Some((cron, window)) = parse(settings) else {
            return Gate::Open;
        };
        let last = match self.last_run() {
            Some(last) => last,
            None => {
                self.mark_run(now);
                now
            }
        };
        gate_at(&cron, window, last, now)
    }
}

/// The gate at `now` for `cron` and `window`, the last run having ended at `last`.
fn gate_at(
    cron: &croner::Cron,
    window: Option<Duration>,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Gate {
    let far = now + chrono::Duration::days(366);
    match cron.find_next_occurrence(&last, false) {
        // A tick since the last run (possibly missed while down): a run is due.
        Ok(tick) if tick <= now => {
            let window =
                window.map(|w| chrono::Duration::from_std(w).unwrap_or(chrono::Duration::days(7)));
            // A missed tick is made up from now, for a whole window.
            let start = if window.is_some_and(|w| tick + w < now) {
                now
            } else {
                tick
            };
            Gate::OpenUntil(window.map_or(far, |w| start + w))
        }
        Ok(tick) => Gate::ClosedUntil(tick),
        Err(_) => Gate::ClosedUntil(far),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn ticks_windows_and_missed_ticks() {
        let cron: croner::Cron = "0 */2 * * *".parse().unwrap();
        let hour = Some(Duration::from_secs(3600));
        // Right after a run: closed until the next tick.
        assert_eq!(
            gate_at(
                &cron,
                hour,
                at("2026-01-01T02:30:00Z"),
                at("2026-01-01T02:45:00Z")
            ),
            Gate::ClosedUntil(at("2026-01-01T04:00:00Z"))
        );
        // At a tick: open for the window.
        assert_eq!(
            gate_at(
                &cron,
                hour,
                at("2026-01-01T02:30:00Z"),
                at("2026-01-01T04:10:00Z")
            ),
            Gate::OpenUntil(at("2026-01-01T05:00:00Z"))
        );
        // Ticks missed while down are made up at start, for a whole window.
        assert_eq!(
            gate_at(
                &cron,
                hour,
                at("2026-01-01T02:30:00Z"),
                at("2026-01-02T09:15:00Z")
            ),
            Gate::OpenUntil(at("2026-01-02T10:15:00Z"))
        );
    }

    #[test]
    fn continuous_is_always_open_and_a_first_start_waits_for_a_tick() {
        let dir = tempfile::tempdir().unwrap();
        let schedule = Schedule::new(dir.path());
        assert_eq!(
            schedule.gate(&SyncSettings::default(), Utc::now()),
            Gate::Open
        );
        let yearly = SyncSettings {
            schedule: "0 0 1 1 *".into(),
            window: Some("PT1H".into()),
            message_ttl: "P2D".into(),
            ..SyncSettings::default()
        };
        let now = at("2026-06-01T00:00:00Z");
        assert_eq!(
            schedule.gate(&yearly, now),
            Gate::ClosedUntil(at("2027-01-01T00:00:00Z"))
        );
    }
}
