//! Content sync, child to parent, for ReadWrite connected registries: what local clients
//! push, tag, untag or delete here is sent up to the parent (and from there on up, and down
//! to every other registry that syncs the repository).
//!
//! The instance follows its *own* change log, skipping what arrived from the parent (the
//! log's `origin`), so nothing echoes back up; and the parent applies what it receives as a
//! local change of its own, so it flows on. Changes are sent in order, one at a time, and the
//! position is saved only after the parent accepted a change: through any number of outages
//! and restarts, every local change reaches the parent exactly once in effect (re-sending a
//! manifest, a tag or a deletion the parent already has changes nothing there).

use std::io;
use std::path::Path;
use std::time::Duration;

use berth_auth::connected::Mode;
use berth_auth::gateway::RegistrySettings;
use berth_auth::scope_map::RepositoryPattern;
use berth_oci::{Digest, Manifest, Reference, RepositoryName};
use berth_registry::{Change, ChangeEvent, Origin, Registry, RegistryError};
use futures_util::StreamExt;
use jiff::Timestamp;

use crate::client::LinkError;
use crate::link::Link;
use crate::position::Position;
use crate::retry::Retry;
use crate::schedule::{Gate, Schedule};
use crate::throttle::{LinkSettings, paced};

/// Changes read from the local log at a time.
const PAGE: u32 = 200;

/// Why sending a change up failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The parent could not be reached or refused.
    #[error("the parent: {0}")]
    Parent(#[from] LinkError),
    /// The local registry failed.
    #[error("the local registry: {0}")]
    Local(#[from] RegistryError),
    /// Saving the position failed.
    #[error("upstream position: {0}")]
    Io(#[from] io::Error),
}

/// Sends local changes up to the parent.
pub struct Upstream {
    link: Link,
    position: Position,
}

/// What one round of sending found.
enum Sent {
    /// Everything sent (or nothing to send).
    All,
    /// Local changes wait for the schedule to open, at this time.
    WaitUntil(Timestamp),
}

impl Upstream {
    /// Reports a tag moved on both sides while they were apart. The rule, everywhere: the
    /// version that reaches the root last wins. Local changes are sent up after the parent's
    /// (they were made here, later, and are replayed now), so the version pushed here wins;
    /// the parent's stays pullable by its digest. Detection: the parent's tag now differs
    /// from what this registry last received of it before the local change, and from the
    /// local version.
    async fn check_conflict(
        &self,
        repository: &RepositoryName,
        tag: &str,
        local: &Digest,
        seq: i64,
    ) -> Result<(), PushError> {
        let parsed = berth_oci::Tag::parse(tag).map_err(RegistryError::TagInvalid)?;
        let known = self
            .link
            .registry
            .parent_tag_before(repository, &parsed, seq)
            .await?;
        let current = match self
            .link
            .client
            .head(
                &format!("/v2/{repository}/manifests/{tag}"),
                crate::content::ACCEPT,
            )
            .await
        {
            Ok(response) => response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|d| Registry::digest(d).ok()),
            Err(LinkError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if current != known && current.as_ref() != Some(local) {
            let theirs = current.map_or_else(|| "deleted".to_owned(), |d| d.to_string());
            let description = format!(
                "tag `{repository}:{tag}` moved on both sides while apart: `{local}` here, {theirs} above; the version that \
                 reaches the root last wins (`{local}`), and the other stays pullable by its digest"
            );
            tracing::warn!("{description}");
            // Settled by the rule already: a past problem, for the operator to see.
            self.link.problems.notice("TAG_CONFLICT", description);
        }
        Ok(())
    }

    /// An upstream sender over `link`, keeping its position in `data_dir`.
    pub fn new(link: Link, data_dir: &Path) -> Self {
        Upstream {
            link,
            position: Position::new(data_dir, "upstream-position"),
        }
    }

    /// Runs until the parent gives a final answer (which it returns). `settings` gives the
    /// registry's settings at each round (its configuration changes while it runs): a
    /// ReadWrite registry sends its local changes when its schedule lets content move, and
    /// keeps them, in order, while it does not.
    pub async fn run(
        self,
        schedule: Schedule,
        settings: impl Fn() -> Option<RegistrySettings> + Send + Sync,
    ) -> LinkError {
        let mut changed = self.link.registry.subscribe_changes();
        let mut retry = Retry::new(
            "UPSTREAM_FAILING",
            "sending local changes up",
            std::sync::Arc::clone(&self.link.problems),
        )
        .counted(std::sync::Arc::clone(&self.link.metrics));
        loop {
            changed.mark_unchanged();
            match self.send_pending(&schedule, &settings).await {
                Ok(sent) => {
                    retry.succeeded();
                    // Wait for the next local change, or the tick (look again after a while:
                    // the schedule may change).
                    let pause = match sent {
                        Sent::All => Duration::from_secs(5),
                        Sent::WaitUntil(next) => Duration::try_from(next - Timestamp::now())
                            .unwrap_or_default()
                            .clamp(Duration::from_millis(100), Duration::from_secs(5)),
                    };
                    let _ = tokio::time::timeout(pause, changed.changed()).await;
                }
                Err(PushError::Parent(e)) if e.is_final() => return e,
                Err(e) => retry.failed(&e).await,
            }
        }
    }

    async fn send_pending(
        &self,
        schedule: &Schedule,
        settings: &(impl Fn() -> Option<RegistrySettings> + Send + Sync),
    ) -> Result<Sent, PushError> {
        let Some(settings) = settings() else {
            return Ok(Sent::All);
        };
        let read_write = settings.mode == Mode::ReadWrite;
        if read_write
            && let Gate::ClosedUntil(next) = schedule.gate(&settings.sync, Timestamp::now())
        {
            // Kept, in order, for the next run; the gauge counts them meanwhile.
            let (_, head) = self.link.registry.change_bounds().await?;
            self.report_backlog(head);
            return Ok(Sent::WaitUntil(next));
        }
        let patterns: Vec<RepositoryPattern> = settings
            .repositories
            .iter()
            .filter_map(|r| RepositoryPattern::parse(r).ok())
            .collect();
        loop {
            let changes = self
                .link
                .registry
                .changes(self.position.get(), PAGE)
                .await?;
            // Changes not yet examined (on a ReadOnly registry none wait: its changes all
            // come from its parent and are skipped at once). The head is the page's last
            // change unless the page is full: the log is asked only then.
            match changes.last() {
                _ if !read_write => self.report_backlog(self.position.get()),
                None => self.report_backlog(self.position.get()),
                Some(last) if changes.len() < PAGE as usize => self.report_backlog(last.seq),
                Some(_) => {
                    let (_, head) = self.link.registry.change_bounds().await?;
                    self.report_backlog(head);
                }
            }
            if changes.is_empty() {
                return Ok(Sent::All);
            }
            for change in changes {
                let synced = patterns
                    .iter()
                    .any(|p| p.matches(change.repository.as_str()));
                if read_write && synced && change.origin == Origin::Local {
                    let _moving = self.link.activity.moving();
                    self.send(&change).await?;
                }
                self.position.set(change.seq)?;
            }
        }
    }

    /// Sets the backlog gauge: the changes from this direction's position to `head`.
    fn report_backlog(&self, head: i64) {
        let backlog = u64::try_from(head - self.position.get()).unwrap_or(0);
        self.link
            .metrics
            .sync_backlog(crate::link::METRICS_LINK, backlog);
    }

    async fn send(&self, change: &Change) -> Result<(), PushError> {
        let repository = &change.repository;
        tracing::debug!(seq = change.seq, repository = %repository, action = ?change.event.action(), "sending up");
        match &change.event {
            ChangeEvent::ManifestPut { digest, .. } => {
                self.push_manifest(repository, digest, None).await
            }
            ChangeEvent::TagPut { tag, digest, .. } => {
                self.check_conflict(repository, tag.as_str(), digest, change.seq)
                    .await?;
                self.push_manifest(repository, digest, Some(tag.as_str()))
                    .await
            }
            ChangeEvent::TagDelete { tag, .. } => Ok(self
                .link
                .client
                .delete(&format!("/v2/{repository}/manifests/{tag}"))
                .await?),
            ChangeEvent::ManifestDelete { digest } => Ok(self
                .link
                .client
                .delete(&format!("/v2/{repository}/manifests/{digest}"))
                .await?),
            // The manifests' deletions went up before it; the name is the parent's to keep
            // or remove (the distribution API a sync token reaches has no repository delete).
            ChangeEvent::RepositoryDelete => Ok(()),
        }
    }

    /// Pushes manifest `digest` (children and blobs first, only what the parent lacks), and
    /// points `tag` at it.
    async fn push_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        tag: Option<&str>,
    ) -> Result<(), PushError> {
        let local = match self
            .link
            .registry
            .manifest(repository, &Reference::Digest(digest.clone()))
            .await
        {
            Ok(local) => local,
            // Deleted here since: its deletion follows in the log.
            Err(RegistryError::ManifestUnknown(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let manifest = Manifest::parse(&local.content, Some(&local.media_type))
            .map_err(RegistryError::ManifestInvalid)?;
        for child in manifest.required_manifests() {
            if !self
                .link
                .client
                .exists(&format!("/v2/{repository}/manifests/{}", child.digest))
                .await?
            {
                Box::pin(self.push_manifest(repository, &child.digest, None)).await?;
            }
        }
        // Blobs the parent lacks, in parallel as the link allows, paced to its bandwidth.
        let LinkSettings {
            bandwidth,
            concurrency,
            ..
        } = (self.link.limits)();
        let blobs = manifest
            .required_blobs()
            .map(|b| b.digest.clone())
            .collect::<Vec<_>>();
        let transfers = futures_util::stream::iter(blobs).map(|digest| async move {
            if self
                .link
                .client
                .exists(&format!("/v2/{repository}/blobs/{digest}"))
                .await?
            {
                return Ok::<(), PushError>(());
            }
            let blob = self
                .link
                .registry
                .blob(repository, &digest)
                .await?
                .read(None)
                .await?;
            let moved = self
                .link
                .metrics
                .sync_bytes_counter(crate::link::METRICS_LINK, berth_metrics::Direction::Up);
            let bytes = paced(&self.link.throttle, blob, bandwidth).inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    moved.inc_by(chunk.len() as u64);
                }
            });
            let body = reqwest::Body::wrap_stream(bytes);
            self.link
                .client
                .post_stream(
                    &format!("/v2/{repository}/blobs/uploads/?digest={digest}"),
                    body,
                )
                .await?;
            Ok::<(), PushError>(())
        });
        crate::link::transfer_all(transfers, concurrency).await?;
        let reference = tag.map_or_else(|| digest.to_string(), str::to_owned);
        self.link
            .client
            .put(
                &format!("/v2/{repository}/manifests/{reference}"),
                &local.media_type,
                local.content.clone(),
            )
            .await?;
        Ok(())
    }
}
