//! The child side of the hierarchy: a connected registry's instance.
//!
//! Layout:
//! - [`connection`]: the connection string an instance is deployed with;
//! - [`client`]: the HTTP client of the parent's gateway (activate, config long poll, status);
//! - [`content`]: content sync from the parent's change log into the local registry;
//! - [`upstream`]: for ReadWrite registries, local changes sent up to the parent;
//! - [`events`]: local changes the notification patterns select, raised as events and sent
//!   up (`EVENTS_FAILING` while that fails);
//! - [`schedule`]: when content may move (continuous, or cron ticks with a window);
//! - [`throttle`]: the per-link bandwidth limit;
//! - [`position`]: a durable position in a change log;
//! - [`scope`]: which repository patterns content sync holds whole (a pattern newly on the
//!   list is caught up by comparison first);
//! - [`transfers`]: blob transfers cut part way, kept on disk so they resume after a restart;
//! - [`link`]: what both directions share on the link (registry, client, pacing, status);
//! - [`retry`]: how the loops with the parent (activation, the configuration poll, both
//!   directions, events) wait and report while the parent fails them;
//! - [`status`]: what the instance reports: activity (`Syncing`) and current and past
//!   problems;
//! - [`retirement`]: an instance its root deactivated, or whose registry it deleted, stops
//!   and does not start again;
//! - [`instance`]: [`Instance`], which activates, follows its configuration, reports its
//!   status, keeps the last configuration on disk, and relays for its own children.
//!
//! An instance never needs a route to anything but its parent: its children talk to its own
//! gateway, which serves their configuration from the document it received and forwards
//! their activations, reports and events up.

pub mod client;
pub mod connection;
pub mod content;
pub mod events;
pub mod instance;
pub mod link;
pub mod position;
pub mod retirement;
pub mod retry;
pub mod schedule;
pub mod scope;
pub mod status;
pub mod throttle;
pub mod transfers;
pub mod upstream;

pub use connection::{ConnectionString, ConnectionStringError};
pub use instance::{Instance, InstanceError};
