//! The state every handler shares, built once at start from parsed configuration.

use std::sync::Arc;

use berth_registry::Registry;

/// Shared, cheaply cloneable application state.
#[derive(Clone)]
pub struct AppState {
    /// The registry core.
    pub registry: Arc<Registry>,
}

impl AppState {
    /// State over a registry.
    pub fn new(registry: Arc<Registry>) -> Self {
        AppState { registry }
    }
}
