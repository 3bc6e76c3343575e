//! When a connected registry syncs content: continuously (`* * * * *`, the default), or at
//! each tick of a cron schedule for at most a window.
//!
//! Rules: a run starts at each tick and ends when the window closes (what is left goes on at
//! the next tick); a tick missed while the instance was down is made up as soon as it
//! starts; an instance's very first start counts as a run, so a new site waits for its first
//! tick; and so does a switch to another schedule (from continuous sync too), which holds
//! from the moment the instance learns it. The end of the last run and the schedule it ran
//! under are kept in the data directory (`last-sync-run`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_auth::connected::{CONTINUOUS, SyncSettings};
use berth_auth::cron::Cron;
use jiff::{SignedDuration, Timestamp};

/// Whether content may move now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Continuous sync: always.
    Open,
    /// A scheduled run is on until this time.
    OpenUntil(Timestamp),
    /// Closed until the next tick, at this time.
    ClosedUntil(Timestamp),
}

/// The schedule of one instance, and the memory of its last run.
pub struct Schedule {
    state_file: PathBuf,
}

/// The cron expression and window of a scheduled sync; `None` for a continuous one.
fn parse(settings: &SyncSettings) -> Option<(&Cron, Option<Duration>)> {
    let cron = settings.schedule.cron()?;
    Some((cron, settings.window.as_ref().map(|w| w.duration())))
}

fn normalized(schedule: &str) -> String {
    schedule.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Schedule {
    /// The schedule of the instance whose data directory is `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Schedule {
            state_file: data_dir.join("last-sync-run"),
        }
    }

    /// The end of the last run, and the schedule it ran under (absent in files written
    /// before it was kept).
    fn last_run(&self) -> Option<(Timestamp, Option<String>)> {
        let text = std::fs::read_to_string(&self.state_file).ok()?;
        let mut lines = text.lines();
        let at = Timestamp::from_second(lines.next()?.trim().parse().ok()?).ok()?;
        Some((at, lines.next().map(normalized)))
    }

    fn record(&self, at: Timestamp, schedule: &str) {
        let text = format!("{}\n{}\n", at.as_second(), normalized(schedule));
        if let Err(e) = std::fs::write(&self.state_file, text) {
            tracing::warn!(error = %e, file = %self.state_file.display(), "could not record the last sync run");
        }
    }

    /// Records that a run (or the first start) ended at `at`, under the schedule in force.
    pub fn mark_run(&self, at: Timestamp) {
        match self.last_run().and_then(|(_, s)| s) {
            Some(schedule) => self.record(at, &schedule),
            None => {
                let _ = std::fs::write(&self.state_file, at.as_second().to_string());
            }
        }
    }

    /// Whether content may move at `now` under `settings`.
    pub fn gate(&self, settings: &SyncSettings, now: Timestamp) -> Gate {
        let schedule = settings.schedule.as_str();
        let last = self.last_run();
        let Some((cron, window)) = parse(settings) else {
            // Remembered, so that a switch to a schedule later is seen as one.
            if last
                .as_ref()
                .is_none_or(|(_, s)| s.as_deref() != Some(CONTINUOUS))
            {
                self.record(now, CONTINUOUS);
            }
            return Gate::Open;
        };
        let last = match last {
            // A new schedule (or a first start) waits for its first tick.
            Some((_, Some(previous))) if previous != schedule => {
                tracing::info!(schedule = %schedule, "sync schedule changed: content waits for its next tick");
                self.record(now, schedule);
                now
            }
            Some((last, _)) => last,
            None => {
                self.record(now, schedule);
                now
            }
        };
        gate_at(cron, window, last, now)
    }
}

/// The gate at `now` for `cron` and `window`, the last run having ended at `last`.
fn gate_at(cron: &Cron, window: Option<Duration>, last: Timestamp, now: Timestamp) -> Gate {
    let far = now + SignedDuration::from_hours(24 * 366);
    match cron.next_after(last) {
        // A tick since the last run (possibly missed while down): a run is due.
        Some(tick) if tick <= now => {
            let window = window
                .map(|w| SignedDuration::try_from(w).unwrap_or(SignedDuration::from_hours(24 * 7)));
            // A missed tick is made up from now, for a whole window.
            let start = if window.is_some_and(|w| tick + w < now) {
                now
            } else {
                tick
            };
            Gate::OpenUntil(window.map_or(far, |w| start + w))
        }
        Some(tick) => Gate::ClosedUntil(tick),
        None => Gate::ClosedUntil(far),
    }
}

#[cfg(test)]
mod tests {
    use berth_auth::connected::SyncChange;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// `schedule` with a one-hour window.
    fn scheduled(schedule: &str) -> SyncSettings {
        let change = SyncChange::parse(Some(schedule), Some("PT1H"), None, None, None).unwrap();
        SyncSettings::from_change(&change).unwrap()
    }

    #[test]
    fn ticks_windows_and_missed_ticks() {
        let cron: Cron = "0 */2 * * *".parse().unwrap();
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
            schedule.gate(&SyncSettings::default(), Timestamp::now()),
            Gate::Open
        );
        let yearly = scheduled("0 0 1 1 *");
        let now = at("2026-06-01T00:00:00Z");
        assert_eq!(
            schedule.gate(&yearly, now),
            Gate::ClosedUntil(at("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn a_switch_of_schedule_waits_for_the_new_tick() {
        let dir = tempfile::tempdir().unwrap();
        let schedule = Schedule::new(dir.path());
        let hourly = scheduled("0 * * * *");
        // An hourly schedule ran long ago: its missed tick is made up.
        schedule.record(at("2026-05-01T00:30:00Z"), "0 * * * *");
        assert!(matches!(
            schedule.gate(&hourly, at("2026-06-01T00:10:00Z")),
            Gate::OpenUntil(_)
        ));
        // Continuous for a while, then yearly: nothing moves before the new tick, though
        // ticks of the old schedule were missed.
        assert_eq!(
            schedule.gate(&SyncSettings::default(), at("2026-06-01T00:20:00Z")),
            Gate::Open
        );
        let yearly = scheduled("0 0 1 1 *");
        assert_eq!(
            schedule.gate(&yearly, at("2026-06-01T00:30:00Z")),
            Gate::ClosedUntil(at("2027-01-01T00:00:00Z"))
        );
        // Straight from one schedule to another, too.
        schedule.record(at("2026-05-01T00:30:00Z"), "0 0 1 1 *");
        assert_eq!(
            schedule.gate(&hourly, at("2026-06-01T00:40:00Z")),
            Gate::ClosedUntil(at("2026-06-01T01:00:00Z"))
        );
        // A file from before schedules were kept counts as the same schedule.
        std::fs::write(dir.path().join("last-sync-run"), "1780000000").unwrap();
        assert!(matches!(
            schedule.gate(&hourly, at("2026-07-01T00:10:00Z")),
            Gate::OpenUntil(_)
        ));
    }
}
