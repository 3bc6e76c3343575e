//! [`Webhooks`]: webhook definitions and the deliverer.
//!
//! Delivery follows two logs, each with a durable position per webhook in the identity
//! store: this registry's change log (`content`) and the events connected registries relayed
//! up (`sites`). A webhook's task takes the changes after its position, in order; each event
//! in scope is sent, retried with backoff until it is delivered, refused for good or out of
//! attempts, recorded, and only then the position moves past it. So a crash or restart at
//! any point sends the event again (at least once; the payload's `id` is the same, for
//! receivers to deduplicate), and nothing is skipped. Pushes never wait: the deliverer is a
//! background task woken by the notifier (`Topic::Content`, `Topic::Events`).
//!
//! A webhook's position starts at the logs' heads when it is created: it is told of what
//! happens from then on. A disabled webhook's position moves on without sending. Changes the
//! change log's retention pruned before a webhook got to them (a receiver down for longer
//! than the retention) are skipped with a warning.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use berth_auth::error::{Format, RequestProblem};
use berth_auth::webhook::{
    Delivery, DeliveryStatus, SiteEvent, Webhook, WebhookAction, WebhookStatus, validate_name,
};
use berth_auth::{IdentityError, IdentityStore};
use berth_notify::{Notifier, Topic};
use berth_oci::Reference;
use berth_oci::time::unix_now;
use berth_registry::Registry;
use berth_registry::change::Change;
use berth_registry::metadata::Exclusive;

use crate::delivery::{DeliveryOptions, Outcome, retry_delay, send};
use crate::pattern::Scope;
use crate::payload::{Event, change_action, superseded};

type Result<T> = std::result::Result<T, IdentityError>;

/// The log of this registry's content changes.
pub const CONTENT_LOG: &str = "content";
/// The log of events relayed up by connected registries.
pub const SITES_LOG: &str = "sites";
/// Changes read at once.
const BATCH: u32 = 100;
/// How long relayed events are kept after they arrived (every webhook has long finished
/// with them unless its receiver was down as long).
pub const SITE_EVENTS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A webhook to create.
#[derive(Debug, Clone, Default)]
pub struct NewWebhook {
    /// Its name.
    pub name: String,
    /// Where events are posted.
    pub uri: String,
    /// `push`, `delete`.
    pub actions: Vec<String>,
    /// `repository[:tag]`.
    pub scope: Option<String>,
    /// Custom headers.
    pub headers: BTreeMap<String, String>,
    /// `enabled` (default) or `disabled`.
    pub status: Option<String>,
}

/// Changes to a webhook; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    /// A new address.
    pub uri: Option<String>,
    /// New actions.
    pub actions: Option<Vec<String>>,
    /// A new scope; empty removes it.
    pub scope: Option<String>,
    /// New headers, replacing all.
    pub headers: Option<BTreeMap<String, String>>,
    /// A new status.
    pub status: Option<String>,
}

/// Webhooks of one registry: their definitions and their delivery.
pub struct Webhooks {
    store: Arc<dyn IdentityStore>,
    registry: Arc<Registry>,
    notifier: Arc<dyn Notifier>,
    /// Built at the first delivery or ping: building it loads and parses the system's CA
    /// bundle (most of a registry's start-up work and ~2 MiB), for nothing when no webhook
    /// is defined.
    client: OnceLock<reqwest::Client>,
    options: DeliveryOptions,
}

fn malformed(value: &str, format: Format) -> IdentityError {
    IdentityError::Malformed {
        value: value.to_owned(),
        format,
    }
}

fn check_uri(uri: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(uri)
        .map_err(|e| malformed(uri, Format::WebhookUri { why: e.to_string() }))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(malformed(uri, Format::WebhookAddress));
    }
    Ok(())
}

fn parse_actions(actions: &[String]) -> Result<Vec<WebhookAction>> {
    let mut parsed: Vec<WebhookAction> = actions
        .iter()
        .flat_map(|a| a.split(','))
        .filter(|a| !a.trim().is_empty())
        .map(WebhookAction::parse)
        .collect::<Result<_>>()?;
    parsed.sort();
    parsed.dedup();
    if parsed.is_empty() {
        return Err(RequestProblem::WebhookWithoutAction.into());
    }
    Ok(parsed)
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<()> {
    for (name, value) in headers {
        let ok_name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
        let ok_value = reqwest::header::HeaderValue::from_str(value).is_ok();
        if !ok_name || !ok_value {
            return Err(malformed(name, Format::WebhookHeader));
        }
        if name.eq_ignore_ascii_case(crate::signature::HEADER) {
            return Err(malformed(name, Format::WebhookHeaderOfBerth));
        }
    }
    Ok(())
}

fn check_scope(scope: Option<String>) -> Result<Option<String>> {
    match scope.filter(|s| !s.is_empty()) {
        Some(scope) => Scope::parse(&scope).map(|_| Some(scope)),
        None => Ok(None),
    }
}

impl Webhooks {
    /// Webhooks over the identity store, delivering this registry's changes.
    pub fn new(
        store: Arc<dyn IdentityStore>,
        registry: Arc<Registry>,
        options: DeliveryOptions,
    ) -> Arc<Self> {
        let notifier = Arc::clone(registry.notifier());
        Arc::new(Webhooks {
            store,
            registry,
            notifier,
            client: OnceLock::new(),
            options,
        })
    }

    /// The HTTP client every call to a receiver goes through.
    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            berth_tls::install_crypto_provider();
            reqwest::Client::builder()
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION"), " (webhook)"))
                .connect_timeout(self.options.timeout)
                // A receiver that redirects is refused (3xx): the signed body is not sent on.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("the webhook client builds")
        })
    }

    /// Every webhook, by name.
    pub async fn list(&self) -> Result<Vec<Webhook>> {
        self.store.webhooks().await
    }

    /// One webhook.
    pub async fn show(&self, name: &str) -> Result<Webhook> {
        self.list()
            .await?
            .into_iter()
            .find(|w| w.name == name)
            .ok_or_else(|| IdentityError::NotFound {
                kind: "webhook",
                name: name.to_owned(),
            })
    }

    /// Creates a webhook with a new secret (in the answer, to be shown once); it is told of
    /// what happens from now on.
    pub async fn create(&self, new: NewWebhook) -> Result<Webhook> {
        validate_name(&new.name)?;
        check_uri(&new.uri)?;
        check_headers(&new.headers)?;
        let webhook = Webhook {
            name: new.name,
            uri: new.uri,
            actions: parse_actions(&new.actions)?,
            scope: check_scope(new.scope)?,
            headers: new.headers,
            status: new
                .status
                .as_deref()
                .map(WebhookStatus::parse)
                .transpose()?
                .unwrap_or(WebhookStatus::Enabled),
            secret: crate::signature::generate_secret(),
            created_at: unix_now(),
        };
        let (_, content_head) = self
            .registry
            .change_bounds()
            .await
            .map_err(IdentityError::store)?;
        let sites_head = self.store.site_events_head().await?;
        self.store
            .create_webhook(
                &webhook,
                &[(CONTENT_LOG, content_head), (SITES_LOG, sites_head)],
            )
            .await?;
        self.notifier.notify(Topic::Events);
        Ok(webhook)
    }

    /// Changes a webhook.
    pub async fn update(&self, name: &str, update: WebhookUpdate) -> Result<Webhook> {
        let mut webhook = self.show(name).await?;
        if let Some(uri) = update.uri {
            check_uri(&uri)?;
            webhook.uri = uri;
        }
        if let Some(actions) = update.actions {
            webhook.actions = parse_actions(&actions)?;
        }
        if let Some(scope) = update.scope {
            webhook.scope = check_scope(Some(scope))?;
        }
        if let Some(headers) = update.headers {
            check_headers(&headers)?;
            webhook.headers = headers;
        }
        if let Some(status) = update.status {
            webhook.status = WebhookStatus::parse(&status)?;
        }
        self.store.update_webhook(&webhook).await?;
        self.notifier.notify(Topic::Events);
        Ok(webhook)
    }

    /// Deletes a webhook, its position and its delivery records.
    pub async fn delete(&self, name: &str) -> Result<()> {
        if !self.store.delete_webhook(name).await? {
            return Err(IdentityError::NotFound {
                kind: "webhook",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Sends a test event now, once, and records it.
    pub async fn ping(&self, name: &str) -> Result<Delivery> {
        let webhook = self.show(name).await?;
        let event = Event::ping(unix_now());
        let body = event.payload(&self.options.host);
        let outcome = send(self.client(), &webhook, body, self.options.timeout).await;
        let delivery = record(&event, &outcome, 1, true);
        self.store.put_delivery(name, &delivery).await?;
        Ok(delivery)
    }

    /// A webhook's most recent deliveries, newest first.
    pub async fn events(&self, name: &str, limit: u32) -> Result<Vec<Delivery>> {
        self.show(name).await?;
        self.store.deliveries(name, limit).await
    }

    /// Stores events a connected registry relayed up (an event already stored is kept
    /// once) and wakes the deliverer.
    pub async fn accept_site_events(&self, events: &[SiteEvent]) -> Result<()> {
        self.store.append_site_events(events).await?;
        self.notifier.notify(Topic::Events);
        Ok(())
    }

    /// Delivers, until the process ends: one task per webhook with work to do, started
    /// whenever a log grows or a definition changes. A task already running for a webhook
    /// is told to look again when it is done (`dirty`), so a wake-up that arrives while it
    /// finishes is never lost, and an idle registry wakes no task at all.
    ///
    /// Among nodes sharing one database, one delivers (`Exclusive::WebhookDelivery`); the
    /// others wait to take over if it stops.
    pub async fn run(self: Arc<Self>) {
        let _delivering = loop {
            match self
                .registry
                .try_exclusive(Exclusive::WebhookDelivery)
                .await
            {
                Ok(Some(guard)) => break guard,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot take the webhook deliverer's lock"),
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        };
        let mut content = self.notifier.subscribe(Topic::Content);
        let mut events = self.notifier.subscribe(Topic::Events);
        // Webhooks whose task runs, each with whether it must look again before it ends.
        let running: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
        let mut prune = tokio::time::interval(Duration::from_secs(3600));
        loop {
            content.mark_unchanged();
            events.mark_unchanged();
            match self.store.webhooks().await {
                Ok(webhooks) => {
                    for webhook in webhooks {
                        {
                            let mut running = running.lock().expect("not poisoned");
                            if let Some(dirty) = running.get_mut(&webhook.name) {
                                *dirty = true;
                                continue;
                            }
                            running.insert(webhook.name.clone(), false);
                        }
                        let (this, running) = (Arc::clone(&self), Arc::clone(&running));
                        tokio::spawn(async move { this.deliver_all(webhook, running).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the webhooks"),
            }
            tokio::select! {
                _ = content.changed() => {}
                _ = events.changed() => {}
                _ = prune.tick() => {
                    let before = unix_now() - SITE_EVENTS_KEPT.as_secs() as i64;
                    match self.store.prune_site_events(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "pruned events relayed by connected registries"),
                        Err(e) => tracing::warn!(error = %e, "cannot prune relayed events"),
                    }
                }
                // A definition changed by another process sharing the store.
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    }

    /// A webhook's task: drains its logs, again while it was woken meanwhile, then ends.
    async fn deliver_all(&self, mut webhook: Webhook, running: Arc<Mutex<HashMap<String, bool>>>) {
        let name = webhook.name.clone();
        loop {
            if let Err(e) = self.drain(webhook).await {
                tracing::warn!(webhook = %name, error = %e, "webhook delivery stopped; retrying later");
                // The main loop's next round (at most 30 s away) starts it again.
                running.lock().expect("not poisoned").remove(&name);
                return;
            }
            {
                let mut running = running.lock().expect("not poisoned");
                match running.get_mut(&name) {
                    Some(dirty) if *dirty => *dirty = false,
                    _ => {
                        running.remove(&name);
                        return;
                    }
                }
            }
            // Woken meanwhile: the definition may have changed too.
            match self.show(&name).await {
                Ok(current) => webhook = current,
                Err(_) => {
                    running.lock().expect("not poisoned").remove(&name);
                    return;
                }
            }
        }
    }

    /// Delivers everything after the webhook's positions, in order, until none is left.
    async fn drain(&self, webhook: Webhook) -> Result<()> {
        let scope = webhook.scope.as_deref().map(Scope::parse).transpose()?;
        let wanted = |event: &Event| {
            webhook.status == WebhookStatus::Enabled
                && event
                    .action
                    .webhook_action()
                    .is_some_and(|a| webhook.actions.contains(&a))
                && scope.as_ref().is_none_or(|s| {
                    s.matches(
                        event.repository.as_deref().unwrap_or(""),
                        event.tag.as_deref(),
                    )
                })
        };
        // This registry's changes.
        loop {
            let Some(mut position) = self
                .store
                .webhook_position(&webhook.name, CONTENT_LOG)
                .await?
            else {
                return Ok(()); // deleted meanwhile
            };
            let changes = self
                .registry
                .changes(position, BATCH + 1)
                .await
                .map_err(IdentityError::store)?;
            if changes.is_empty() {
                break;
            }
            if let Some(first) = changes.first()
                && first.seq > position + 1
                && position > 0
            {
                // A gap in the sequence is not always a prune: PostgreSQL leaves one for
                // every rolled-back insert. The log's oldest change tells them apart.
                let (oldest, _) = self
                    .registry
                    .change_bounds()
                    .await
                    .map_err(IdentityError::store)?;
                if let Some((from, to)) = pruned_before(position, oldest) {
                    tracing::warn!(
                        webhook = %webhook.name,
                        from,
                        to,
                        "changes were pruned from the change log before this webhook was told of them"
                    );
                }
            }
            let last = changes.len().min(BATCH as usize);
            // The position is saved after each delivered event, and for the changes passed
            // over only at the end of the batch: a crash in between looks at them again and
            // passes them over again, and a busy log costs no write per change.
            let saved = position;
            for (i, change) in changes[..last].iter().enumerate() {
                // A manifest put followed by a tag set of the same push is one event: the
                // tag's. (A push is one transaction, so the tag set is already in the log.)
                let next = changes.get(i + 1);
                position = change.seq;
                if superseded(change, next) {
                    continue;
                }
                let Some(mut event) = Event::from_change(change, &self.options.host) else {
                    continue;
                };
                if !wanted(&event) {
                    continue;
                }
                event.size = self.manifest_size(change).await;
                if !self.deliver(&webhook, &event).await? {
                    return Ok(());
                }
                self.store
                    .set_webhook_position(&webhook.name, CONTENT_LOG, position)
                    .await?;
            }
            if position != saved {
                self.store
                    .set_webhook_position(&webhook.name, CONTENT_LOG, position)
                    .await?;
            }
            if changes.len() <= BATCH as usize {
                break;
            }
        }
        // Events relayed by connected registries.
        loop {
            let Some(position) = self
                .store
                .webhook_position(&webhook.name, SITES_LOG)
                .await?
            else {
                return Ok(());
            };
            let events = self.store.site_events(position, BATCH).await?;
            if events.is_empty() {
                return Ok(());
            }
            for site in &events {
                let event = Event::from_site(site);
                if wanted(&event) && !self.deliver(&webhook, &event).await? {
                    return Ok(());
                }
                // Few, and each one selected by a site's patterns: saved one by one.
                self.store
                    .set_webhook_position(&webhook.name, SITES_LOG, site.seq)
                    .await?;
            }
        }
    }

    async fn manifest_size(&self, change: &Change) -> Option<u64> {
        if change_action(&change.event) != Some(WebhookAction::Push) {
            return None;
        }
        let reference = Reference::Digest(change.event.digest()?.clone());
        self.registry
            .manifest(&change.repository, &reference)
            .await
            .ok()
            .map(|m| m.content.len() as u64)
    }

    /// Sends one event until it is delivered, refused or out of attempts, recording each
    /// attempt. `false` when the webhook was deleted, disabled or changed meanwhile (its
    /// task ends without moving its position).
    async fn deliver(&self, webhook: &Webhook, event: &Event) -> Result<bool> {
        let body = event.payload(&self.options.host);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = send(self.client(), webhook, body.clone(), self.options.timeout).await;
            let last = attempt >= self.options.max_attempts.max(1);
            let delivery = record(event, &outcome, attempt, last);
            self.store.put_delivery(&webhook.name, &delivery).await?;
            match delivery.status {
                DeliveryStatus::Succeeded => return Ok(true),
                DeliveryStatus::Failed => {
                    tracing::warn!(
                        webhook = %webhook.name,
                        event = %event.id,
                        attempts = attempt,
                        code = ?delivery.response_code,
                        error = delivery.error.as_deref().unwrap_or(""),
                        "webhook event not delivered; giving up on it"
                    );
                    return Ok(true);
                }
                _ => {}
            }
            tokio::time::sleep(retry_delay(self.options.retry_delay, attempt)).await;
            // Changed while waiting: stop here without moving the position. Deleted or
            // disabled, the event waits (a re-enabled webhook resumes); changed otherwise
            // (a corrected address, new headers), the update's wake-up starts the
            // delivery again with the new definition.
            match self.show(&webhook.name).await {
                Ok(current) if current == *webhook => {}
                Ok(_) | Err(IdentityError::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The record of an event after `attempts` calls, the last with `outcome`.
fn record(event: &Event, outcome: &Outcome, attempts: u32, last: bool) -> Delivery {
    let (status, response_code, error) = match outcome {
        Outcome::Delivered(code) => (DeliveryStatus::Succeeded, Some(*code), None),
        Outcome::Retry { code, error } => (
            if last {
                DeliveryStatus::Failed
            } else {
                DeliveryStatus::Retrying
            },
            *code,
            Some(error.clone()),
        ),
        Outcome::Refused { code, error } => (DeliveryStatus::Failed, *code, Some(error.clone())),
    };
    Delivery {
        id: event.id.clone(),
        action: event.action.as_str().to_owned(),
        repository: event.repository.clone(),
        tag: event.tag.clone(),
        digest: event.digest.clone(),
        source: event.source.clone(),
        status,
        response_code,
        error,
        attempts,
        at: unix_now(),
    }
}

/// The changes after `position` that the log's retention removed before a reader got to
/// them (first and last sequence number), given the oldest change the log still holds;
/// `None` when every change after `position` is still there (a gap after it is then one the
/// database's sequence left, not a prune).
fn pruned_before(position: i64, oldest: i64) -> Option<(i64, i64)> {
    (position > 0 && oldest > position + 1).then_some((position + 1, oldest - 1))
}

#[cfg(test)]
mod tests {
    use super::pruned_before;

    #[test]
    fn only_changes_before_the_oldest_kept_were_pruned() {
        // The log holds 1..=5 and 7 (6 rolled back): nothing after 5 was pruned.
        assert_eq!(pruned_before(5, 1), None);
        // Pruned up to 8, the webhook at 5: 6 and 7 are gone (at most).
        assert_eq!(pruned_before(5, 8), Some((6, 7)));
        assert_eq!(pruned_before(5, 6), None, "the next change is kept");
        assert_eq!(
            pruned_before(0, 9),
            None,
            "a new webhook starts at the head"
        );
    }
}
