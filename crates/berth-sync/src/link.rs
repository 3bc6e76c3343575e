//! What both directions of content sync share on one link with the parent.

use std::sync::Arc;
use std::time::Duration;

use berth_registry::Registry;

use crate::client::ParentClient;
use crate::status::{Activity, Problems};
use crate::throttle::{LinkSettings, Throttle};

/// The link with the parent, as content sync uses it: the local registry, the parent's
/// client, the pacing and limits of the link, and where its activity and problems show.
#[derive(Clone)]
pub struct Link {
    /// The local registry.
    pub registry: Arc<Registry>,
    /// The parent, with the sync token.
    pub client: ParentClient,
    /// Paces every byte both directions move.
    pub throttle: Arc<Throttle>,
    /// The link's limits now (bandwidth, transfers at once, mode).
    pub limits: Arc<dyn Fn() -> LinkSettings + Send + Sync>,
    /// The instance's status details.
    pub problems: Arc<Problems>,
    /// Whether content is moving (`Syncing`).
    pub activity: Arc<Activity>,
    /// The process's metrics: this link's lag, backlog, bytes and retries.
    pub metrics: Arc<berth_metrics::Metrics>,
}

/// How this link is named in metrics (the parent's side names it `child/<name>`).
pub const METRICS_LINK: &str = "parent";

/// How a sync loop meets failures, the same in both directions: each failure is logged and
/// followed by a longer wait (200 ms, doubling, at most 10 s); three in a row raise a status
/// detail (`code`), so a lasting failure shows at the root instead of looping silently; the
/// next success clears it and the waits start short again.
pub struct Retry {
    /// The status detail a lasting failure raises (`SYNC_FAILING`, `UPSTREAM_FAILING`).
    code: &'static str,
    /// What fails, for the log (`content sync`).
    what: &'static str,
    problems: Arc<crate::status::Problems>,
    delay: Duration,
    failures: u32,
}

impl Retry {
    /// The first wait.
    const FIRST: Duration = Duration::from_millis(200);
    /// The longest wait.
    const LONGEST: Duration = Duration::from_secs(10);
    /// Failures in a row that make a status detail.
    const LASTING: u32 = 3;

    /// Retries of `what`, raising `code` in `problems` when they last.
    pub fn new(
        code: &'static str,
        what: &'static str,
        problems: Arc<crate::status::Problems>,
    ) -> Self {
        Retry {
            code,
            what,
            problems,
            delay: Self::FIRST,
            failures: 0,
        }
    }

    /// A round went well: the problem, if raised, is over.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                "link to the parent restored: {} works again",
                self.what
            );
        }
        self.delay = Self::FIRST;
        self.failures = 0;
        self.problems.clear(self.code);
    }

    /// A round failed with `error`: logs it, raises the problem once it lasts, and waits
    /// before the next round.
    pub async fn failed(&mut self, error: &(dyn std::fmt::Display + Sync)) {
        let error = error.to_string();
        if self.failures == 0 {
            tracing::info!(error = %error, "link to the parent lost: {} fails; retrying with backoff until it works", self.what);
        }
        tracing::warn!(error = %error, "{} failed; retrying", self.what);
        self.failures += 1;
        if self.failures >= Self::LASTING {
            self.problems.raise(self.code, error);
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Self::LONGEST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_is_raised_then_cleared() {
        let problems = Arc::new(crate::status::Problems::default());
        let mut retry = Retry::new("SYNC_FAILING", "content sync", Arc::clone(&problems));
        let start = tokio::time::Instant::now();
        for _ in 0..2 {
            retry.failed(&"unreachable").await;
        }
        assert!(
            !problems.is_raised("SYNC_FAILING"),
            "two failures are not lasting"
        );
        retry.failed(&"unreachable").await;
        assert!(problems.is_raised("SYNC_FAILING"));
        assert_eq!(start.elapsed(), Duration::from_millis(200 + 400 + 800));
        retry.succeeded();
        assert!(!problems.is_raised("SYNC_FAILING"));
        for _ in 0..10 {
            retry.failed(&"again").await;
        }
        assert_eq!(retry.delay, Retry::LONGEST, "the waits stop growing");
    }
}
