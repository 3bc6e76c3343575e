//! The state every handler shares, built once at start from parsed configuration.

use std::sync::Arc;

use berth_auth::Identity;
use berth_registry::Registry;

use crate::network::NetworkConfig;
use berth_auth::gateway::{Gateway, RootGateway};

/// Shared, cheaply cloneable application state.
#[derive(Clone)]
pub struct AppState {
    /// The registry core.
    pub registry: Arc<Registry>,
    /// Identities and permissions.
    pub identity: Arc<Identity>,
    /// The URL clients reach the registry at (`https://registry.example.com`), for token
    /// challenges; `None` derives it from each request's `Host`.
    pub public_url: Option<Arc<str>>,
    /// Where gateway answers come from: the root's identities, or a relay to the parent.
    pub gateway: Arc<dyn Gateway>,
    /// Set on a ReadOnly connected registry: every push and delete is refused with this.
    /// (Shared with the instance, which learns its mode from its parent.)
    pub read_only: Arc<std::sync::RwLock<Option<String>>>,
    /// Listeners, trusted proxies and the data endpoint, as configured at start.
    pub network: Arc<NetworkConfig>,
    /// Turns `true` when the registry starts shutting down: long polls answer at once.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Set on a connected registry: its identities come from its parent, so the management
    /// API refuses to change them here.
    pub site: Option<Arc<Site>>,
    /// How garbage collections started through the management API run (grace, retention).
    pub gc: Arc<berth_registry::gc::GcOptions>,
    /// Import jobs: images this registry copies from other registries.
    pub imports: Arc<berth_import::Imports>,
    /// Webhooks: their definitions, test calls and delivery records (the deliverer runs
    /// apart, started by the binary).
    pub webhooks: Arc<berth_events::Webhooks>,
    /// The process's metrics (login failures, garbage collection, sync links, …).
    pub metrics: Arc<berth_metrics::Metrics>,
    /// What `/readyz` checks beyond the stores (listeners bound, configuration loaded).
    pub readiness: Arc<crate::observe::Readiness>,
}

/// What a connected registry's management API says of where it is managed.
#[derive(Debug, Clone)]
pub struct Site {
    /// This connected registry's name.
    pub registry: String,
    /// Its parent's address.
    pub parent: String,
}

impl AppState {
    /// State over a registry and its identities.
    pub fn new(registry: Arc<Registry>, identity: Arc<Identity>) -> Self {
        let gateway = Arc::new(RootGateway(Arc::clone(&identity)));
        let imports = Arc::new(berth_import::Imports::new(
            Arc::clone(&registry),
            berth_import::ImportLimits::default(),
        ));
        let webhooks = berth_events::Webhooks::new(
            Arc::clone(identity.store()),
            Arc::clone(&registry),
            berth_events::DeliveryOptions::default(),
        );
        AppState {
            webhooks,
            registry,
            identity,
            public_url: None,
            gateway,
            read_only: Arc::default(),
            network: Arc::default(),
            stopping: tokio::sync::watch::channel(false).1,
            site: None,
            gc: Arc::default(),
            imports,
            metrics: Arc::default(),
            readiness: Arc::default(),
        }
    }
}
