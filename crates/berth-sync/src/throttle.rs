//! Per-link limits: one [`Throttle`] paces every byte content sync moves over the link to
//! the parent (down and up together) to the configured bandwidth.
//!
//! Pacing happens where the bytes enter or leave Berth: the chunks of a download as the
//! HTTP client hands them over, the chunks of an upload as they are read from disk. A chunk
//! is charged in full *before* it goes on, and large chunks are cut into pieces of about
//! [`SLICE`] of link time, so that:
//! - no chunk is free: not the first (the link is not "free until the first wait"), not the
//!   last (whose time is charged before it is handed over, not after), whatever their size;
//!   the client reads ahead from a socket whose buffers may hold hundreds of kilobytes, so a
//!   single chunk can be most of a small blob;
//! - the bytes go on evenly, a piece every [`SLICE`], rather than in one burst after a long
//!   silence.
//!
//! So a transfer of `n` bytes at `rate` takes `n / rate` from its first chunk (less at most
//! one [`SLICE`] of idle time made up), and concurrent transfers of a link share one budget.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

/// Link time one paced piece costs at most: a chunk worth more is cut.
pub const SLICE: Duration = Duration::from_millis(50);

/// The smallest piece a chunk is cut into, however low the rate.
const MIN_SLICE_BYTES: usize = 1024;

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
    /// When the link is next free: the end of the last interval handed out.
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
    /// Books `bytes` on the link at `rate` bytes per second and waits until the link would
    /// have carried them (`None`: unlimited, no wait). Every caller's bytes count against
    /// the same budget, one after the other.
    pub async fn pace(&self, bytes: usize, rate: Option<u64>) {
        let Some(rate) = rate.filter(|r| *r > 0) else {
            return;
        };
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let done = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            // Idle time is not saved up: after a pause, the budget starts again from now,
            // less one slice. That slice makes up for wakes that come late (the timer's
            // millisecond, the consumer's own work between pieces), which would otherwise
            // add up over a transfer: a piece every 50 ms, each a millisecond late, is 2%.
            let now = Instant::now();
            let start = (*next).max(now.checked_sub(SLICE).unwrap_or(now));
            *next = start + cost;
            *next
        };
        tokio::time::sleep_until(done).await;
    }
}

/// `stream` with every chunk cut into pieces of at most [`SLICE`] at `rate`, each paced by
/// `throttle` to `rate` bytes per second before it is passed on. Errors pass at once.
pub fn paced<E>(
    throttle: &Arc<Throttle>,
    stream: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    rate: Option<u64>,
) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static
where
    E: Send + 'static,
{
    let throttle = Arc::clone(throttle);
    let size = slice_bytes(rate);
    stream
        .flat_map(move |chunk| {
            futures_util::stream::iter(match chunk {
                Ok(rest) => Pieces::Slices { rest, size },
                Err(e) => Pieces::Error(Some(e)),
            })
        })
        .then(move |piece| {
            let throttle = Arc::clone(&throttle);
            async move {
                if let Ok(bytes) = &piece {
                    throttle.pace(bytes.len(), rate).await;
                }
                piece
            }
        })
}

/// The most bytes one paced piece holds at `rate`.
fn slice_bytes(rate: Option<u64>) -> usize {
    match rate.filter(|r| *r > 0) {
        None => usize::MAX,
        Some(rate) => {
            let bytes = u128::from(rate) * SLICE.as_millis() / 1000;
            usize::try_from(bytes)
                .unwrap_or(usize::MAX)
                .max(MIN_SLICE_BYTES)
        }
    }
}

/// One chunk as the pieces it is paced in.
enum Pieces<E> {
    /// What is left of a chunk, cut `size` bytes at a time (`Bytes::split_to` copies
    /// nothing).
    Slices { rest: Bytes, size: usize },
    /// An error, passed on once.
    Error(Option<E>),
}

impl<E> Iterator for Pieces<E> {
    type Item = Result<Bytes, E>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Pieces::Slices { rest, size } => {
                (!rest.is_empty()).then(|| Ok(rest.split_to((*size).min(rest.len()))))
            }
            Pieces::Error(e) => e.take().map(Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains `paced` over `chunks` (all available at once, as from a full socket buffer) at
    /// `rate`; returns, for each piece, when it was passed on and the bytes passed so far.
    async fn drain(
        throttle: &Arc<Throttle>,
        chunks: &[usize],
        rate: Option<u64>,
    ) -> Vec<(Duration, usize)> {
        let begin = Instant::now();
        let stream = futures_util::stream::iter(
            chunks
                .iter()
                .map(|n| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; *n])))
                .collect::<Vec<_>>(),
        );
        let mut paced = std::pin::pin!(paced(throttle, stream, rate));
        let mut seen = Vec::new();
        let mut total = 0;
        while let Some(piece) = paced.next().await {
            total += piece.unwrap().len();
            seen.push((begin.elapsed(), total));
        }
        seen
    }

    fn close(actual: Duration, expected: Duration) -> bool {
        actual >= expected && actual <= expected + Duration::from_millis(2)
    }

    #[tokio::test(start_paused = true)]
    async fn every_chunk_is_charged_the_first_and_the_last_included() {
        // How an HTTP client hands over a 600 KB body read from a full socket: its buffer
        // doubles up to about 400 KiB. At 50 KB/s that takes 12 s, however it is cut.
        let chunks = [8_192, 16_384, 32_768, 65_536, 131_072, 262_144, 83_904];
        assert_eq!(chunks.iter().sum::<usize>(), 600_000);
        let seen = drain(&Arc::default(), &chunks, Some(50_000)).await;
        let (took, total) = *seen.last().unwrap();
        assert_eq!(total, 600_000);
        assert!(close(took, Duration::from_secs(12)), "{took:?}");
        // One chunk alone is not free either.
        let seen = drain(&Arc::default(), &[600_000], Some(50_000)).await;
        assert!(close(seen.last().unwrap().0, Duration::from_secs(12)));
    }

    #[tokio::test(start_paused = true)]
    async fn large_chunks_go_on_evenly() {
        // 1 MB in one chunk at 100 KB/s: pieces of 5 KB every 50 ms, never ahead of the rate.
        let seen = drain(&Arc::default(), &[1_000_000], Some(100_000)).await;
        assert_eq!(seen.len(), 200);
        let mut last = Duration::ZERO;
        for (at, total) in &seen {
            assert!(
                *total as f64 <= 100_000.0 * at.as_secs_f64() + 1.0,
                "{total} by {at:?}"
            );
            assert!(
                *at - last <= SLICE + Duration::from_millis(1),
                "a gap before {at:?}"
            );
            last = *at;
        }
        assert!(close(last, Duration::from_secs(10)), "{last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn transfers_of_one_link_share_its_budget() {
        let throttle = Arc::new(Throttle::default());
        let one = vec![100_000; 10];
        let (a, b) = tokio::join!(
            drain(&throttle, &one, Some(1_000_000)),
            drain(&throttle, &one, Some(1_000_000))
        );
        // 2 MB at 1 MB/s: both finish at about 2 s.
        let end = a.last().unwrap().0.max(b.last().unwrap().0);
        assert!(close(end, Duration::from_secs(2)), "{end:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_saved_up_and_unlimited_does_not_wait() {
        let throttle = Throttle::default();
        throttle.pace(100_000, Some(100_000)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after_pause = Instant::now();
        throttle.pace(100_000, Some(100_000)).await;
        // One slice of the pause is made up, no more.
        assert!(close(after_pause.elapsed(), Duration::from_secs(1) - SLICE));
        let unlimited = Instant::now();
        throttle.pace(1 << 30, None).await;
        assert_eq!(unlimited.elapsed(), Duration::ZERO);
        let seen = drain(&Arc::default(), &[1 << 20, 1 << 20], None).await;
        assert_eq!(seen.len(), 2, "unlimited: chunks are not cut");
    }

    #[tokio::test(start_paused = true)]
    async fn errors_pass_on_at_once() {
        let stream = futures_util::stream::iter(vec![
            Ok(Bytes::from(vec![0u8; 10_000])),
            Err("cut"),
            Ok(Bytes::from(vec![0u8; 10_000])),
        ]);
        let items: Vec<Result<usize, &str>> = paced(&Arc::default(), stream, Some(1_000))
            .map(|r| r.map(|b| b.len()))
            .collect()
            .await;
        assert_eq!(items.len(), 21);
        assert_eq!(items[10], Err("cut"));
        assert!(
            items
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .all(|n| *n == 1024 || *n == 784)
        );
    }
}
