//! The state every handler shares, built once at start from parsed configuration.

use std::sync::Arc;

use berth_auth::Identity;
use berth_registry::Registry;

/// Shared, cheaply cloneable application state.
#[derive(Clone)]
pub struct AppState {
    /// The registry core.
    pub registry: Arc<Registry>,
    /// Identities and permissions.
    pub identity: Arc<Identity>,
    /// The URL clients reach the registry at (`https://registry.example.com`), for token
    /// challenges; `None` derives it from each request's `Host`.
    pub public_url: Option<String>,
}

impl AppState {
    /// State over a registry and its identities.
    pub fn new(registry: Arc<Registry>, identity: Arc<Identity>) -> Self {
        AppState {
            registry,
            identity,
            public_url: None,
        }
    }
}
