//! Content sync, parent to child: the instance follows its parent's change log and makes its
//! own repositories hold what the parent's hold.
//!
//! The parent's gateway serves its change log (`messages`), limited to the repositories this
//! instance's sync token may pull. For each change the instance fetches, through the parent's
//! registry API and with the same token, what it lacks: a manifest and, depth first, every blob
//! and child manifest it references (only blobs the instance holds nowhere cross the link);
//! then it stores the manifest, moves the tag, or deletes, exactly as the change says.
//!
//! Invariants: every change is idempotent (storing a manifest or a tag it already has, or
//! deleting what is gone, changes nothing), and the position in the parent's log is saved
//! only after the changes before it were applied; so a sync cut at any moment resumes where
//! it stopped and applies each change exactly once in effect. What the instance stores goes
//! through its own registry, with every check of a push (digests, references), into its own
//! change log, which its own children follow in turn.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use berth_auth::gateway::RegistrySettings;
use berth_auth::scope_map::RepositoryPattern;
use berth_notify::Subscription;
use berth_oci::{Digest, Manifest, Reference, RepositoryName, Tag, media_type};
use berth_registry::{
    Change, ChangeEvent, ChangePage, Origin, Registry, RegistryError, RepositoryRemoval,
};
use futures_util::StreamExt;
use jiff::Timestamp;
use serde::Deserialize;

use crate::client::{LONG_POLL, LinkError};
use crate::link::Link;
use crate::position::Position;
use crate::retry::Retry;
use crate::schedule::{Gate, Schedule};
use crate::scope::SyncedRepositories;
use crate::transfers::Downloads;

/// Every manifest type the registry stores, for `Accept`.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json";

/// Why applying a change failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The parent could not be reached or answered an error.
    #[error("the parent: {0}")]
    Link(#[from] LinkError),
    /// The parent answered something unreadable.
    #[error("the parent: {0}")]
    Parent(String),
    /// The local registry refused or failed.
    #[error("the local registry: {0}")]
    Local(#[from] RegistryError),
    /// Saving the position failed.
    #[error("sync position: {0}")]
    Io(#[from] io::Error),
}

#[derive(Deserialize)]
struct Catalog {
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Vec<String>,
}

/// How one round of the loop ended.
enum Round {
    /// Changes were applied (`true`), or the poll brought none (`false`).
    Done(bool),
    /// The configuration changed, and with it maybe the schedule: look again.
    Interrupted,
}

async fn json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T, SyncError> {
    response
        .json()
        .await
        .map_err(|e| SyncError::Parent(format!("an unreadable answer: {e}")))
}

/// Follows the parent's change log into the local registry.
pub struct ContentSync {
    link: Link,
    name: String,
    position: Position,
    /// The repository patterns held whole (a pattern newly on the list is caught up first).
    synced: Arc<SyncedRepositories>,
    /// Blobs fetched from the parent, resumably.
    downloads: Downloads,
}

impl ContentSync {
    /// A follower for connected registry `name` over `link`, keeping its position, the
    /// patterns it holds whole (`synced`) and its transfers under way in `data_dir`.
    pub fn new(
        link: Link,
        name: String,
        data_dir: &std::path::Path,
        synced: Arc<SyncedRepositories>,
    ) -> Self {
        ContentSync {
            downloads: Downloads::new(link.clone(), data_dir),
            link,
            name,
            position: Position::new(data_dir, "sync-position"),
            synced,
        }
    }

    /// Runs until the parent gives a final answer (which it returns): waits for changes at the
    /// parent and applies them when the schedule allows (`settings` gives the registry's
    /// current settings), retrying with backoff while the parent is unreachable.
    /// `config_changes` announces each new configuration: a poll in flight is then dropped
    /// and the schedule looked at again, so a new schedule holds from that moment;
    /// `on_synced` is called after each applied batch and at the end of each run.
    pub async fn run(
        self,
        schedule: Schedule,
        settings: impl Fn() -> Option<RegistrySettings> + Send + Sync,
        mut config_changes: Subscription,
        on_synced: impl Fn() + Send + Sync,
    ) -> LinkError {
        self.downloads.forget_finished().await;
        let mut retry = Retry::new(
            "SYNC_FAILING",
            "content sync",
            Arc::clone(&self.link.problems),
        )
        .counted(Arc::clone(&self.link.metrics));
        loop {
            config_changes.mark_unchanged();
            let Some(current) = settings() else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let (wait, until) = match schedule.gate(&current.sync, Timestamp::now()) {
                Gate::Open => (LONG_POLL, None),
                Gate::OpenUntil(end) => (Duration::ZERO, Some(end)),
                Gate::ClosedUntil(next) => {
                    self.link.activity.set_scheduled_run(false);
                    let pause = Duration::try_from(next - Timestamp::now())
                        .unwrap_or_default()
                        .min(Duration::from_secs(30));
                    // Until the tick, or until the configuration (maybe the schedule) changes.
                    tokio::select! {
                        () = tokio::time::sleep(pause.max(Duration::from_millis(100))) => {}
                        _ = config_changes.changed() => {}
                    }
                    continue;
                }
            };
            self.link.activity.set_scheduled_run(until.is_some());
            let round = self
                .round(&current, wait, &schedule, &settings, &mut config_changes)
                .await;
            match round {
                Ok(Round::Interrupted) => {}
                Ok(Round::Done(applied)) => {
                    retry.succeeded();
                    self.downloads.abandon_unneeded().await;
                    if applied {
                        on_synced();
                    }
                    // A scheduled run ends when it caught up or its window closed; what is
                    // left goes on at the next tick.
                    if let Some(end) = until
                        && (!applied || Timestamp::now() >= end)
                    {
                        schedule.mark_run(Timestamp::now());
                        self.link.activity.set_scheduled_run(false);
                        on_synced();
                    }
                }
                Err(SyncError::Link(e)) if e.is_final() => return e,
                Err(e) => retry.failed(&e).await,
            }
        }
    }

    /// One round: repositories newly on the list caught up, then one poll (a long poll of
    /// `wait`, dropped if the configuration changes meanwhile) and the changes it brought,
    /// unless the schedule closed while it waited.
    async fn round(
        &self,
        current: &RegistrySettings,
        wait: Duration,
        schedule: &Schedule,
        settings: &(impl Fn() -> Option<RegistrySettings> + Send + Sync),
        config_changes: &mut Subscription,
    ) -> Result<Round, SyncError> {
        self.catch_up_added(&current.repositories).await?;
        let messages = tokio::select! {
            messages = self.poll(wait) => messages?,
            _ = config_changes.changed() => return Ok(Round::Interrupted),
        };
        if let Some(now) = settings()
            && matches!(
                schedule.gate(&now.sync, Timestamp::now()),
                Gate::ClosedUntil(_)
            )
        {
            return Ok(Round::Interrupted);
        }
        self.apply_messages(messages).await.map(Round::Done)
    }

    /// One poll (a long poll of `wait`) and the changes it brought. Returns whether anything
    /// was applied.
    pub async fn step(&self, wait: Duration) -> Result<bool, SyncError> {
        let messages = self.poll(wait).await?;
        self.apply_messages(messages).await
    }

    async fn poll(&self, wait: Duration) -> Result<ChangePage, SyncError> {
        let after = self.position.get();
        let path = format!(
            "/berth/gateway/v1/{}/messages?after={after}&wait={}",
            self.name,
            wait.as_secs()
        );
        json(self.link.client.get(&path, None).await?).await
    }

    async fn apply_messages(&self, messages: ChangePage) -> Result<bool, SyncError> {
        let after = self.position.get();
        if messages.expired {
            // Our position fell out of the parent's change log (older than its retention):
            // compare content instead, then follow the log from where it stands.
            let _moving = self.link.activity.moving();
            tracing::warn!(
                "the parent's change log no longer holds this registry's position; catching up by comparing content"
            );
            self.catch_up(None).await?;
            tracing::info!("caught up with the parent by comparing content");
            self.position.set(messages.last)?;
            return Ok(true);
        }
        let applied = !messages.events.is_empty();
        let _moving = applied.then(|| self.link.activity.moving());
        let metrics = &self.link.metrics;
        let link = crate::link::METRICS_LINK;
        for (i, change) in messages.events.iter().enumerate() {
            // What this page brought and is not applied yet, and how old the oldest is.
            let now = berth_oci::time::unix_now();
            metrics.sync_lag(
                link,
                (messages.events.len() - i) as u64,
                u64::try_from(now - change.at).unwrap_or(0),
            );
            self.apply(change).await?;
            // A position is never saved ahead of what was applied.
            self.position.set(change.seq)?;
        }
        if messages.last > after {
            self.position.set(messages.last)?;
        }
        metrics.sync_lag(link, 0, 0);
        metrics.sync_succeeded(link, berth_oci::time::unix_now());
        Ok(applied)
    }

    async fn apply(&self, change: &Change) -> Result<(), SyncError> {
        let registry = &self.link.registry;
        let repository = &change.repository;
        registry.admit_name(repository)?;
        tracing::debug!(seq = change.seq, repository = %repository, action = ?change.event.action(), "applying");
        match &change.event {
            ChangeEvent::ManifestPut { digest, .. } => {
                self.ensure_manifest(repository, digest).await?;
            }
            ChangeEvent::TagPut { tag, digest, .. } => {
                self.ensure_manifest(repository, digest).await?;
                self.tag_from_parent(repository, digest.clone(), tag.clone())
                    .await?;
            }
            ChangeEvent::TagDelete { tag, .. } => ignore_unknown(
                registry
                    .delete_manifest_from(Origin::Parent, repository, &Reference::Tag(tag.clone()))
                    .await,
            )?,
            ChangeEvent::ManifestDelete { digest } => ignore_unknown(
                registry
                    .delete_manifest_from(
                        Origin::Parent,
                        repository,
                        &Reference::Digest(digest.clone()),
                    )
                    .await,
            )?,
            // The parent removed the repository after deleting its manifests (the changes
            // just applied). Its copy here goes too, unless it holds manifests of this
            // registry's own (a ReadWrite registry's pushes since, on their way up).
            ChangeEvent::RepositoryDelete => {
                match registry
                    .remove_empty_repository(Origin::Parent, repository)
                    .await?
                {
                    RepositoryRemoval::Removed { .. } => {
                        tracing::info!(repository = %repository, "removed a repository the parent removed");
                    }
                    RepositoryRemoval::NotEmpty => {
                        tracing::info!(repository = %repository, "kept a repository the parent removed: it holds manifests pushed here");
                    }
                    RepositoryRemoval::Unknown => {}
                }
            }
        }
        Ok(())
    }

    /// Catches up, by comparison, the repository patterns on `list` that are not held whole
    /// yet (put on the list, or taken off and put back), then records `list` as held whole.
    async fn catch_up_added(&self, list: &[String]) -> Result<(), SyncError> {
        let Some(synced) = self.synced.get() else {
            // A new instance: its position in the parent's log covers everything.
            self.synced.set(list)?;
            return Ok(());
        };
        let added: Vec<&String> = list.iter().filter(|p| !synced.contains(p)).collect();
        if added.is_empty() {
            if synced.len() != list.len() {
                self.synced.set(list)?;
            }
            return Ok(());
        }
        let patterns: Vec<RepositoryPattern> = added
            .iter()
            .filter_map(|p| RepositoryPattern::parse(p).ok())
            .collect();
        let _moving = self.link.activity.moving();
        tracing::info!(repositories = ?added, "catching up repositories added to this registry's list");
        self.catch_up(Some(&patterns)).await?;
        tracing::info!(repositories = ?added, "caught up repositories added to this registry's list");
        self.synced.set(list)?;
        Ok(())
    }

    /// Brings the repositories the parent lets us pull (only those `only` covers, when
    /// given) to the parent's tags, by comparison: each tag's manifest is fetched if missing
    /// and the tag moved if it differs; on a ReadOnly mirror, tags the parent no longer has
    /// are removed, and so are repositories (a ReadWrite registry keeps its own, which it
    /// sends up).
    async fn catch_up(&self, only: Option<&[RepositoryPattern]>) -> Result<(), SyncError> {
        let at_parent = self.catch_up_with_parent(only).await?;
        if !(self.link.limits)().read_only {
            return Ok(());
        }
        let wanted = |name: &str| only.is_none_or(|p| p.iter().any(|p| p.matches(name)));
        delete_repositories(
            &self.link.registry,
            |name| wanted(name) && !at_parent.contains(name),
            "the parent no longer has",
        )
        .await?;
        Ok(())
    }

    /// The comparison of [`Self::catch_up`], repository by repository; returns the names
    /// of the repositories `only` covers that the parent has.
    async fn catch_up_with_parent(
        &self,
        only: Option<&[RepositoryPattern]>,
    ) -> Result<HashSet<String>, SyncError> {
        let wanted = |name: &str| only.is_none_or(|p| p.iter().any(|p| p.matches(name)));
        let mut at_parent = HashSet::new();
        // One repository needs no catalog; a prefix starts the catalog where it begins.
        let mut start: Option<String> = None;
        // Past the names of every prefix, nothing more is wanted (a prefix's names are
        // contiguous in lexical order; one prefix may hold another, "team/" and "team/a/").
        let mut ends: Vec<String> = Vec::new();
        if let Some(patterns) = only {
            let mut exact = Vec::new();
            let mut prefixes = Vec::new();
            for pattern in patterns {
                match pattern {
                    RepositoryPattern::Exact(name) => exact.push(name.clone()),
                    RepositoryPattern::Prefix(prefix) => prefixes.push(prefix.clone()),
                    RepositoryPattern::All => {
                        exact.clear();
                        prefixes.clear();
                        prefixes.push(String::new());
                        break;
                    }
                }
            }
            for name in &exact {
                if self.catch_up_repository(name).await? {
                    at_parent.insert(name.clone());
                }
            }
            match prefixes.iter().min() {
                None => return Ok(at_parent),
                Some(first) if !first.is_empty() => {
                    start = Some(first.clone());
                    ends = prefixes;
                }
                Some(_) => {}
            }
        }
        let mut last = start;
        loop {
            let path = match &last {
                None => "/v2/_catalog?n=500".to_owned(),
                Some(l) => format!("/v2/_catalog?n=500&last={l}"),
            };
            let catalog: Catalog = json(self.link.client.get(&path, None).await?).await?;
            for name in catalog.repositories.iter().filter(|n| wanted(n)) {
                // Exact names were caught up above.
                if only.is_some_and(|p| {
                    p.iter()
                        .any(|p| matches!(p, RepositoryPattern::Exact(e) if e == name))
                }) {
                    continue;
                }
                self.catch_up_repository(name).await?;
                at_parent.insert(name.clone());
            }
            let past_the_end = !ends.is_empty()
                && catalog
                    .repositories
                    .last()
                    .is_some_and(|n| past_every_prefix(n, &ends));
            if catalog.repositories.len() < 500 || past_the_end {
                return Ok(at_parent);
            }
            last = catalog.repositories.last().cloned();
        }
    }

    /// Brings one repository to the parent's tags; `false` if the parent has no such
    /// repository.
    async fn catch_up_repository(&self, name: &str) -> Result<bool, SyncError> {
        let registry = &self.link.registry;
        let repository = registry.repository_name(name)?;
        let (parent_tags, at_parent): (TagList, bool) = match self
            .link
            .client
            .get(&format!("/v2/{name}/tags/list"), None)
            .await
        {
            Ok(response) => (json(response).await?, true),
            // Nothing of it at the parent (yet).
            Err(LinkError::NotFound(_)) => (TagList { tags: Vec::new() }, false),
            Err(e) => return Err(e.into()),
        };
        for tag in &parent_tags.tags {
            let head = self
                .link
                .client
                .head(&format!("/v2/{name}/manifests/{tag}"), ACCEPT)
                .await?;
            let Some(digest) = head
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
            else {
                continue;
            };
            let digest = Registry::digest(digest)?;
            self.ensure_manifest(&repository, &digest).await?;
            let tag = Tag::parse(tag).map_err(RegistryError::TagInvalid)?;
            let current = registry
                .manifest(&repository, &Reference::Tag(tag.clone()))
                .await
                .ok()
                .map(|m| m.digest.clone());
            if current.as_ref() != Some(&digest) {
                self.tag_from_parent(&repository, digest, tag).await?;
            }
        }
        if (self.link.limits)().read_only
            && let Ok(local_tags) = registry.tags(&repository, None, u32::MAX - 1).await
        {
            for tag in local_tags.iter().filter(|t| !parent_tags.tags.contains(t)) {
                let tag = Tag::parse(tag).map_err(RegistryError::TagInvalid)?;
                ignore_unknown(
                    registry
                        .delete_manifest_from(Origin::Parent, &repository, &Reference::Tag(tag))
                        .await,
                )?;
            }
        }
        Ok(at_parent)
    }

    /// Makes sure the local repository holds manifest `digest` and everything it references.
    async fn ensure_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), SyncError> {
        let registry = &self.link.registry;
        // Depth-first over an index's children; an explicit stack keeps deep trees cheap.
        let mut pending = vec![(digest.clone(), false)];
        while let Some((digest, children_done)) = pending.pop() {
            match registry
                .manifest(repository, &Reference::Digest(digest.clone()))
                .await
            {
                Ok(_) => continue,
                Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let (content, content_type) = self.fetch_manifest(repository, &digest).await?;
            let manifest = Manifest::parse(&content, Some(&content_type))
                .map_err(RegistryError::ManifestInvalid)?;
            if !children_done {
                let missing_children: Vec<Digest> = manifest
                    .required_manifests()
                    .iter()
                    .map(|d| d.digest.clone())
                    .collect();
                if !missing_children.is_empty() {
                    pending.push((digest.clone(), true));
                    pending.extend(missing_children.into_iter().map(|d| (d, false)));
                    continue;
                }
            }
            // Blobs in parallel, as many at once as the link allows.
            let concurrency = (self.link.limits)().concurrency;
            let blobs = manifest
                .required_blobs()
                .map(|b| b.digest.clone())
                .collect::<Vec<_>>();
            crate::link::transfer_all(
                futures_util::stream::iter(blobs)
                    .map(|digest| async move { self.downloads.ensure(repository, &digest).await }),
                concurrency,
            )
            .await?;
            let media_type = manifest.media_type.clone();
            registry
                .put_manifest_from(
                    Origin::Parent,
                    repository,
                    &Reference::Digest(digest),
                    Some(&media_type),
                    content,
                    Vec::new(),
                )
                .await?;
        }
        Ok(())
    }

    async fn fetch_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<(bytes::Bytes, String), SyncError> {
        let response = self
            .link
            .client
            .get(
                &format!("/v2/{repository}/manifests/{digest}"),
                Some(ACCEPT),
            )
            .await?;
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(media_type::OCI_MANIFEST)
            .to_owned();
        let content = response
            .bytes()
            .await
            .map_err(|e| SyncError::Parent(e.to_string()))?;
        Ok((content, content_type))
    }

    /// Points `tag` at manifest `digest`, held here already, as the parent's change.
    async fn tag_from_parent(
        &self,
        repository: &RepositoryName,
        digest: Digest,
        tag: Tag,
    ) -> Result<(), SyncError> {
        let registry = &self.link.registry;
        let local = registry
            .manifest(repository, &Reference::Digest(digest.clone()))
            .await?;
        registry
            .put_manifest_from(
                Origin::Parent,
                repository,
                &Reference::Digest(digest),
                Some(&local.media_type),
                local.content.clone(),
                vec![tag],
            )
            .await?;
        Ok(())
    }
}

/// Deletes every local repository `doomed` names, content and name, as changes from the
/// parent (its children delete theirs in turn); `why` ends the line logged for each.
pub(crate) async fn delete_repositories(
    registry: &Registry,
    doomed: impl Fn(&str) -> bool,
    why: &str,
) -> Result<(), RegistryError> {
    let mut last: Option<String> = None;
    loop {
        let page = registry.catalog(last.as_deref(), 500).await?;
        for name in page.iter().filter(|n| doomed(n)) {
            let repository = registry.repository_name(name)?;
            match registry
                .repositories()
                .delete(Origin::Parent, &repository)
                .await
            {
                Ok(deleted) => {
                    tracing::info!(repository = %name, manifests = deleted.manifests, "deleted a repository {why}");
                }
                // Gone meanwhile.
                Err(RegistryError::NameUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if page.len() < 500 {
            return Ok(());
        }
        last = page.last().cloned();
    }
}

/// Whether `name` comes, in lexical order, after every name that starts with one of
/// `prefixes` (a prefix's names are contiguous; one prefix may hold another).
fn past_every_prefix(name: &str, prefixes: &[String]) -> bool {
    prefixes
        .iter()
        .all(|p| name > p.as_str() && !name.starts_with(p.as_str()))
}

fn ignore_unknown(result: Result<(), RegistryError>) -> Result<(), SyncError> {
    match result {
        Ok(()) | Err(RegistryError::ManifestUnknown(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::past_every_prefix;

    #[test]
    fn the_catalog_walk_ends_past_every_prefix_even_nested_ones() {
        let prefixes = ["team/".to_owned(), "team/a/".to_owned()];
        // "team/b" is past "team/a/"'s names, not past "team/"'s: "team/z" is still to come.
        assert!(!past_every_prefix("team/b", &prefixes));
        assert!(!past_every_prefix("team/a/x", &prefixes));
        assert!(!past_every_prefix("alpha", &prefixes));
        assert!(past_every_prefix("teams", &prefixes));
        assert!(past_every_prefix("zeta", &prefixes));
    }
}
