//! `/berth/v1/webhooks`: webhooks, HTTP endpoints told of pushes and deletions, their test
//! calls (`ping`) and the record of their deliveries (`events`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

wire_enum! {
    /// What a webhook is told of.
    pub enum WebhookAction {
        /// A manifest pushed or a tag set.
        Push = "push",
        /// A manifest or a tag deleted.
        Delete = "delete",
    }
}

wire_enum! {
    /// Whether a webhook is delivered to.
    pub enum WebhookStatus {
        /// Events are delivered.
        Enabled = "enabled",
        /// Events are passed over, never delivered later.
        Disabled = "disabled",
    }
}

wire_enum! {
    /// How a delivery ended, or that it is still being tried.
    pub enum DeliveryStatus {
        /// The receiver answered 2xx.
        Succeeded = "succeeded",
        /// Given up: a permanent refusal, or the last attempt failed.
        Failed = "failed",
        /// Failed so far; being retried.
        Retrying = "retrying",
    }
}

/// A webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookView {
    /// Its name.
    pub name: String,
    /// Where events are posted.
    pub uri: String,
    /// The actions it is told of.
    pub actions: Vec<WebhookAction>,
    /// `repository[:tag]` with `*` wildcards; `null`: every repository.
    pub scope: Option<String>,
    /// The names of the custom headers sent with each call (their values are not shown: they
    /// often hold credentials).
    pub headers: Vec<String>,
    /// Enabled or disabled.
    pub status: WebhookStatus,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// The signing secret: only in the answer to its creation, `null` afterwards.
    #[serde(default)]
    pub secret: Option<String>,
}

/// The body of `POST /berth/v1/webhooks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookCreate {
    /// 5 to 50 letters and digits.
    pub name: String,
    /// `http://` or `https://` address events are posted to.
    pub uri: String,
    /// `push`, `delete`.
    pub actions: Vec<String>,
    /// `repository[:tag]` with `*` wildcards; left out, every repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Custom headers sent with each call.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `enabled` (the default) or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The body of `PATCH /berth/v1/webhooks/{name}`: fields left out stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    /// A new address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// New actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
    /// A new scope; the empty string removes it (every repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// New custom headers, replacing every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// `enabled` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// One event sent (or being sent) to a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEventView {
    /// The event's id (the payload's `id`).
    pub id: String,
    /// `push`, `delete` or `ping`.
    pub action: String,
    /// The event's repository.
    pub repository: Option<String>,
    /// The event's tag.
    pub tag: Option<String>,
    /// The event's manifest digest.
    pub digest: Option<String>,
    /// The connected registry the event happened on; `null`: this registry.
    pub source: Option<String>,
    /// How it ended.
    pub status: DeliveryStatus,
    /// The receiver's last status code; `null` if it never answered.
    pub response_code: Option<u16>,
    /// Why the last call failed; `null` if it did not.
    pub error: Option<String>,
    /// How many calls were made.
    pub attempts: u32,
    /// When the last call was made (RFC 3339).
    pub at: String,
}

/// The query of `GET /berth/v1/webhooks/{name}/events`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookEventsQuery {
    /// The most events, newest first: 1 to 1000, 100 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}
