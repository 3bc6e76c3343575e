//! What an instance reports besides its configuration: whether content is moving
//! ([`Activity`]), and its status details ([`Problems`]): the problems that last now, and a
//! short history of past ones.
//!
//! A problem is *raised* while its cause lasts (`SYNC_FAILING` after three failures in a row,
//! `DISK_LOW` while the disk is nearly full) and *cleared* when it ends: it then stays in the
//! history, marked with the time it ended, until newer past problems push it out. A one-off
//! event (`TAG_CONFLICT`: the rule already settled it) goes straight to the history.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use berth_auth::connected::{StatusDetail, order_details, trim_past};
use berth_oci::time::unix_now;

/// Whether content is moving over the link now: the instance reports `Syncing` while it is.
#[derive(Debug, Default)]
pub struct Activity {
    /// Transfers and batches under way, in both directions.
    moving: AtomicUsize,
    /// A scheduled sync run is on (its window is open).
    scheduled_run: AtomicBool,
}

/// Counts as moving content until dropped.
#[derive(Debug)]
pub struct Moving(Arc<Activity>);

impl Drop for Moving {
    fn drop(&mut self) {
        self.0.moving.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    /// Content moves until the returned guard is dropped.
    pub fn moving(self: &Arc<Self>) -> Moving {
        self.moving.fetch_add(1, Ordering::Relaxed);
        Moving(Arc::clone(self))
    }

    /// Whether a scheduled run is on.
    pub fn set_scheduled_run(&self, on: bool) {
        self.scheduled_run.store(on, Ordering::Relaxed);
    }

    /// Whether the instance is syncing: content moving, or a scheduled run on.
    pub fn is_syncing(&self) -> bool {
        self.moving.load(Ordering::Relaxed) > 0 || self.scheduled_run.load(Ordering::Relaxed)
    }
}

/// The instance's current and past problems.
#[derive(Debug, Default)]
pub struct Problems {
    details: Mutex<Vec<StatusDetail>>,
}

impl Problems {
    /// `code` lasts, as `description` says. Raised again while it lasts, it keeps the time
    /// it started and takes the new description.
    pub fn raise(&self, code: &str, description: impl Into<String>) {
        let mut details = self.lock();
        let description = description.into();
        match details
            .iter_mut()
            .find(|d| d.code == code && d.is_current())
        {
            Some(current) => current.description = description,
            None => details.push(StatusDetail::new(code, description, unix_now())),
        }
        trim_past(&mut details);
    }

    /// `code` is over (nothing happens if it was not raised).
    pub fn clear(&self, code: &str) {
        let mut details = self.lock();
        let at = unix_now();
        let mut changed = false;
        for detail in details
            .iter_mut()
            .filter(|d| d.code == code && d.is_current())
        {
            detail.resolved_at = Some(at);
            changed = true;
        }
        if changed {
            trim_past(&mut details);
        }
    }

    /// Something that happened and needs no action: kept as a past problem.
    pub fn notice(&self, code: &str, description: impl Into<String>) {
        let at = unix_now();
        let mut details = self.lock();
        details.push(StatusDetail {
            resolved_at: Some(at),
            ..StatusDetail::new(code, description, at)
        });
        trim_past(&mut details);
    }

    /// Whether `code` lasts now.
    pub fn is_raised(&self, code: &str) -> bool {
        self.lock().iter().any(|d| d.code == code && d.is_current())
    }

    /// Every detail to report: current problems first, then past ones, newest first.
    pub fn details(&self) -> Vec<StatusDetail> {
        let mut details = self.lock().clone();
        order_details(&mut details);
        details
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StatusDetail>> {
        self.details.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_counts_what_moves() {
        let activity = Arc::new(Activity::default());
        assert!(!activity.is_syncing());
        let a = activity.moving();
        let b = activity.moving();
        drop(a);
        assert!(activity.is_syncing());
        drop(b);
        assert!(!activity.is_syncing());
        activity.set_scheduled_run(true);
        assert!(activity.is_syncing());
    }

    #[test]
    fn a_problem_lasts_until_cleared_then_is_kept_as_past() {
        let problems = Problems::default();
        problems.raise("SYNC_FAILING", "the parent: refused");
        problems.raise("SYNC_FAILING", "the parent: unreachable");
        let details = problems.details();
        assert_eq!(details.len(), 1, "raised twice, one problem");
        assert!(details[0].is_current());
        assert_eq!(details[0].description, "the parent: unreachable");
        assert!(problems.is_raised("SYNC_FAILING"));

        problems.clear("SYNC_FAILING");
        problems.clear("DISK_LOW");
        let details = problems.details();
        assert_eq!(details.len(), 1);
        assert!(!details[0].is_current(), "past, with the time it ended");
        assert!(!problems.is_raised("SYNC_FAILING"));

        problems.raise("SYNC_FAILING", "again");
        problems.notice("TAG_CONFLICT", "settled by the rule");
        let details = problems.details();
        assert_eq!(
            details.iter().map(|d| d.is_current()).collect::<Vec<_>>(),
            [true, false, false],
            "current first: {details:?}"
        );
    }

    #[test]
    fn the_history_is_short() {
        let problems = Problems::default();
        problems.raise("DISK_LOW", "1 MiB free");
        for i in 0..30 {
            problems.notice("TAG_CONFLICT", format!("conflict {i}"));
        }
        let details = problems.details();
        assert_eq!(
            details.len(),
            1 + berth_auth::connected::PAST_DETAILS_KEPT,
            "every current problem and the last past ones"
        );
        assert!(details[0].is_current() && details[0].code == "DISK_LOW");
    }
}
