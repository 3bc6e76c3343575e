//! Wake-ups: the [`Notifier`] seam, through which every part of Berth that waits for a change
//! (a long poll, a cache, a sync loop) learns that one was committed.
//!
//! Layout: [`Topic`] names what changed; [`Notifier`] is the seam (`notify` after a commit,
//! `subscribe` to wait, `generation` to compare); [`Subscription`] is what a waiter holds;
//! [`LocalNotifier`] is the in-process implementation; `postgres::PgNotifier` (feature
//! `postgres`) carries the wake-ups between the nodes that share a PostgreSQL database.
//!
//! Why a seam: today one process holds all the state, so a wake-up is a `tokio::sync::watch`
//! bump. When several stateless nodes share one database, a change committed on one node must
//! wake the waiters and invalidate the caches of all of them; a PostgreSQL implementation
//! (`LISTEN`/`NOTIFY`) will do that behind the same trait: `notify` bumps the local topic at
//! once (so a node always sees its own writes) and sends a `NOTIFY`; a listener task bumps
//! the local topic for every notification from another node. Subscriptions stay local
//! `watch` receivers either way, so waiters never change.
//!
//! Invariant: a topic's generation only grows, and it is bumped *after* the change it
//! announces has committed. So a reader that records the generation *before* reading the
//! store, and later finds it unchanged, knows that nothing it read has been overwritten
//! since (what the manifest cache relies on).
//!
//! Depends on nothing of Berth's, so that `berth-registry` and `berth-auth` can both use it.
//! `main` builds one notifier and hands it to each part: the registry takes it with
//! `Registry::with_notifier` (and announces [`Topic::Content`]); identities hold an
//! `Arc<dyn Notifier>` in place of their own `watch::Sender<u64>`, call
//! `notify(Topic::Identity)` after a write replaced the snapshot, and hand out
//! `subscribe(Topic::Identity)` to long polls (the same `mark_unchanged` / `changed` calls
//! as on a `watch::Receiver`); with several nodes, each node also runs a task that waits on
//! that subscription and reloads its snapshot from the store. A connected registry's
//! instance announces a new configuration document with `notify(Topic::Configuration)`.

#[cfg(feature = "postgres")]
pub mod postgres;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// What changed. Each topic is independent: its own generation, its own waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Repository content: a manifest or tag was put or deleted, so the change log grew.
    /// Wakes change-log long polls (`messages`) and the upstream sender; invalidates
    /// manifest caches.
    Content,
    /// Identities: tokens, scope maps, the admin, settings, connected registries. Each
    /// node reloads its identity snapshot; the root's configuration long polls look again.
    Identity,
    /// A connected registry's own configuration document (the one its parent sent): wakes
    /// the relay's long polls for its children and the sync loops that follow the settings.
    Configuration,
    /// Webhooks and the events they deliver beside the change log: a webhook defined or
    /// changed, events relayed up by connected registries stored, events raised on a
    /// connected registry. Wakes the webhook deliverer and the site's event sender.
    Events,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 4] = [
        Topic::Content,
        Topic::Identity,
        Topic::Configuration,
        Topic::Events,
    ];

    fn index(self) -> usize {
        match self {
            Topic::Content => 0,
            Topic::Identity => 1,
            Topic::Configuration => 2,
            Topic::Events => 3,
        }
    }

    /// The topic's name, as a channel name for implementations that need one.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Content => "berth_content",
            Topic::Identity => "berth_identity",
            Topic::Configuration => "berth_configuration",
            Topic::Events => "berth_events",
        }
    }
}

/// Announces committed changes and lets waiters wait for them.
pub trait Notifier: Send + Sync + 'static {
    /// Announces a change of `topic`; call it after the change committed. Never fails and
    /// never waits: an implementation that must reach other nodes does so in the
    /// background, and bumps this process's waiters at once.
    fn notify(&self, topic: Topic);

    /// Announces a change of `topic` to this process only: for a change another node made
    /// and announced, which this one has just read from the store (announcing it again
    /// would wake every node for nothing).
    fn notify_here(&self, topic: Topic) {
        self.notify(topic);
    }

    /// How many changes of `topic` this process has learnt of so far. Only grows. Cheap
    /// enough for every request (an atomic load in [`LocalNotifier`]).
    fn generation(&self, topic: Topic) -> u64;

    /// A subscription that sees every change of `topic` announced from now on.
    fn subscribe(&self, topic: Topic) -> Subscription;
}

/// The notifier was dropped: no change will ever be announced again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the notifier is gone")
    }
}

impl std::error::Error for Closed {}

/// A waiter's view of one topic.
///
/// Follow the pattern `mark_unchanged()`, read the state, `changed().await`: a change
/// committed after the mark (even while the state is being read) ends the wait at once, so
/// none is missed.
#[derive(Debug, Clone)]
pub struct Subscription(watch::Receiver<u64>);

impl Subscription {
    /// A subscription over a `watch` channel whose value an implementation bumps on every
    /// change (for implementations other than [`LocalNotifier`]).
    pub fn from_watch(receiver: watch::Receiver<u64>) -> Self {
        Subscription(receiver)
    }

    /// Forgets the changes seen so far: the next [`Subscription::changed`] waits for a new one.
    pub fn mark_unchanged(&mut self) {
        self.0.mark_unchanged();
    }

    /// Whether a change was announced since the last mark (or since subscribing).
    pub fn has_changed(&self) -> bool {
        self.0.has_changed().unwrap_or(false)
    }

    /// Waits for a change announced since the last mark (or since subscribing), and marks it
    /// seen. Fails only if the notifier is gone.
    pub async fn changed(&mut self) -> Result<(), Closed> {
        self.0.changed().await.map_err(|_| Closed)
    }
}

/// One topic of a [`LocalNotifier`].
#[derive(Debug)]
struct Channel {
    /// The generation, readable without a lock; written under the `watch` lock.
    generation: AtomicU64,
    wake: watch::Sender<u64>,
}

/// The in-process [`Notifier`]: one `tokio::sync::watch` channel per topic. Right for one
/// node; a notifier shared by several nodes wraps one (see the crate's documentation).
#[derive(Debug)]
pub struct LocalNotifier {
    topics: [Channel; 4],
}

impl LocalNotifier {
    /// A notifier with every generation at 0.
    pub fn new() -> Self {
        LocalNotifier {
            topics: std::array::from_fn(|_| Channel {
                generation: AtomicU64::new(0),
                wake: watch::Sender::new(0),
            }),
        }
    }

    fn channel(&self, topic: Topic) -> &Channel {
        &self.topics[topic.index()]
    }
}

impl Default for LocalNotifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier for LocalNotifier {
    fn notify(&self, topic: Topic) {
        let channel = self.channel(topic);
        // The bump and the wake-up happen under the channel's lock, so concurrent notifies
        // leave the generation and the channel's value equal.
        channel.wake.send_modify(|n| {
            *n += 1;
            channel.generation.store(*n, Ordering::Release);
        });
    }

    fn generation(&self, topic: Topic) -> u64 {
        self.channel(topic).generation.load(Ordering::Acquire)
    }

    fn subscribe(&self, topic: Topic) -> Subscription {
        Subscription(self.channel(topic).wake.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_notify_wakes_the_subscribers_of_its_topic_only() {
        let notifier = LocalNotifier::new();
        let mut content = notifier.subscribe(Topic::Content);
        let mut identity = notifier.subscribe(Topic::Identity);
        assert!(!content.has_changed());
        notifier.notify(Topic::Content);
        assert!(content.has_changed());
        content.changed().await.unwrap();
        assert!(!content.has_changed(), "a change is seen once");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), identity.changed())
                .await
                .is_err(),
            "another topic's change wakes nobody here"
        );
        assert_eq!(notifier.generation(Topic::Content), 1);
        assert_eq!(notifier.generation(Topic::Identity), 0);
    }

    #[tokio::test]
    async fn a_change_during_a_read_is_not_missed() {
        let notifier = Arc::new(LocalNotifier::new());
        let mut sub = notifier.subscribe(Topic::Configuration);
        notifier.notify(Topic::Configuration);
        sub.mark_unchanged();
        // ... the waiter reads the state here, while another task commits a change ...
        let other = Arc::clone(&notifier);
        tokio::spawn(async move { other.notify(Topic::Configuration) })
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), sub.changed())
            .await
            .expect("the change made after the mark ends the wait")
            .unwrap();
    }

    #[tokio::test]
    async fn generations_only_grow_under_concurrent_notifies() {
        let notifier = Arc::new(LocalNotifier::new());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let n = Arc::clone(&notifier);
                tokio::spawn(async move {
                    let mut last = 0;
                    for _ in 0..100 {
                        n.notify(Topic::Content);
                        let g = n.generation(Topic::Content);
                        assert!(g > last);
                        last = g;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(notifier.generation(Topic::Content), 800);
    }

    #[tokio::test]
    async fn a_dropped_notifier_ends_waits() {
        let notifier = LocalNotifier::new();
        let mut sub = notifier.subscribe(Topic::Content);
        drop(notifier);
        assert_eq!(sub.changed().await, Err(Closed));
    }
}
