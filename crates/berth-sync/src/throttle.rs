//! Per-link limits: one [`Throttle`] paces every byte content sync moves over the link to
//! the parent (down and up together) to the configured bandwidth.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::time::Duration;

use tokio::time::Instant;

/// What the link's transfers need to know of the configuration, read at each use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSettings {
    /// Bytes per second (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// Blob transfers at once.
    pub concurrency: u32,
    /// Whether this registry is a ReadOnly mirror (catch-up may then delete what the parent
    /// no longer has).
    pub read_only: bool,
}

/// Paces transfers to a rate, shared by all the transfers of one link.
#[derive(Debug)]
pub struct Throttle {
    next: Mutex<Instant>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            next: Mutex::new(Instant::now()),
        }
    }
}

impl Throttle {
    /// Waits until `bytes` more may go over the link at `rate` bytes per second (`None`:
    /// unlimited, no wait). Every caller's bytes count against the same budget.
    pub async fn pace(&self, bytes: usize, rate: Option<u64>) {
        let Some(rate) = rate.filter(|r| *r > 0) else {
            return;
        };
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            // Idle time is not saved up: after a pause, the budget starts again from now.
            let start = (*next).max(Instant::now());
            *next = start + cost;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// `stream` with every chunk paced by `throttle` to `rate` bytes per second.
pub fn paced<E>(
    throttle: &Arc<Throttle>,
    stream: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    rate: Option<u64>,
) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static
where
    E: Send + 'static,
{
    let throttle = Arc::clone(throttle);
    stream.then(move |chunk| {
        let throttle = Arc::clone(&throttle);
        async move {
            if let Ok(bytes) = &chunk {
                throttle.pace(bytes.len(), rate).await;
            }
            chunk
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate() {
        let throttle = Throttle::default();
        let begin = Instant::now();
        for _ in 0..10 {
            throttle.pace(100_000, Some(1_000_000)).await;
        }
        // 1 MB at 1 MB/s: the last chunk may start after about 0.9 s.
        let elapsed = begin.elapsed();
        assert!(
            elapsed >= Duration::from_millis(850) && elapsed <= Duration::from_millis(1000),
            "{elapsed:?}"
        );
        let unlimited = Instant::now();
        throttle.pace(1 << 30, None).await;
        assert!(unlimited.elapsed() < Duration::from_millis(1));
    }
}
