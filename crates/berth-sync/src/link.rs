//! What both directions of content sync share on one link with the parent.

use std::sync::Arc;

use berth_registry::Registry;

use crate::client::ParentClient;
use crate::status::{Activity, Problems};
use crate::throttle::{LinkSettings, Throttle};

/// The link with the parent, as content sync uses it: the local registry, the parent's
/// client, the pacing and limits of the link, and where its activity and problems show.
#[derive(Clone)]
pub struct Link {
    /// The local registry.
    pub registry: Arc<Registry>,
    /// The parent, with the sync token.
    pub client: ParentClient,
    /// Paces every byte both directions move.
    pub throttle: Arc<Throttle>,
    /// The link's limits now (bandwidth, transfers at once, mode).
    pub limits: Arc<dyn Fn() -> LinkSettings + Send + Sync>,
    /// The instance's status details.
    pub problems: Arc<Problems>,
    /// Whether content is moving (`Syncing`).
    pub activity: Arc<Activity>,
    /// The process's metrics: this link's lag, backlog, bytes and retries.
    pub metrics: Arc<berth_metrics::Metrics>,
}

/// How this link is named in metrics (the parent's side names it `child/<name>`).
pub const METRICS_LINK: &str = "parent";
