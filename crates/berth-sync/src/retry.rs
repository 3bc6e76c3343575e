//! [`Retry`]: how the instance's loops with the parent meet failures that retrying can mend
//! (activation, the configuration poll, both directions of content sync, sending events
//! up). A final answer of the parent is not one of them: each loop returns it, and the
//! instance says it once and stops.

use std::sync::Arc;
use std::time::Duration;

use berth_metrics::Metrics;

use crate::status::Problems;

/// One loop's failures in a row: each is logged and followed by a longer wait (200 ms,
/// doubling, at most 10 s unless the loop asks for less). A *reported* loop also says when
/// the link is lost and restored, and three failures in a row raise a status detail
/// (`code`), so a lasting failure shows at the root instead of looping silently; the next
/// success clears it. After a success the waits start short again.
pub struct Retry {
    /// What fails, for the log (`content sync`).
    what: &'static str,
    /// What the instance does meanwhile, for the log (`retrying`).
    meanwhile: &'static str,
    /// Where a lasting failure shows, for a reported loop.
    report: Option<Report>,
    /// Where each failure is counted (`berth_sync_retries_total` of the parent link), for
    /// the loops that move content and events over the link.
    counted: Option<Arc<Metrics>>,
    longest: Duration,
    delay: Duration,
    failures: u32,
}

/// The status detail a lasting failure raises, and where.
struct Report {
    /// `SYNC_FAILING`, `UPSTREAM_FAILING`, `EVENTS_FAILING`.
    code: &'static str,
    problems: Arc<Problems>,
}

impl Retry {
    /// The first wait.
    const FIRST: Duration = Duration::from_millis(200);
    /// The longest wait.
    const LONGEST: Duration = Duration::from_secs(10);
    /// Failures in a row that make a status detail.
    const LASTING: u32 = 3;

    /// Retries of `what`, raising `code` in `problems` when they last.
    pub fn new(code: &'static str, what: &'static str, problems: Arc<Problems>) -> Self {
        Retry {
            report: Some(Report { code, problems }),
            ..Self::unreported(what)
        }
    }

    /// Retries of `what` that only log each failure.
    pub fn unreported(what: &'static str) -> Self {
        Retry {
            what,
            meanwhile: "retrying",
            report: None,
            counted: None,
            longest: Self::LONGEST,
            delay: Self::FIRST,
            failures: 0,
        }
    }

    /// Each failure is counted in `metrics`, as a retry on the parent link.
    pub fn counted(self, metrics: Arc<Metrics>) -> Self {
        Retry {
            counted: Some(metrics),
            ..self
        }
    }

    /// The waits grow to `longest` at the most.
    pub fn at_most(self, longest: Duration) -> Self {
        Retry { longest, ..self }
    }

    /// While failing, the log says the instance goes on with `meanwhile`.
    pub fn meanwhile(self, meanwhile: &'static str) -> Self {
        Retry { meanwhile, ..self }
    }

    /// A round went well: the problem, if raised, is over.
    pub fn succeeded(&mut self) {
        if let Some(report) = &self.report {
            if self.failures > 0 {
                tracing::info!(
                    failures = self.failures,
                    "link to the parent restored: {} works again",
                    self.what
                );
            }
            report.problems.clear(report.code);
        }
        self.delay = Self::FIRST;
        self.failures = 0;
    }

    /// A round failed with `error`: logs it, raises the problem once it lasts, and waits
    /// before the next round.
    pub async fn failed(&mut self, error: &(dyn std::fmt::Display + Sync)) {
        let error = error.to_string();
        if self.failures == 0 && self.report.is_some() {
            tracing::info!(error = %error, "link to the parent lost: {} fails; retrying with backoff until it works", self.what);
        }
        tracing::warn!(error = %error, "{} failed; {}", self.what, self.meanwhile);
        if let Some(metrics) = &self.counted {
            metrics.sync_retried(crate::link::METRICS_LINK);
        }
        self.failures += 1;
        if let Some(report) = &self.report
            && self.failures >= Self::LASTING
        {
            report.problems.raise(report.code, error);
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(self.longest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lasting_failure_is_raised_then_cleared() {
        let problems = Arc::new(Problems::default());
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

    #[tokio::test(start_paused = true)]
    async fn a_counted_loop_counts_each_failure_on_the_parent_link() {
        let metrics = Arc::new(berth_metrics::Metrics::new(false));
        let problems = Arc::new(Problems::default());
        let mut retry = Retry::new("EVENTS_FAILING", "sending events up", problems)
            .counted(Arc::clone(&metrics));
        retry.failed(&"unreachable").await;
        retry.succeeded();
        retry.failed(&"unreachable").await;
        let text = metrics.encode_openmetrics();
        assert!(
            text.contains(r#"berth_sync_retries_total{link="parent"} 2"#),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreported_loop_only_waits() {
        let mut retry = Retry::unreported("configuration poll").at_most(Duration::from_secs(5));
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            retry.failed(&"unreachable").await;
        }
        assert_eq!(retry.delay, Duration::from_secs(5), "the waits stop at 5 s");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(200 + 400 + 800 + 1600 + 3200) + Duration::from_secs(5 * 5)
        );
        retry.succeeded();
        assert_eq!(
            retry.delay,
            Retry::FIRST,
            "a success makes the waits short again"
        );
    }
}
