//! Starts what the audit log and webhooks run in the background of `berth serve`: the
//! webhook deliverer (with the configured timeouts and retries) and the audit log's pruner.

use std::sync::Arc;
use std::time::Duration;

use berth_auth::IdentityStore;
use berth_events::{DeliveryOptions, Webhooks};
use berth_oci::time::unix_now;
use berth_registry::{Exclusive, Registry};
use berth_server::AppState;

use crate::events_config::EventsConfig;

/// Replaces `state`'s webhooks with ones delivering as configured, starts their deliverer
/// and the audit log's pruner. `host` is the registry's address as payloads name it.
pub fn start(state: &mut AppState, config: &EventsConfig, host: String) {
    let options = DeliveryOptions {
        timeout: config.webhook_timeout,
        max_attempts: config.webhook_max_attempts,
        retry_delay: config.webhook_retry_delay,
        host,
    };
    let store = Arc::clone(state.identity.store());
    state.webhooks = Webhooks::new(Arc::clone(&store), Arc::clone(&state.registry), options);
    tokio::spawn(Arc::clone(&state.webhooks).run());
    spawn_audit_pruner(store, Arc::clone(&state.registry), config.audit_retention);
}

/// Forgets audit entries older than the retention, every hour (or every half retention,
/// when that is shorter). One node of a cluster prunes at a time; the others skip the turn.
fn spawn_audit_pruner(store: Arc<dyn IdentityStore>, registry: Arc<Registry>, retention: Duration) {
    let period = (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let Some(_pruning) = registry
                .turn(Exclusive::AuditPruning, "prune the audit log")
                .await
            else {
                continue;
            };
            let before = unix_now() - retention.as_secs() as i64;
            match store.prune_audit(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "pruned the audit log"),
                Err(e) => tracing::warn!(error = %e, "could not prune the audit log"),
            }
        }
    });
}
