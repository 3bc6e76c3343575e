//! Events: webhooks told of pushes and deletions, and the notification patterns that
//! select which of a connected registry's local changes are raised as events. A client of
//! the receivers (reqwest); no HTTP server.
//!
//! Layout:
//! - [`pattern`]: a webhook's scope (`repository[:tag]`) and a connected registry's
//!   notification patterns (`repository[:tag][@digest]:push|delete`), `*` wildcards;
//! - [`payload`]: the JSON posted to a receiver, shaped like the commercial registry's
//!   webhook payload, and the [`Event`] it is made from;
//! - [`signature`]: `X-Berth-Signature: sha256=<hex HMAC-SHA256 of the body>`;
//! - [`delivery`]: one call, its outcome (success, retry, permanent failure) and the backoff
//!   between attempts;
//! - [`webhooks`]: [`Webhooks`], the entry point: definitions (create, update, delete,
//!   ping, delivery records) and the background deliverer that follows the change log and
//!   the events relayed by connected registries, with a durable position per webhook.
//!
//! Who calls it: `berth-server` (the management API, and the gateway route where connected
//! registries relay their events), `berth-sync` (a site raising events from its patterns)
//! and the binary, which starts the deliverer.

pub mod delivery;
pub mod pattern;
pub mod payload;
pub mod signature;
pub mod webhooks;

pub use delivery::DeliveryOptions;
pub use pattern::{NotificationPattern, Scope};
pub use payload::Event;
pub use webhooks::{NewWebhook, WebhookUpdate, Webhooks};
