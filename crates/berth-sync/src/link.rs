//! What both directions of content sync share on one link with the parent.

use std::sync::Arc;

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

/// Runs `transfers`, at most `at_once` at a time, and returns the first error. A failure
/// does not drop the transfers under way (as `try_collect` would): they run to their end,
/// and one cut blob leaves its siblings to finish, or to keep what they received for a
/// resume. No further transfer starts after a failure.
pub(crate) async fn transfer_all<E>(
    transfers: impl futures_util::Stream<Item = impl Future<Output = Result<(), E>>>,
    at_once: u32,
) -> Result<(), E> {
    use futures_util::StreamExt as _;

    let mut transfers = std::pin::pin!(transfers);
    let mut running = futures_util::stream::FuturesUnordered::new();
    let mut first = None;
    loop {
        while first.is_none() && running.len() < at_once.max(1) as usize {
            match transfers.next().await {
                Some(transfer) => running.push(transfer),
                None => break,
            }
        }
        match running.next().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                first.get_or_insert(e);
            }
            None => return first.map_or(Ok(()), Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures_util::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn a_failed_transfer_leaves_the_others_under_way_to_finish() {
        let finished = AtomicUsize::new(0);
        let started = AtomicUsize::new(0);
        let finished = &finished;
        let started = &started;
        let transfers = futures_util::stream::iter(0..5).map(|i| async move {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 0 {
                return Err(format!("transfer {i} cut"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let result = transfer_all(transfers, 3).await;
        assert_eq!(result, Err("transfer 0 cut".to_owned()));
        assert_eq!(
            finished.load(Ordering::SeqCst),
            2,
            "the two under way finished"
        );
        assert_eq!(
            started.load(Ordering::SeqCst),
            3,
            "none started after the failure"
        );
    }
}
