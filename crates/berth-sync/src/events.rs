//! Notifications: the local changes of this connected registry (pushes and deletions made
//! here, not what arrived from the parent) that its notification patterns select
//! (`repository[:tag][@digest]:push|delete`, from its configuration) are raised as events
//! and sent up, `POST <parent>/berth/gateway/v1/<name>/events`; each relay passes them on,
//! and the root's webhooks deliver them with `source.connectedRegistry` naming this
//! registry.
//!
//! The sender follows the local change log with its own durable position
//! (`events-position`), saved only after the parent took a batch: through outages and
//! restarts nothing is lost, and an event sent twice (a crash between the parent's answer
//! and the save) is stored once at the root, by its id (`<instance>:<seq>`). A lasting
//! failure raises `EVENTS_FAILING` in the status, cleared by the next success.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_auth::gateway::{EventsReport, RegistrySettings};
use berth_auth::webhook::{SiteEvent, WebhookAction};
use berth_events::NotificationPattern;
use berth_events::payload::{change_action, superseded};
use berth_oci::Reference;
use berth_registry::{Origin, Registry, RegistryError};

use crate::client::{LinkError, ParentClient};
use crate::link::Link;
use crate::position::Position;
use crate::retry::Retry;
use crate::status::Problems;

/// Changes read, and events sent, at once.
const BATCH: u32 = 200;
/// The file of the sender's position.
const POSITION_FILE: &str = "events-position";

/// Why sending events up failed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The parent could not be reached or refused.
    #[error("the parent: {0}")]
    Parent(#[from] LinkError),
    /// The local registry failed.
    #[error("the local registry: {0}")]
    Local(#[from] RegistryError),
    /// Saving the position failed.
    #[error("events position: {0}")]
    Io(#[from] io::Error),
}

/// Raises this registry's events and sends them up.
pub struct EventSender {
    registry: Arc<Registry>,
    client: ParentClient,
    problems: Arc<Problems>,
    metrics: Arc<berth_metrics::Metrics>,
    name: String,
    instance_id: String,
    position: Position,
    first_start: bool,
}

impl EventSender {
    /// A sender for connected registry `name`'s instance `instance_id`, keeping its position
    /// in `data_dir`.
    pub fn new(link: &Link, name: &str, instance_id: &str, data_dir: &Path) -> Self {
        EventSender {
            registry: Arc::clone(&link.registry),
            client: link.client.clone(),
            problems: Arc::clone(&link.problems),
            metrics: Arc::clone(&link.metrics),
            name: name.to_owned(),
            instance_id: instance_id.to_owned(),
            position: Position::new(data_dir, POSITION_FILE),
            first_start: !data_dir.join(POSITION_FILE).exists(),
        }
    }

    /// Runs until the parent gives a final answer (which it returns); `settings` gives the
    /// registry's settings (and so its patterns) at each round.
    pub async fn run(
        self,
        settings: impl Fn() -> Option<RegistrySettings> + Send + Sync,
    ) -> LinkError {
        if self.first_start {
            // Told of what happens from now on, not of a log kept from before notifications
            // existed here.
            match self.registry.change_bounds().await {
                Ok((_, head)) => {
                    if let Err(e) = self.position.set(head) {
                        tracing::warn!(error = %e, "cannot save the events position");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the change log's head"),
            }
        }
        let mut changed = self.registry.subscribe_changes();
        let mut retry = Retry::new(
            "EVENTS_FAILING",
            "sending events up",
            Arc::clone(&self.problems),
        )
        .counted(Arc::clone(&self.metrics));
        loop {
            changed.mark_unchanged();
            match self.send_pending(&settings).await {
                Ok(()) => {
                    retry.succeeded();
                    let _ = tokio::time::timeout(Duration::from_secs(5), changed.changed()).await;
                }
                Err(EventError::Parent(e)) if e.is_final() => return e,
                Err(e) => retry.failed(&e).await,
            }
        }
    }

    async fn send_pending(
        &self,
        settings: &(impl Fn() -> Option<RegistrySettings> + Send + Sync),
    ) -> Result<(), EventError> {
        let Some(settings) = settings() else {
            return Ok(());
        };
        let patterns: Vec<NotificationPattern> = settings
            .notifications
            .iter()
            .filter_map(|p| NotificationPattern::parse(p).ok())
            .collect();
        loop {
            let changes = self
                .registry
                .changes(self.position.get(), BATCH + 1)
                .await?;
            let taken = &changes[..changes.len().min(BATCH as usize)];
            let Some(last) = taken.last() else {
                return Ok(());
            };
            let mut events = Vec::new();
            for (i, change) in taken.iter().enumerate() {
                if change.origin != Origin::Local || superseded(change, changes.get(i + 1)) {
                    continue;
                }
                // A repository's removal raises nothing: its manifests' deletions did.
                let (Some(action), Some(manifest)) =
                    (change_action(&change.event), change.event.digest())
                else {
                    continue;
                };
                let digest = manifest.to_string();
                let tag = change.event.tag().map(|t| t.as_str().to_owned());
                let repository = change.repository.as_str();
                if !patterns
                    .iter()
                    .any(|p| p.matches(action, repository, tag.as_deref(), &digest))
                {
                    continue;
                }
                let size = match action {
                    WebhookAction::Push => self
                        .registry
                        .manifest(&change.repository, &Reference::Digest(manifest.clone()))
                        .await
                        .ok()
                        .map(|m| m.content.len() as u64),
                    WebhookAction::Delete => None,
                };
                events.push(SiteEvent {
                    seq: 0,
                    registry: self.name.clone(),
                    id: format!("{}:{}", self.instance_id, change.seq),
                    action,
                    repository: repository.to_owned(),
                    tag,
                    digest,
                    media_type: change.event.media_type().map(str::to_owned),
                    size,
                    at: change.at,
                });
            }
            if !events.is_empty() {
                tracing::debug!(count = events.len(), "sending events up");
                let report = EventsReport {
                    instance_id: self.instance_id.clone(),
                    events,
                };
                self.client.events(&self.name, &report).await?;
            }
            self.position.set(last.seq)?;
            if changes.len() <= BATCH as usize {
                return Ok(());
            }
        }
    }
}
