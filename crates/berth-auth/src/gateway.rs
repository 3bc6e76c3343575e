//! What flows down the hierarchy: the configuration document of a connected registry.
//!
//! The root computes, for connected registry `X`, a [`ConfigDocument`] holding `X`'s settings,
//! the tokens `X`'s instance must accept (its client tokens, and the sync tokens of its direct
//! children, so it can serve their gateway requests) with password *hashes* only, the scope
//! maps those tokens use, and the documents of `X`'s children, recursively. An instance keeps
//! the last document it received, so it serves and relays with it while its parent is down.
//!
//! Also here, free of HTTP: the [`Gateway`] seam, which answers a child's activation,
//! configuration polls and status reports (on the root, [`RootGateway`] from the
//! identities; on a connected registry, a relay to its own parent), and the [`long_poll`]
//! both answer configuration polls with. The HTTP routes over it live in `berth-server`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::action::RepositoryAction;
use crate::connected::{GcSettings, LogLevel, Mode, SyncSettings};
use crate::error::IdentityError;
use crate::hierarchy::Hierarchy;
use crate::identity::Identity;
use crate::records::Snapshot;
use crate::scope_map::ScopeMap;
use crate::store::Write;
use crate::token::Token;

/// A connected registry's settings, as its instance needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySettings {
    /// Name.
    pub name: String,
    /// Mode.
    pub mode: Mode,
    /// Parent (`None`: the root).
    pub parent: Option<String>,
    /// Repositories it syncs.
    pub repositories: Vec<String>,
    /// Schedule, window, TTL.
    pub sync: SyncSettings,
    /// Log level.
    pub log_level: LogLevel,
    /// Notification patterns.
    pub notifications: Vec<String>,
    /// Client tokens it accepts.
    pub client_tokens: Vec<String>,
    /// Its sync token.
    pub sync_token: String,
    /// Garbage collection on site.
    #[serde(default)]
    pub gc: GcSettings,
}

/// Everything an instance needs from its parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDocument {
    /// Its own settings.
    pub registry: RegistrySettings,
    /// Tokens it accepts: client tokens, and its children's sync tokens (hashes only).
    pub tokens: Vec<Token>,
    /// The scope maps of those tokens; for a ReadOnly registry, client scope maps hold only
    /// read actions.
    pub scope_maps: Vec<ScopeMap>,
    /// Its children's documents, for relaying.
    pub children: Vec<ConfigDocument>,
}

impl ConfigDocument {
    /// A short fingerprint of the document: equal documents, equal fingerprints.
    pub fn etag(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("documents serialise");
        hex::encode(&Sha256::digest(&bytes)[..12])
    }

    /// The document of `name`, here or among the descendants.
    pub fn find(&self, name: &str) -> Option<&ConfigDocument> {
        if self.registry.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

fn read_only(map: &ScopeMap) -> ScopeMap {
    let mut map = map.clone();
    for rule in &mut map.repositories {
        rule.actions.retain(|a| {
            matches!(
                a,
                RepositoryAction::ContentRead | RepositoryAction::MetadataRead
            )
        });
    }
    map.repositories.retain(|r| !r.actions.is_empty());
    map.gateways.clear();
    map
}

fn document(
    snapshot: &Snapshot,
    name: &str,
    depth: usize,
) -> Result<ConfigDocument, IdentityError> {
    let registry = snapshot
        .connected
        .get(name)
        .ok_or_else(|| IdentityError::NotFound {
            kind: "connected registry",
            name: name.into(),
        })?;
    let mut tokens = Vec::new();
    let mut scope_maps: BTreeMap<String, ScopeMap> = BTreeMap::new();
    for token_name in &registry.client_tokens {
        let Some(token) = snapshot.tokens.get(token_name) else {
            continue;
        };
        if let Some(map) = snapshot.scope_maps.get(&token.scope_map) {
            let map = if registry.mode == Mode::ReadOnly {
                read_only(map)
            } else {
                map.clone()
            };
            scope_maps.insert(map.name.clone(), map);
        }
        tokens.push(token.clone());
    }
    let children: Vec<&crate::connected::ConnectedRegistry> = snapshot
        .connected
        .values()
        .filter(|r| r.parent.as_deref() == Some(name))
        .collect();
    for child in &children {
        if let Some(token) = snapshot.tokens.get(&child.sync_token) {
            if let Some(map) = snapshot.scope_maps.get(&token.scope_map) {
                scope_maps.insert(map.name.clone(), map.clone());
            }
            tokens.push(token.clone());
        }
    }
    // A corrupted tree cannot recurse forever.
    let children = if depth > 64 {
        Vec::new()
    } else {
        children
            .iter()
            .map(|c| document(snapshot, &c.name, depth + 1))
            .collect::<Result<_, _>>()?
    };
    Ok(ConfigDocument {
        registry: RegistrySettings {
            name: registry.name.clone(),
            mode: registry.mode,
            parent: registry.parent.clone(),
            repositories: registry.repositories.clone(),
            sync: registry.sync.clone(),
            log_level: registry.log_level,
            notifications: registry.notifications.clone(),
            client_tokens: registry.client_tokens.clone(),
            sync_token: registry.sync_token.clone(),
            gc: registry.gc.clone(),
        },
        tokens,
        scope_maps: scope_maps.into_values().collect(),
        children,
    })
}

impl Hierarchy {
    /// The configuration document of connected registry `name` (on the root).
    pub fn config_document(&self, name: &str) -> Result<ConfigDocument, IdentityError> {
        document(&self.records.snapshot(), name, 0)
    }

    /// Makes this (instance's) identities exactly the tokens and scope maps of `document`,
    /// in one transaction: tokens and scope maps it no longer lists are removed.
    pub async fn apply_document(&self, document: &ConfigDocument) -> Result<(), IdentityError> {
        self.records
            .change(|snapshot| Ok((document_writes(snapshot, document), ())))
            .await
    }
}

/// What makes `snapshot`'s tokens and scope maps exactly those of `document`.
fn document_writes(snapshot: &Snapshot, document: &ConfigDocument) -> Vec<Write> {
    let mut writes = Vec::new();
    for name in snapshot
        .tokens
        .keys()
        .filter(|n| !document.tokens.iter().any(|t| &t.name == *n))
    {
        writes.push(Write::DeleteToken(name.clone()));
    }
    for map in snapshot
        .scope_maps
        .values()
        .filter(|m| !m.built_in && !document.scope_maps.iter().any(|d| d.name == m.name))
    {
        writes.push(Write::DeleteScopeMap(map.name.clone()));
    }
    for token in &document.tokens {
        if snapshot.tokens.get(&token.name) != Some(token) {
            writes.push(Write::PutToken(token.clone()));
        }
    }
    for map in &document.scope_maps {
        if snapshot.scope_maps.get(&map.name) != Some(map) {
            writes.push(Write::PutScopeMap(map.clone()));
        }
    }
    writes
}

/// An instance asking to become the active instance of its connected registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateRequest {
    /// The instance's identity, kept in its data directory.
    pub instance_id: String,
    /// Its Berth version.
    pub version: String,
    /// The address its local clients use.
    pub login_server: String,
}

/// An instance's periodic status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The reporting instance.
    pub instance_id: String,
    /// What it reports.
    pub status: crate::connected::InstanceStatus,
}

/// Events a connected registry raised from its notification patterns, sent up the tree to
/// the root, whose webhooks deliver them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsReport {
    /// The sending instance (of the registry the events happened on).
    pub instance_id: String,
    /// The events, oldest first; each `id` is unique, so resending is harmless.
    pub events: Vec<crate::webhook::SiteEvent>,
}

/// Why a gateway request failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A rule of the hierarchy (unknown registry, already activated, not active, ...).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// This registry is a relay and its own parent could not be reached.
    #[error("the parent registry is unreachable: {0}")]
    Unavailable(String),
}

/// Where gateway answers come from.
#[async_trait]
pub trait Gateway: Send + Sync + 'static {
    /// Activates an instance of `name`; answers its configuration document.
    async fn activate(
        &self,
        name: &str,
        request: ActivateRequest,
    ) -> Result<ConfigDocument, GatewayError>;
    /// The configuration document of `name` once it differs from `since`, or `None` if it did
    /// not change within `wait`. When `instance` is given, fails as soon as that instance is
    /// no longer the active one (where this gateway can tell: the root can, a relay leaves
    /// it to the status reports it forwards).
    async fn config(
        &self,
        name: &str,
        since: Option<&str>,
        instance: Option<&str>,
        wait: Duration,
    ) -> Result<Option<ConfigDocument>, GatewayError>;
    /// Records a status report of `name`'s instance.
    async fn status(&self, name: &str, report: StatusReport) -> Result<(), GatewayError>;
    /// Takes events raised on `name` (the root stores them for its webhooks; a relay
    /// passes them up, answering only once its parent took them).
    async fn events(&self, name: &str, report: EventsReport) -> Result<(), GatewayError>;
}

/// The long poll every [`Gateway::config`] answers with: `document()` as soon as its ETag
/// differs from `since`, re-read on each change `changes` announces, or `None` after `wait`.
pub async fn long_poll(
    mut changes: berth_notify::Subscription,
    since: Option<&str>,
    wait: Duration,
    document: impl Fn() -> Result<ConfigDocument, GatewayError>,
) -> Result<Option<ConfigDocument>, GatewayError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        changes.mark_unchanged();
        let document = document()?;
        if since != Some(document.etag().as_str()) {
            return Ok(Some(document));
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Ok(None);
        }
    }
}

/// The gateway of the root registry, where every connected registry is defined.
pub struct RootGateway(pub Arc<Identity>);

#[async_trait]
impl Gateway for RootGateway {
    async fn activate(
        &self,
        name: &str,
        request: ActivateRequest,
    ) -> Result<ConfigDocument, GatewayError> {
        let hierarchy = self.0.hierarchy();
        hierarchy
            .instances()
            .activate(name, &request.instance_id)
            .await?;
        let status = crate::connected::InstanceStatus {
            connection_state: "Online".into(),
            version: request.version,
            login_server: request.login_server,
            ..Default::default()
        };
        hierarchy
            .instances()
            .report(name, &request.instance_id, status)
            .await?;
        Ok(hierarchy.config_document(name)?)
    }

    async fn config(
        &self,
        name: &str,
        since: Option<&str>,
        instance: Option<&str>,
        wait: Duration,
    ) -> Result<Option<ConfigDocument>, GatewayError> {
        // Checked again on every change, so a deactivation ends the poll at once.
        let hierarchy = self.0.hierarchy();
        let instances = hierarchy.instances();
        long_poll(self.0.subscribe(), since, wait, || {
            if let Some(instance) = instance {
                instances.check_active(name, instance)?;
            }
            Ok(hierarchy.config_document(name)?)
        })
        .await
    }

    async fn status(&self, name: &str, report: StatusReport) -> Result<(), GatewayError> {
        Ok(self
            .0
            .hierarchy()
            .instances()
            .report(name, &report.instance_id, report.status)
            .await?)
    }

    async fn events(&self, name: &str, report: EventsReport) -> Result<(), GatewayError> {
        self.0
            .hierarchy()
            .instances()
            .check_active(name, &report.instance_id)?;
        // The registry is the one the sync token was authorised for, whatever the body says.
        let events: Vec<_> = report
            .events
            .into_iter()
            .map(|mut e| {
                e.registry = name.to_owned();
                e.id = format!("{name}/{}", e.id);
                e
            })
            .collect();
        self.0.store().append_site_events(&events).await?;
        self.0.notify(berth_notify::Topic::Events);
        Ok(())
    }
}
