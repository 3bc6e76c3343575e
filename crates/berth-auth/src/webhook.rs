//! Webhooks as stored: definitions, delivery records, and the events connected registries
//! relay up. The delivery itself (payloads, signatures, retries) is `berth-events`'.
//!
//! Webhooks live in the identity store beside tokens and scope maps, but apart from the
//! identity change log: they never flow down to connected registries. The secret is kept in
//! clear, because signing needs it (as the registry's own signing keys are).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Choice, IdentityError, NameKind};

/// What a webhook is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookAction {
    /// An image was pushed (a manifest stored, a tag set).
    Push,
    /// An image or a tag was deleted.
    Delete,
}

impl WebhookAction {
    /// The action's name, as in payloads and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookAction::Push => "push",
            WebhookAction::Delete => "delete",
        }
    }

    /// Parses `push` or `delete`, any case.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "push" => Ok(WebhookAction::Push),
            "delete" => Ok(WebhookAction::Delete),
            other => Err(IdentityError::UnknownChoice {
                setting: Choice::WebhookAction,
                value: other.to_owned(),
            }),
        }
    }
}

/// Whether a webhook is delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    /// Events are delivered.
    Enabled,
    /// Events are passed over (and never delivered later).
    Disabled,
}

impl WebhookStatus {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Enabled => "enabled",
            WebhookStatus::Disabled => "disabled",
        }
    }

    /// Parses `enabled` or `disabled`, any case.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "enabled" => Ok(WebhookStatus::Enabled),
            "disabled" => Ok(WebhookStatus::Disabled),
            other => Err(IdentityError::UnknownChoice {
                setting: Choice::WebhookStatus,
                value: other.to_owned(),
            }),
        }
    }
}

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its name (5-50 letters and digits).
    pub name: String,
    /// Where events are posted.
    pub uri: String,
    /// The actions it is told of.
    pub actions: Vec<WebhookAction>,
    /// `repository[:tag]` with `*` wildcards; `None`: every repository.
    pub scope: Option<String>,
    /// Extra headers sent with each call.
    pub headers: BTreeMap<String, String>,
    /// Enabled or disabled.
    pub status: WebhookStatus,
    /// The key of the `X-Berth-Signature` HMAC (generated, shown once at creation).
    pub secret: String,
    /// When it was created (Unix seconds).
    pub created_at: i64,
}

/// How a delivery ended, or that it is still being tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The receiver answered 2xx.
    Succeeded,
    /// Given up: a permanent refusal, or the last attempt failed.
    Failed,
    /// Failed so far; being retried.
    Retrying,
}

/// The record of one event sent to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The event's id (the payload's `id`).
    pub id: String,
    /// `push`, `delete` or `ping`.
    pub action: String,
    /// The event's repository, if any.
    #[serde(default)]
    pub repository: Option<String>,
    /// The event's tag, if any.
    #[serde(default)]
    pub tag: Option<String>,
    /// The event's digest, if any.
    #[serde(default)]
    pub digest: Option<String>,
    /// Where the event happened: `None` here, else the connected registry's name.
    #[serde(default)]
    pub source: Option<String>,
    /// How it ended.
    pub status: DeliveryStatus,
    /// The last answer's status code, if the receiver answered.
    pub response_code: Option<u16>,
    /// Why the last attempt failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
    /// How many calls were made.
    pub attempts: u32,
    /// When the last call was made (Unix seconds).
    pub at: i64,
}

/// An event a connected registry raised and relayed up, as the root keeps it until its
/// webhooks deliver it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteEvent {
    /// Its position in the store's log of relayed events (0 before it is stored).
    pub seq: i64,
    /// The connected registry it happened on.
    pub registry: String,
    /// Its id, unique across the tree: a resent event is stored once.
    pub id: String,
    /// `push` or `delete`.
    pub action: WebhookAction,
    /// Repository.
    pub repository: String,
    /// Tag, if the change named one.
    pub tag: Option<String>,
    /// Manifest digest.
    pub digest: String,
    /// Manifest media type, for pushes.
    pub media_type: Option<String>,
    /// Manifest size in bytes, when the site knew it.
    #[serde(default)]
    pub size: Option<u64>,
    /// When it happened on the site (Unix seconds).
    pub at: i64,
}

/// Checks a webhook name: 5-50 letters and digits (as the commercial registry's).
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    if (5..=50).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(IdentityError::InvalidName {
            kind: NameKind::Webhook,
            name: name.to_owned(),
        })
    }
}
