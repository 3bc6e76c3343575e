//! [`Statuses`]: what connected registries' instances report, and the problems the root saw
//! for them, kept in the identity store so every process sharing it shows the same.
//!
//! Reports arrive every few seconds from every instance. A report is written when it says
//! something new (its state or details changed) or when the stored one is a few seconds
//! old, so the store sees a write per registry every [`REWRITE_AFTER_SECS`] at most while
//! nothing changes, and the `Offline` rule (no report for
//! [`crate::hierarchy::OFFLINE_AFTER_SECS`]) still holds from what is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::time::unix_now;

use crate::connected::{ConnectedRegistry, InstanceStatus, order_details};
use crate::error::IdentityError;
use crate::store::IdentityStore;

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// An unchanged report is written again once the stored one is this old.
pub const REWRITE_AFTER_SECS: i64 = 5;

/// Status reports and root-side problems of connected registries.
pub(crate) struct Statuses {
    store: Arc<dyn IdentityStore>,
    /// What this process last wrote for each registry: skip writing the same again.
    written: Mutex<HashMap<String, InstanceStatus>>,
}

/// A report without its arrival time, to tell whether it says anything new.
fn content(status: &InstanceStatus) -> InstanceStatus {
    InstanceStatus {
        reported_at: 0,
        ..status.clone()
    }
}

impl Statuses {
    pub(crate) fn new(store: Arc<dyn IdentityStore>) -> Self {
        Statuses {
            store,
            written: Mutex::default(),
        }
    }

    /// Records a report of `registry`'s active instance; the problems the root saw for it
    /// become past: it is online again.
    pub(crate) async fn report(&self, registry: &str, mut status: InstanceStatus) -> Result<()> {
        status.reported_at = unix_now();
        let fresh = {
            let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            written.get(registry).is_some_and(|last| {
                content(last) == content(&status)
                    && status.reported_at - last.reported_at < REWRITE_AFTER_SECS
            })
        };
        if fresh {
            return Ok(());
        }
        self.store.put_status(registry, &status).await?;
        self.store
            .resolve_events(registry, status.reported_at)
            .await?;
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registry.to_owned(), status);
        Ok(())
    }

    /// Records a problem the root saw for `registry`: current until its active instance
    /// reports again (or it is deactivated).
    pub(crate) async fn record_event(
        &self,
        registry: &str,
        code: &str,
        description: &str,
    ) -> Result<()> {
        self.store
            .put_event(registry, code, description, unix_now())
            .await?;
        // The next report must be written, to end it.
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(registry);
        Ok(())
    }

    /// Forgets `registry`'s report, and ends its problems (deactivated).
    pub(crate) async fn forget(&self, registry: &str) -> Result<()> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(registry);
        self.store.delete_status(registry).await?;
        self.store.resolve_events(registry, unix_now()).await
    }

    /// Forgets everything of `registry` (deleted).
    pub(crate) async fn delete(&self, registry: &str) -> Result<()> {
        self.forget(registry).await?;
        self.store.delete_events(registry).await
    }

    /// `registry` with its stored report and the problems the root saw merged in: current
    /// ones first, then past ones, most recently ended first.
    pub(crate) async fn with_status(
        &self,
        mut registry: ConnectedRegistry,
    ) -> Result<ConnectedRegistry> {
        let status = self.store.status(&registry.name).await?;
        let events = self.store.events(&registry.name).await?;
        registry.status = self.merge(status, events);
        Ok(registry)
    }

    /// Every registry of `registries` with its status, in one read of the reports.
    pub(crate) async fn with_statuses(
        &self,
        registries: Vec<ConnectedRegistry>,
    ) -> Result<Vec<ConnectedRegistry>> {
        let mut reports: HashMap<String, InstanceStatus> =
            self.store.statuses().await?.into_iter().collect();
        let mut out = Vec::with_capacity(registries.len());
        for mut registry in registries {
            let events = self.store.events(&registry.name).await?;
            registry.status = self.merge(reports.remove(&registry.name), events);
            out.push(registry);
        }
        Ok(out)
    }

    fn merge(
        &self,
        status: Option<InstanceStatus>,
        events: Vec<crate::connected::StatusDetail>,
    ) -> Option<InstanceStatus> {
        if events.is_empty() {
            return status;
        }
        let mut status = status.unwrap_or_default();
        status.details.extend(events);
        order_details(&mut status.details);
        Some(status)
    }
}
