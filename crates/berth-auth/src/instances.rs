//! [`Instances`]: which instance holds each connected registry, as the root sees it:
//! activation (one live instance per registry, refused to an instance that was
//! deactivated), the check that a caller is the active instance, its status reports, and
//! deactivation, which hands the registry over to a replacement.
//!
//! Part of the control plane ([`crate::hierarchy::Hierarchy::instances`]): of a registry it
//! changes only who holds it (`activation`, `deactivated`, through the records) and its
//! status (through `Statuses`; a new activation starts without one).

use std::sync::Arc;

use berth_oci::time::unix_now;

use crate::connected::{self, Activation, ConnectedRegistry, InstanceStatus};
use crate::error::IdentityError;
use crate::hierarchy::defined;
use crate::records::Records;
use crate::statuses::Statuses;
use crate::store::Write;

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// Refuses `instance_id` if it was deactivated from `registry`: it never comes back.
fn never_again(registry: &ConnectedRegistry, instance_id: &str) -> Result<()> {
    if registry
        .deactivated
        .iter()
        .any(|d| d.instance_id == instance_id)
    {
        return Err(IdentityError::InstanceDeactivated {
            registry: registry.name.clone(),
            instance: instance_id.to_owned(),
        });
    }
    Ok(())
}

/// The instances of connected registries: activation, the active-instance check, status
/// reports, deactivation.
pub struct Instances {
    records: Arc<Records>,
    statuses: Arc<Statuses>,
}

impl Instances {
    pub(crate) fn new(records: Arc<Records>, statuses: Arc<Statuses>) -> Self {
        Instances { records, statuses }
    }

    /// Records an activation by `instance_id`; refuses a second live instance, and an
    /// instance that was deactivated.
    pub async fn activate(&self, name: &str, instance_id: &str) -> Result<ConnectedRegistry> {
        let holder = std::sync::Mutex::new(None);
        let result = self
            .records
            .change(|snapshot| {
                let mut registry = defined(snapshot, name)?.clone();
                never_again(&registry, instance_id)?;
                match &registry.activation {
                    Some(a) if a.instance_id != instance_id => {
                        *holder.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(a.instance_id.clone());
                        Err(IdentityError::AlreadyActivated {
                            registry: name.to_owned(),
                        })
                    }
                    Some(_) => Ok((Vec::new(), registry)),
                    None => {
                        registry.activation = Some(Activation {
                            instance_id: instance_id.to_owned(),
                            activated_at: unix_now(),
                        });
                        registry.status = None;
                        Ok((
                            vec![Write::PutConnectedRegistry(Box::new(registry.clone()))],
                            registry,
                        ))
                    }
                }
            })
            .await;
        if let Some(holder) = holder.into_inner().unwrap_or_else(|e| e.into_inner()) {
            let description = format!(
                "instance `{instance_id}` was refused: instance `{holder}` holds this connected registry"
            );
            self.statuses
                .record_event(name, "ALREADY_ACTIVATED", &description)
                .await?;
        }
        result
    }

    /// Checks that `instance_id` is the active instance of `name`.
    pub fn check_active(&self, name: &str, instance_id: &str) -> Result<()> {
        let snapshot = self.records.snapshot();
        let registry = defined(&snapshot, name)?;
        if registry
            .activation
            .as_ref()
            .is_some_and(|a| a.instance_id == instance_id)
        {
            return Ok(());
        }
        never_again(registry, instance_id)?;
        Err(IdentityError::InstanceNotActive {
            registry: name.to_owned(),
            instance: instance_id.to_owned(),
        })
    }

    /// Records a status report of the active instance. The problems the root saw for the
    /// registry become past: it is online again.
    pub async fn report(
        &self,
        name: &str,
        instance_id: &str,
        status: InstanceStatus,
    ) -> Result<()> {
        self.check_active(name, instance_id)?;
        self.statuses.report(name, status).await
    }

    /// Forgets the active instance, so a replacement can activate. The instance is
    /// remembered as deactivated: it learns it on its next call and stops, and it can never
    /// activate again (a new instance identity can).
    pub async fn deactivate(&self, name: &str) -> Result<ConnectedRegistry> {
        let registry = self
            .records
            .change(|snapshot| {
                let mut registry = defined(snapshot, name)?.clone();
                if let Some(active) = registry.activation.take() {
                    registry.deactivated.push(connected::Deactivation {
                        instance_id: active.instance_id,
                        deactivated_at: unix_now(),
                    });
                    let excess = registry
                        .deactivated
                        .len()
                        .saturating_sub(connected::DEACTIVATIONS_KEPT);
                    registry.deactivated.drain(..excess);
                }
                Ok((
                    vec![Write::PutConnectedRegistry(Box::new(registry.clone()))],
                    registry,
                ))
            })
            .await?;
        self.statuses.forget(name).await?;
        self.statuses.with_status(registry).await
    }
}
