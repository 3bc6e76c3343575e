//! What a receiver gets: one JSON object per event, shaped like the commercial registry's
//! webhook payload (`id`, `timestamp`, `action`, `target`, `request`), plus `source`, which
//! names the connected registry an event happened on.
//!
//! ```json
//! {"id": "…", "timestamp": "2026-12-05T08:00:00Z", "action": "push",
//!  "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 524,
//!             "digest": "sha256:…", "length": 524, "repository": "hello-world", "tag": "v1"},
//!  "request": {"id": "…", "host": "registry.example", "method": "PUT", "useragent": ""},
//!  "source": {"host": "registry.example", "connectedRegistry": null}}
//! ```
//!
//! The change log does not record the request that made a change, so `request.id` is the
//! event's id and `useragent` is empty; `method` is `PUT` for a push, `DELETE` for a delete.

use berth_auth::webhook::{SiteEvent, WebhookAction};
use berth_registry::change::{Change, ChangeEvent};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    /// A manifest pushed, a tag set.
    Push,
    /// A manifest or tag deleted.
    Delete,
    /// A test call (`berth webhook ping`).
    Ping,
}

impl EventAction {
    /// The action's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Push => "push",
            EventAction::Delete => "delete",
            EventAction::Ping => "ping",
        }
    }

    /// The webhook action it is delivered for (`None`: a ping, delivered to its webhook
    /// whatever its actions).
    pub fn webhook_action(self) -> Option<WebhookAction> {
        match self {
            EventAction::Push => Some(WebhookAction::Push),
            EventAction::Delete => Some(WebhookAction::Delete),
            EventAction::Ping => None,
        }
    }
}

impl From<WebhookAction> for EventAction {
    fn from(action: WebhookAction) -> Self {
        match action {
            WebhookAction::Push => EventAction::Push,
            WebhookAction::Delete => EventAction::Delete,
        }
    }
}

/// One event, before it is written for a receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique, and the same each time the event is sent (receivers deduplicate on it).
    pub id: String,
    /// When it happened (Unix seconds).
    pub at: i64,
    /// What happened.
    pub action: EventAction,
    /// Repository.
    pub repository: Option<String>,
    /// Tag, when the change named one.
    pub tag: Option<String>,
    /// Manifest digest.
    pub digest: Option<String>,
    /// Manifest media type (pushes).
    pub media_type: Option<String>,
    /// Manifest size in bytes, when known.
    pub size: Option<u64>,
    /// The connected registry it happened on; `None`: this registry.
    pub source: Option<String>,
}

/// A stable id from what identifies an event: UUID-shaped hex of a SHA-256.
pub fn event_id(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let h = hex::encode(hash.finalize());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What a change of the log is to webhooks and notification patterns: a manifest stored or
/// a tag set is a push; a tag or a manifest deleted is a delete. A repository's removal is
/// none: its manifests' deletions, just before it in the log, were the events.
pub fn change_action(event: &ChangeEvent) -> Option<WebhookAction> {
    match event {
        ChangeEvent::ManifestPut { .. } | ChangeEvent::TagPut { .. } => Some(WebhookAction::Push),
        ChangeEvent::TagDelete { .. } | ChangeEvent::ManifestDelete { .. } => {
            Some(WebhookAction::Delete)
        }
        ChangeEvent::RepositoryDelete => None,
    }
}

impl Event {
    /// The event a change of this registry's log raises, if any: a tag set is a push with
    /// its tag; a manifest put a push without one (the caller drops it when a tag set of
    /// the same push follows); a tag or manifest deleted is a delete; a repository's
    /// removal none (see [`change_action`]).
    pub fn from_change(change: &Change, host: &str) -> Option<Event> {
        let action = EventAction::from(change_action(&change.event)?);
        let digest = change.event.digest()?.to_string();
        let tag = change.event.tag().map(|t| t.as_str().to_owned());
        Some(Event {
            id: event_id(&[
                host,
                "content",
                &change.seq.to_string(),
                &change.at.to_string(),
                change.repository.as_str(),
                change.event.action().as_str(),
                &digest,
                tag.as_deref().unwrap_or(""),
            ]),
            at: change.at,
            action,
            repository: Some(change.repository.as_str().to_owned()),
            tag,
            digest: Some(digest),
            media_type: change.event.media_type().map(str::to_owned),
            size: None,
            source: None,
        })
    }

    /// The event a connected registry relayed up.
    pub fn from_site(event: &SiteEvent) -> Event {
        Event {
            id: event_id(&["site", &event.registry, &event.id]),
            at: event.at,
            action: event.action.into(),
            repository: Some(event.repository.clone()),
            tag: event.tag.clone(),
            digest: Some(event.digest.clone()),
            media_type: event.media_type.clone(),
            size: event.size,
            source: Some(event.registry.clone()),
        }
    }

    /// A test event.
    pub fn ping(at: i64) -> Event {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            at,
            action: EventAction::Ping,
            repository: None,
            tag: None,
            digest: None,
            media_type: None,
            size: None,
            source: None,
        }
    }

    /// The body posted to a receiver; `host` is this registry's address.
    pub fn payload(&self, host: &str) -> Vec<u8> {
        let target = self.repository.as_ref().map(|repository| Target {
            media_type: self.media_type.clone(),
            size: self.size,
            digest: self.digest.clone(),
            length: self.size,
            repository: repository.clone(),
            tag: self.tag.clone(),
        });
        let payload = Payload {
            id: &self.id,
            timestamp: jiff::Timestamp::from_second(self.at)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            action: self.action.as_str(),
            target,
            request: Request {
                id: &self.id,
                host,
                method: match self.action {
                    EventAction::Push => "PUT",
                    EventAction::Delete => "DELETE",
                    EventAction::Ping => "POST",
                },
                useragent: "",
            },
            source: Source {
                host,
                connected_registry: self.source.as_deref(),
            },
        };
        serde_json::to_vec(&payload).expect("a payload serialises")
    }
}

/// Whether `change`, a manifest put, is announced by the tag set that follows it in `next`
/// (the same push, one transaction): a push is one event, the tag's.
pub fn superseded(change: &Change, next: Option<&Change>) -> bool {
    let ChangeEvent::ManifestPut { digest, .. } = &change.event else {
        return false;
    };
    next.is_some_and(|next| {
        next.seq == change.seq + 1
            && next.repository == change.repository
            && matches!(&next.event, ChangeEvent::TagPut { digest: d, .. } if d == digest)
    })
}

#[derive(Serialize)]
struct Payload<'a> {
    id: &'a str,
    timestamp: String,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<Target>,
    request: Request<'a>,
    source: Source<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
}

#[derive(Serialize)]
struct Request<'a> {
    id: &'a str,
    host: &'a str,
    method: &'static str,
    useragent: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Source<'a> {
    host: &'a str,
    connected_registry: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_registry::change::Origin;
    use serde_json::{Value, json};

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn change(seq: i64, event: ChangeEvent) -> Change {
        Change {
            seq,
            repository: berth_oci::RepositoryName::parse("hello-world", 255).unwrap(),
            event,
            at: 1_800_000_000,
            origin: Origin::Local,
        }
    }

    #[test]
    fn a_push_has_the_commercial_registry_shape() {
        let mut event = Event::from_change(
            &change(
                7,
                ChangeEvent::TagPut {
                    tag: berth_oci::Tag::parse("v1").unwrap(),
                    digest: D.parse().unwrap(),
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                },
            ),
            "registry.example",
        )
        .expect("a tag set is an event");
        event.size = Some(524);
        let body: Value = serde_json::from_slice(&event.payload("registry.example")).unwrap();
        assert_eq!(
            body,
            json!({
                "id": event.id,
                "timestamp": "2027-01-15T08:00:00Z",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": 524,
                    "digest": D,
                    "length": 524,
                    "repository": "hello-world",
                    "tag": "v1"
                },
                "request": {"id": event.id, "host": "registry.example", "method": "PUT", "useragent": ""},
                "source": {"host": "registry.example", "connectedRegistry": null}
            })
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let delete = change(
            8,
            ChangeEvent::ManifestDelete {
                digest: D.parse().unwrap(),
            },
        );
        let event = |c: &Change| Event::from_change(c, "h").expect("a deletion is an event");
        let a = event(&delete);
        assert_eq!(a.id, event(&delete).id, "resent: same id");
        assert_eq!(a.action, EventAction::Delete);
        assert_ne!(a.id, event(&change(9, delete.event.clone())).id);
        assert_ne!(Event::ping(1).id, Event::ping(1).id);
    }

    #[test]
    fn a_repository_s_removal_is_no_event_of_its_own() {
        // Its manifests' deletions, before it in the log, were the events.
        let removal = change(10, ChangeEvent::RepositoryDelete);
        assert_eq!(change_action(&removal.event), None);
        assert!(Event::from_change(&removal, "h").is_none());
    }

    #[test]
    fn a_site_event_names_its_source_and_a_ping_has_no_target() {
        let site = SiteEvent {
            seq: 3,
            registry: "factory".into(),
            id: "instance-12".into(),
            action: WebhookAction::Push,
            repository: "hello-world".into(),
            tag: Some("v1".into()),
            digest: D.into(),
            media_type: None,
            size: None,
            at: 1_800_000_000,
        };
        let body: Value =
            serde_json::from_slice(&Event::from_site(&site).payload("root.example")).unwrap();
        assert_eq!(body["source"]["connectedRegistry"], "factory");
        assert_eq!(body["target"]["repository"], "hello-world");
        let ping: Value = serde_json::from_slice(&Event::ping(1).payload("h")).unwrap();
        assert_eq!(ping["action"], "ping");
        assert!(ping.get("target").is_none());
    }
}
