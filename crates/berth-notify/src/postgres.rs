//! [`PgNotifier`]: the wake-ups of every node that shares one PostgreSQL database.
//!
//! Each node keeps a [`LocalNotifier`] for its own waiters and caches, and:
//!
//! - `notify` bumps the local topic at once (a node always sees its own writes) and queues
//!   the topic for a sender task, which runs `SELECT pg_notify(<topic>, <node>)`; several
//!   notifies of one topic queued while the sender is busy go out as one, and a failed send
//!   is retried until it goes through (a change committed must reach every node: a node that
//!   missed it would serve a cached manifest for ever);
//! - a listener task holds one connection that `LISTEN`s on every topic's channel and bumps
//!   the local topic for each notification another node sent (its own are skipped: the
//!   payload names the node);
//! - when the listener's connection is lost, notifications sent meanwhile are lost with it:
//!   once it listens again, every topic is bumped, so every waiter looks again and every
//!   cache is dropped. Nothing is missed, at the cost of one spurious wake-up.
//!
//! PostgreSQL delivers a notification only after the sender's transaction commits, and
//! `notify` is called after the change committed, so the invariant of the crate holds on
//! every node: a generation is bumped only after what it announces is visible.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;

use crate::{LocalNotifier, Notifier, Subscription, Topic};

/// How long the tasks wait before trying again after PostgreSQL failed them.
const RETRY: Duration = Duration::from_secs(1);

/// The [`Notifier`] of a node sharing a PostgreSQL database with others.
pub struct PgNotifier {
    local: Arc<LocalNotifier>,
    outgoing: mpsc::UnboundedSender<Topic>,
}

impl PgNotifier {
    /// Connects to the database at `url`, starts listening, and starts the sender and
    /// listener tasks (on the current Tokio runtime). Fails if the first connection does.
    pub async fn start(url: &str) -> Result<Arc<PgNotifier>, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        let node = node_id();
        let listener = listen(&pool).await?;
        let local = Arc::new(LocalNotifier::new());
        let (outgoing, queued) = mpsc::unbounded_channel();
        tokio::spawn(send(pool.clone(), node.clone(), queued));
        tokio::spawn(receive(pool, listener, node, Arc::clone(&local)));
        Ok(Arc::new(PgNotifier { local, outgoing }))
    }
}

impl Notifier for PgNotifier {
    fn notify(&self, topic: Topic) {
        self.local.notify(topic);
        // Fails only once the sender task is gone (the runtime is shutting down).
        let _ = self.outgoing.send(topic);
    }

    fn notify_here(&self, topic: Topic) {
        self.local.notify(topic);
    }

    fn generation(&self, topic: Topic) -> u64 {
        self.local.generation(topic)
    }

    fn subscribe(&self, topic: Topic) -> Subscription {
        self.local.subscribe(topic)
    }
}

/// A name for this process among the nodes: its process id and start time. Only compared
/// with itself, to skip a node's own notifications.
fn node_id() -> String {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{}-{started}", std::process::id())
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all(Topic::ALL.map(Topic::as_str)).await?;
    Ok(listener)
}

/// Sends the queued topics, each once however often it was queued meanwhile, retrying
/// until PostgreSQL takes them.
async fn send(pool: PgPool, node: String, mut queued: mpsc::UnboundedReceiver<Topic>) {
    let mut failing = false;
    while let Some(first) = queued.recv().await {
        let mut topics = BTreeSet::from([first.as_str()]);
        while let Ok(more) = queued.try_recv() {
            topics.insert(more.as_str());
        }
        for topic in topics {
            loop {
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(topic)
                    .bind(&node)
                    .execute(&pool)
                    .await;
                match sent {
                    Ok(_) => {
                        if std::mem::take(&mut failing) {
                            tracing::info!("announcing changes to the other nodes works again");
                        }
                        break;
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %e, "cannot announce a change to the other nodes; retrying every second");
                        }
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        }
    }
}

/// Bumps the local topic of every notification another node sends; after the connection
/// was lost, listens again and bumps every topic.
async fn receive(pool: PgPool, mut listener: PgListener, node: String, local: Arc<LocalNotifier>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                if notification.payload() == node {
                    continue;
                }
                if let Some(topic) = Topic::ALL
                    .into_iter()
                    .find(|t| t.as_str() == notification.channel())
                {
                    local.notify(topic);
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!(
                    "lost the connection that hears the other nodes' changes; listening again"
                );
                listener = loop {
                    match listen(&pool).await {
                        Ok(listener) => break listener,
                        Err(_) => tokio::time::sleep(RETRY).await,
                    }
                };
                for topic in Topic::ALL {
                    local.notify(topic);
                }
                tracing::info!("hearing the other nodes' changes again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_testkit::postgres::TestPostgres;

    use super::*;

    async fn changed_within(sub: &mut Subscription, wait: Duration) -> bool {
        tokio::time::timeout(wait, sub.changed()).await.is_ok()
    }

    #[tokio::test]
    async fn a_notify_on_one_node_wakes_the_others_and_itself_once() {
        let server = TestPostgres::start();
        let url = server.database();
        let a = PgNotifier::start(&url).await.unwrap();
        let b = PgNotifier::start(&url).await.unwrap();
        let mut on_a = a.subscribe(Topic::Content);
        let mut on_b = b.subscribe(Topic::Content);
        let other_topic = b.subscribe(Topic::Identity);

        a.notify(Topic::Content);
        assert!(on_a.has_changed(), "the node's own waiters wake at once");
        assert!(
            changed_within(&mut on_b, Duration::from_millis(100)).await,
            "another node's waiters wake within 100 ms"
        );
        assert_eq!(b.generation(Topic::Content), 1);
        on_a.mark_unchanged();
        assert!(
            !changed_within(&mut on_a, Duration::from_millis(200)).await,
            "a node does not hear its own notification a second time"
        );
        assert!(!other_topic.has_changed(), "other topics stay quiet");

        b.notify_here(Topic::Identity);
        assert!(other_topic.has_changed());
        let mut identity_on_a = a.subscribe(Topic::Identity);
        assert!(
            !changed_within(&mut identity_on_a, Duration::from_millis(200)).await,
            "notify_here stays on its node"
        );
    }

    #[tokio::test]
    async fn a_lost_listener_listens_again_and_wakes_everything() {
        let server = TestPostgres::start();
        let url = server.database();
        let a = PgNotifier::start(&url).await.unwrap();
        let b = PgNotifier::start(&url).await.unwrap();
        let mut config_on_b = b.subscribe(Topic::Configuration);

        // Every other connection of the database goes: both nodes' listeners among them.
        let admin = PgPoolOptions::new().connect(&url).await.unwrap();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&admin)
        .await
        .unwrap();
        assert!(
            changed_within(&mut config_on_b, Duration::from_secs(10)).await,
            "after listening again, every topic is bumped"
        );

        // And it hears again.
        let mut content_on_b = b.subscribe(Topic::Content);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            a.notify(Topic::Content);
            if changed_within(&mut content_on_b, Duration::from_millis(200)).await {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "b hears a again after the connections were cut"
            );
        }
    }
}
