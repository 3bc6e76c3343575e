//! [`Hierarchy`], the connected-registry control plane: on the root, connected registries as
//! resources (creation with their sync token and sync scope map, updates, client tokens,
//! permissions through the hierarchy, deletion, connection strings), their status, their
//! instances (activation, status reports, deactivation: [`Instances`], `instances.rs`), and
//! the configuration documents that flow down (`gateway.rs`); on an instance, the document
//! applied to its identities.
//!
//! Invariant: every sync scope map is *derived*: it holds the registry's own repositories
//! (with its mode's actions) and those of all its descendants, plus the four gateway actions
//! on itself and each descendant. It is recomputed, in the same transaction, after every
//! change that could alter it, so content and messages can always be relayed down the tree.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_oci::time::unix_now;

use crate::action::{GatewayAction, RepositoryAction};
use crate::connected::{
    self, ConnectedRegistry, LogLevel, Mode, SettingsChange, SyncSettings, pattern_within,
    sync_rules, validate_notification,
};
use crate::error::{Choice, HierarchyRule, IdentityError, ParentAddress, RequestProblem};
use crate::instances::Instances;
use crate::management::{GeneratedPassword, fill_slot};
use crate::records::{Records, Snapshot};
use crate::scope_map::{GatewayRule, RepositoryPattern, ScopeMap};
use crate::statuses::Statuses;
use crate::store::IdentityStore;
use crate::store::Write;
use crate::token::{Slot, Token, TokenStatus};

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// An instance that has not reported for this long is shown `Offline`.
pub const OFFLINE_AFTER_SECS: i64 = 15;

/// A connected registry to create.
#[derive(Debug, Clone, Default)]
pub struct NewConnectedRegistry {
    /// Name.
    pub name: String,
    /// Mode (default ReadOnly).
    pub mode: Mode,
    /// Parent connected registry; `None` for the root.
    pub parent: Option<String>,
    /// Repositories to sync; or empty with `sync_token` set.
    pub repositories: Vec<String>,
    /// An existing token to use as the sync token (its scope map's repositories are synced).
    pub sync_token: Option<String>,
    /// Client tokens the instance accepts.
    pub client_tokens: Vec<String>,
    /// Schedule, window, TTL.
    pub sync: SyncSettings,
    /// Log level.
    pub log_level: LogLevel,
    /// Notification patterns.
    pub notifications: Vec<String>,
    /// Garbage collection on site.
    pub gc: connected::GcSettings,
}

/// Changes to a connected registry, parsed.
#[derive(Debug, Clone, Default)]
pub struct ConnectedRegistryUpdate {
    /// Client tokens to add.
    pub add_client_tokens: Vec<String>,
    /// Client tokens to remove.
    pub remove_client_tokens: Vec<String>,
    /// Notification patterns to add.
    pub add_notifications: Vec<String>,
    /// Notification patterns to remove.
    pub remove_notifications: Vec<String>,
    /// New sync settings, log level and garbage collection.
    pub settings: SettingsChange,
}

/// Whether an instance is activated, and how it is connected, as the root sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ConnectionState {
    /// Reporting: all well.
    Online,
    /// Reporting: a sync is running.
    Syncing,
    /// Reporting: something is wrong (see the status details).
    Unhealthy,
    /// Not reporting (never activated, deactivated, or silent for too long).
    Offline,
}

/// The connection state of `registry` at `now`.
pub fn connection_state(registry: &ConnectedRegistry, now: i64) -> ConnectionState {
    match (&registry.activation, &registry.status) {
        (Some(_), Some(status)) if now - status.reported_at <= OFFLINE_AFTER_SECS => {
            match status.connection_state.as_str() {
                "Syncing" => ConnectionState::Syncing,
                "Unhealthy" => ConnectionState::Unhealthy,
                _ => ConnectionState::Online,
            }
        }
        _ => ConnectionState::Offline,
    }
}

/// What `delete` left behind, to remove by hand.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Leftovers {
    /// Tokens left.
    pub tokens: Vec<String>,
    /// Scope maps left.
    pub scope_maps: Vec<String>,
}

fn not_found(name: &str) -> IdentityError {
    IdentityError::NotFound {
        kind: "connected registry",
        name: name.into(),
    }
}

/// Connected registry `name` as `snapshot` defines it.
pub(crate) fn defined<'a>(snapshot: &'a Snapshot, name: &str) -> Result<&'a ConnectedRegistry> {
    snapshot.connected.get(name).ok_or_else(|| not_found(name))
}

/// Ancestors of `name`, nearest first.
fn ancestors(snapshot: &Snapshot, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = snapshot.connected.get(name).and_then(|r| r.parent.clone());
    while let Some(parent) = current {
        if out.contains(&parent) {
            break; // Never loops on a corrupted tree.
        }
        current = snapshot
            .connected
            .get(&parent)
            .and_then(|r| r.parent.clone());
        out.push(parent);
    }
    out
}

/// Descendants of `name` in `registries`, in breadth-first order.
fn descendants<'a>(
    registries: impl Iterator<Item = &'a ConnectedRegistry> + Clone,
    name: &str,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut frontier = vec![name.to_owned()];
    while let Some(current) = frontier.pop() {
        for child in registries
            .clone()
            .filter(|r| r.parent.as_deref() == Some(current.as_str()))
        {
            if !out.contains(&child.name) {
                out.push(child.name.clone());
                frontier.push(child.name.clone());
            }
        }
    }
    out
}

/// Rebuilds the sync scope maps of `affected` registries from `registries`, the tree as it
/// will be after a change. Only the changed registries and their ancestors can need it, so
/// the work stays proportional to the change, not to the size of the hierarchy.
fn derived_sync_maps(
    snapshot: &Snapshot,
    registries: &std::collections::BTreeMap<String, ConnectedRegistry>,
    affected: &BTreeSet<String>,
) -> Vec<Write> {
    let mut children: std::collections::HashMap<&str, Vec<&ConnectedRegistry>> =
        std::collections::HashMap::new();
    for registry in registries.values() {
        if let Some(parent) = &registry.parent {
            children.entry(parent.as_str()).or_default().push(registry);
        }
    }
    let mut writes = Vec::new();
    for registry in affected.iter().filter_map(|name| registries.get(name)) {
        let Some(token) = snapshot.tokens.get(&registry.sync_token) else {
            continue;
        };
        let mut subtree = vec![registry];
        let mut next = 0;
        while next < subtree.len() && subtree.len() <= registries.len() {
            subtree.extend(
                children
                    .get(subtree[next].name.as_str())
                    .into_iter()
                    .flatten(),
            );
            next += 1;
        }
        let repositories: Vec<_> = subtree
            .iter()
            .flat_map(|r| sync_rules(&r.repositories, r.mode))
            .collect();
        let gateways: Vec<GatewayRule> = subtree
            .iter()
            .map(|r| GatewayRule {
                connected_registry: r.name.clone(),
                actions: GatewayAction::ALL.into_iter().collect(),
            })
            .collect();
        let created_at = snapshot
            .scope_maps
            .get(&token.scope_map)
            .map_or_else(unix_now, |m| m.created_at);
        let mut map = ScopeMap {
            name: token.scope_map.clone(),
            description: format!("Sync scope map of connected registry {}", registry.name),
            repositories: Vec::new(),
            gateways: Vec::new(),
            built_in: false,
            created_at,
        };
        if map.set_rules(&repositories, &gateways).is_ok()
            && snapshot.scope_maps.get(&map.name) != Some(&map)
        {
            writes.push(Write::PutScopeMap(map));
        }
    }
    writes
}

/// The connected-registry control plane.
pub struct Hierarchy {
    pub(crate) records: Arc<Records>,
    /// Instances' status reports and the problems the root saw, in the store.
    statuses: Arc<Statuses>,
    /// Activation, the active-instance check, status reports, deactivation.
    instances: Instances,
}

impl Hierarchy {
    pub(crate) fn new(records: Arc<Records>, store: Arc<dyn IdentityStore>) -> Self {
        let statuses = Arc::new(Statuses::new(store));
        Hierarchy {
            instances: Instances::new(Arc::clone(&records), Arc::clone(&statuses)),
            records,
            statuses,
        }
    }

    /// The registries' instances: activation, the active-instance check, status reports,
    /// deactivation.
    pub fn instances(&self) -> &Instances {
        &self.instances
    }

    /// Every connected registry, with its last status report.
    pub async fn connected_registries(&self) -> Result<Vec<ConnectedRegistry>> {
        self.statuses.with_statuses(self.definitions()).await
    }

    /// Every connected registry as defined, without its status (no store read).
    pub fn definitions(&self) -> Vec<ConnectedRegistry> {
        self.records
            .snapshot()
            .connected
            .values()
            .cloned()
            .collect()
    }

    /// One connected registry, with its last status report.
    pub async fn connected_registry(&self, name: &str) -> Result<ConnectedRegistry> {
        let registry = defined(&self.records.snapshot(), name)?.clone();
        self.statuses.with_status(registry).await
    }

    /// Connected registries under `parent` (the root when `None`): direct children only with
    /// `no_children`, else all descendants.
    pub async fn list_connected_registries(
        &self,
        parent: Option<&str>,
        no_children: bool,
    ) -> Result<Vec<ConnectedRegistry>> {
        let snapshot = self.records.snapshot();
        if let Some(p) = parent
            && !snapshot.connected.contains_key(p)
        {
            return Err(not_found(p));
        }
        let names: Vec<String> = match (parent, no_children) {
            (None, false) => snapshot.connected.keys().cloned().collect(),
            (p, true) => snapshot
                .connected
                .values()
                .filter(|r| r.parent.as_deref() == p)
                .map(|r| r.name.clone())
                .collect(),
            (Some(p), false) => descendants(snapshot.connected.values(), p),
        };
        let registries = names
            .iter()
            .filter_map(|n| snapshot.connected.get(n).cloned())
            .collect();
        let mut out = self.statuses.with_statuses(registries).await?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates a connected registry, its sync token (without passwords: `get-settings`
    /// generates one) and its sync scope map, and widens every ancestor's sync scope map.
    pub async fn create_connected_registry(
        &self,
        new: NewConnectedRegistry,
    ) -> Result<ConnectedRegistry> {
        connected::validate_name(&new.name)?;
        new.sync.validate()?;
        for pattern in &new.notifications {
            validate_notification(pattern)?;
        }
        self.records
            .change(|snapshot| {
                if snapshot.connected.contains_key(&new.name) {
                    return Err(IdentityError::AlreadyExists {
                        kind: "connected registry",
                        name: new.name.clone(),
                        hint: " in the hierarchy",
                    });
                }
                let parent = match &new.parent {
                    Some(p) => Some(
                        snapshot
                            .connected
                            .get(p)
                            .ok_or_else(|| not_found(p))?
                            .clone(),
                    ),
                    None => None,
                };
                if let Some(parent) = &parent
                    && parent.mode == Mode::ReadOnly
                    && new.mode == Mode::ReadWrite
                {
                    return Err(HierarchyRule::ReadWriteUnderReadOnly {
                        parent: parent.name.clone(),
                    }
                    .into());
                }
                let mut writes = Vec::new();
                let (sync_token, repositories) =
                    match (&new.sync_token, new.repositories.is_empty()) {
                        (Some(_), false) => {
                            return Err(RequestProblem::RepositoriesAndSyncToken.into());
                        }
                        (None, true) => {
                            return Err(RequestProblem::NoRepositories.into());
                        }
                        (Some(token), true) => {
                            let existing = snapshot.tokens.get(token).ok_or_else(|| {
                                IdentityError::NotFound {
                                    kind: "token",
                                    name: token.clone(),
                                }
                            })?;
                            if snapshot.connected.values().any(|r| &r.sync_token == token) {
                                return Err(IdentityError::InUse {
                                    kind: "token",
                                    name: token.clone(),
                                    reason:
                                        "is already the sync token of another connected registry"
                                            .into(),
                                });
                            }
                            let repositories = snapshot
                                .scope_maps
                                .get(&existing.scope_map)
                                .map(|m| {
                                    m.repositories
                                        .iter()
                                        .map(|r| r.repository.clone())
                                        .collect()
                                })
                                .unwrap_or_default();
                            (token.clone(), repositories)
                        }
                        (None, false) => {
                            let token_name = connected::sync_token_name(&new.name);
                            let map_name = connected::sync_scope_map_name(&new.name);
                            if snapshot.tokens.contains_key(&token_name) {
                                return Err(IdentityError::AlreadyExists {
                                    kind: "token",
                                    name: token_name,
                                    hint: "; delete it, or pass it as the sync token",
                                });
                            }
                            if snapshot.scope_maps.contains_key(&map_name) {
                                return Err(IdentityError::AlreadyExists {
                                    kind: "scope map",
                                    name: map_name,
                                    hint: "; delete it first",
                                });
                            }
                            let now = unix_now();
                            // Created empty here; the derivation below fills it.
                            writes.push(Write::PutScopeMap(ScopeMap {
                                name: map_name.clone(),
                                description: String::new(),
                                repositories: Vec::new(),
                                gateways: Vec::new(),
                                built_in: false,
                                created_at: now,
                            }));
                            let token = Token {
                                name: token_name.clone(),
                                scope_map: map_name,
                                status: TokenStatus::Enabled,
                                password1: None,
                                password2: None,
                                created_at: now,
                            };
                            writes.push(Write::PutToken(token));
                            (token_name, new.repositories.clone())
                        }
                    };
                let mut repositories = repositories;
                repositories.sort();
                repositories.dedup();
                check_repositories(parent.as_ref(), &repositories)?;
                check_client_tokens(snapshot, new.mode, &new.client_tokens)?;
                let registry = ConnectedRegistry {
                    name: new.name.clone(),
                    mode: new.mode,
                    parent: new.parent.clone(),
                    sync_token,
                    repositories,
                    client_tokens: dedup(new.client_tokens.clone()),
                    sync: new.sync.clone(),
                    log_level: new.log_level,
                    notifications: dedup(new.notifications.clone()),
                    created_at: unix_now(),
                    gc: new.gc.clone(),
                    activation: None,
                    deactivated: Vec::new(),
                    status: None,
                };
                writes.push(Write::PutConnectedRegistry(Box::new(registry.clone())));
                Ok((with_derived_maps(snapshot, writes)?, registry))
            })
            .await
    }

    /// Changes a connected registry's client tokens, schedule, window, TTL, log level or
    /// notification patterns.
    pub async fn update_connected_registry(
        &self,
        name: &str,
        update: ConnectedRegistryUpdate,
    ) -> Result<ConnectedRegistry> {
        for pattern in &update.add_notifications {
            validate_notification(pattern)?;
        }
        self.records
            .change(|snapshot| {
                let mut registry = defined(snapshot, name)?.clone();
                check_client_tokens(snapshot, registry.mode, &update.add_client_tokens)?;
                registry
                    .client_tokens
                    .extend(update.add_client_tokens.iter().cloned());
                registry
                    .client_tokens
                    .retain(|t| !update.remove_client_tokens.contains(t));
                registry.client_tokens = dedup(registry.client_tokens);
                registry.gc.apply(&update.settings.gc);
                registry.sync.apply(&update.settings.sync)?;
                if let Some(level) = update.settings.log_level {
                    registry.log_level = level;
                }
                registry
                    .notifications
                    .extend(update.add_notifications.iter().cloned());
                registry
                    .notifications
                    .retain(|n| !update.remove_notifications.contains(n));
                registry.notifications = dedup(registry.notifications);
                Ok((
                    vec![Write::PutConnectedRegistry(Box::new(registry.clone()))],
                    registry,
                ))
            })
            .await
    }

    /// Deletes a connected registry that has no children, and narrows its ancestors' sync
    /// scope maps. With `cleanup`, its sync token and sync scope map go too; without, returns
    /// them as what is left to remove by hand.
    pub async fn delete_connected_registry(&self, name: &str, cleanup: bool) -> Result<Leftovers> {
        let leftovers = self
            .records
            .change(|snapshot| {
                let registry = defined(snapshot, name)?.clone();
                let children: Vec<String> = snapshot
                    .connected
                    .values()
                    .filter(|r| r.parent.as_deref() == Some(name))
                    .map(|r| r.name.clone())
                    .collect();
                if !children.is_empty() {
                    return Err(IdentityError::InUse {
                        kind: "connected registry",
                        name: name.to_owned(),
                        reason: format!(
                            "has children ({}); delete them first",
                            children.join(", ")
                        ),
                    });
                }
                let scope_map = snapshot
                    .tokens
                    .get(&registry.sync_token)
                    .map(|t| t.scope_map.clone());
                let mut writes = vec![Write::DeleteConnectedRegistry(name.to_owned())];
                let mut leftovers = Leftovers::default();
                if cleanup {
                    writes.push(Write::DeleteToken(registry.sync_token.clone()));
                    writes.extend(scope_map.map(Write::DeleteScopeMap));
                } else {
                    // The ancestors are narrowed either way: the leftovers are the registry's own token
                    // and scope map, not rights the rest of the tree should keep.
                    leftovers.tokens.push(registry.sync_token.clone());
                    leftovers.scope_maps.extend(scope_map);
                }
                Ok((with_derived_maps(snapshot, writes)?, leftovers))
            })
            .await?;
        self.statuses.delete(name).await?;
        Ok(leftovers)
    }

    /// Adds repositories to a connected registry and all its ancestors; removes repositories
    /// from it and all its descendants. Sync scope maps follow.
    pub async fn update_connected_permissions(
        &self,
        name: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<ConnectedRegistry> {
        for repository in add.iter().chain(remove) {
            RepositoryPattern::parse(repository)?;
        }
        self.records
            .change(|snapshot| {
                if !snapshot.connected.contains_key(name) {
                    return Err(not_found(name));
                }
                let mut writes = Vec::new();
                let mut up = vec![name.to_owned()];
                up.extend(ancestors(snapshot, name));
                for target in &up {
                    let mut r = snapshot.connected[target].clone();
                    r.repositories.extend(add.iter().cloned());
                    if target == name {
                        r.repositories.retain(|x| !remove.contains(x));
                    }
                    r.repositories = dedup(r.repositories);
                    writes.push(Write::PutConnectedRegistry(Box::new(r)));
                }
                for target in descendants(snapshot.connected.values(), name) {
                    let mut r = snapshot.connected[&target].clone();
                    r.repositories.retain(|x| !remove.contains(x));
                    writes.push(Write::PutConnectedRegistry(Box::new(r)));
                }
                Ok((with_derived_maps(snapshot, writes)?, ()))
            })
            .await?;
        self.connected_registry(name).await
    }

    /// The connection string for an instance, optionally with a new sync-token password in
    /// `slot` (shown once). The parent's address is `parent_endpoint` when the caller names
    /// it; otherwise `root_endpoint`, the root's address, for a child of the root, and for a
    /// nested child its parent instance's reported login server, refused (before any
    /// password is generated) while that instance has reported none: a connection string
    /// always names a `host[:port]` an instance can start with. `root_data_endpoint`, the
    /// root's data endpoint when it is on, is named as `ParentDataEndpoint` for a child of
    /// the root: its instance follows blob redirects there, and nowhere else.
    pub async fn connection_string(
        &self,
        name: &str,
        protocol: &str,
        parent_endpoint: Option<&str>,
        root_endpoint: &str,
        root_data_endpoint: Option<&str>,
        generate: Option<Slot>,
    ) -> Result<(String, Option<GeneratedPassword>)> {
        if !matches!(protocol, "http" | "https") {
            return Err(IdentityError::UnknownChoice {
                setting: Choice::ParentProtocol,
                value: protocol.to_owned(),
            });
        }
        let registry = self.connected_registry(name).await?;
        let endpoint = match (parent_endpoint, &registry.parent) {
            (Some(endpoint), _) => {
                connected::validate_endpoint("parent gateway endpoint", endpoint)?;
                endpoint.to_owned()
            }
            (None, None) => {
                berth_oci::endpoint::check(root_endpoint).map_err(|why| {
                    IdentityError::NoParentAddress(ParentAddress::RootUnusable {
                        address: root_endpoint.to_owned(),
                        why: why.to_string(),
                    })
                })?;
                root_endpoint.to_owned()
            }
            (None, Some(parent)) => {
                let parent = self.connected_registry(parent).await?;
                let reported = parent
                    .status
                    .as_ref()
                    .map(|s| s.login_server.clone())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        IdentityError::NoParentAddress(ParentAddress::NotReported {
                            parent: parent.name.clone(),
                            child: name.to_owned(),
                        })
                    })?;
                berth_oci::endpoint::check(&reported).map_err(|why| {
                    IdentityError::NoParentAddress(ParentAddress::ReportedUnusable {
                        parent: parent.name.clone(),
                        address: reported.clone(),
                        why: why.to_string(),
                    })
                })?;
                reported
            }
        };
        let generated = match generate {
            Some(slot) => Some(
                self.records
                    .change(|snapshot| {
                        let mut token = snapshot
                            .tokens
                            .get(&registry.sync_token)
                            .cloned()
                            .ok_or_else(|| IdentityError::NotFound {
                                kind: "token",
                                name: registry.sync_token.clone(),
                            })?;
                        let password = fill_slot(&mut token, slot, unix_now(), None);
                        Ok((vec![Write::PutToken(token)], password))
                    })
                    .await?,
            ),
            None => None,
        };
        let password = generated.as_ref().map_or_else(
            || "<run get-settings with --generate-password 1 or 2 to get one>".to_owned(),
            |p| p.value.clone(),
        );
        let mut text = format!(
            "ConnectedRegistryName={};SyncTokenName={};SyncTokenPassword={password};ParentGatewayEndpoint={endpoint};ParentEndpointProtocol={protocol}",
            registry.name, registry.sync_token
        );
        if let (None, Some(data)) = (&registry.parent, root_data_endpoint) {
            text.push_str(&format!(";ParentDataEndpoint={data}"));
        }
        Ok((text, generated))
    }

    /// Whether `token` is the sync token of some connected registry (and which).
    pub fn sync_token_owner(&self, token: &str) -> Option<String> {
        self.records
            .snapshot()
            .connected
            .values()
            .find(|r| r.sync_token == token)
            .map(|r| r.name.clone())
    }
}

/// Checks that `tokens` may be client tokens of a registry in `mode`: ordinary tokens (not
/// sync tokens), read-only ones for a ReadOnly registry.
pub(crate) fn check_client_tokens(
    snapshot: &Snapshot,
    mode: Mode,
    tokens: &[String],
) -> Result<()> {
    for name in tokens {
        let token = snapshot
            .tokens
            .get(name)
            .ok_or_else(|| IdentityError::NotFound {
                kind: "token",
                name: name.clone(),
            })?;
        if snapshot.connected.values().any(|r| &r.sync_token == name) {
            return Err(HierarchyRule::SyncTokenAsClientToken {
                token: name.clone(),
            }
            .into());
        }
        if mode == Mode::ReadOnly {
            let map = snapshot.scope_maps.get(&token.scope_map);
            let writes: Vec<String> = map
                .iter()
                .flat_map(|m| m.repositories.iter())
                .flat_map(|r| {
                    r.actions
                        .iter()
                        .filter(|a| {
                            !matches!(
                                a,
                                RepositoryAction::ContentRead | RepositoryAction::MetadataRead
                            )
                        })
                        .map(move |a| format!("{}/{a}", r.repository))
                })
                .collect();
            if !writes.is_empty() {
                return Err(HierarchyRule::WritingClientToken {
                    token: name.clone(),
                    scope_map: token.scope_map.clone(),
                    grants: writes,
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Checks that `repositories` are patterns, within the parent's when there is one.
fn check_repositories(parent: Option<&ConnectedRegistry>, repositories: &[String]) -> Result<()> {
    for repository in repositories {
        let pattern = RepositoryPattern::parse(repository)?;
        if let Some(parent) = parent {
            let covered = parent
                .repositories
                .iter()
                .filter_map(|r| RepositoryPattern::parse(r).ok())
                .any(|outer| pattern_within(&pattern, &outer));
            if !covered {
                return Err(HierarchyRule::OutsideParent {
                    repository: repository.clone(),
                    parent: parent.name.clone(),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// `writes` plus every sync scope map they change: the sync scope maps of the registries
/// they put or delete, and of their ancestors, before and after.
fn with_derived_maps(snapshot: &Snapshot, mut writes: Vec<Write>) -> Result<Vec<Write>> {
    // The registries and tokens as they will be after `writes`.
    let future = snapshot.after(&writes)?;
    // The changed registries and their ancestors, before and after the change.
    let mut affected = BTreeSet::new();
    for write in &writes {
        let name = match write {
            Write::PutConnectedRegistry(r) => r.name.clone(),
            Write::DeleteConnectedRegistry(n) => n.clone(),
            _ => continue,
        };
        affected.extend(ancestors(snapshot, &name));
        affected.insert(name);
    }
    let changed: Vec<String> = affected.iter().cloned().collect();
    for name in changed {
        affected.extend(ancestors(&future, &name));
    }
    writes.extend(derived_sync_maps(&future, &future.connected, &affected));
    Ok(writes)
}

fn dedup(mut items: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items.retain(|i| seen.insert(i.clone()));
    items
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::Identity;
    use crate::connected::InstanceStatus;
    use crate::identity::IdentityConfig;
    use crate::management::NewToken;
    use crate::scope_map::RepositoryRule;
    use crate::store::SqliteIdentityStore;
    use crate::{Principal, RepositoryAction, SigningKey};

    async fn identity(dir: &std::path::Path) -> Identity {
        let store = SqliteIdentityStore::open(&dir.join("identity.db"))
            .await
            .unwrap();
        let config = IdentityConfig {
            admin_password: Some("pw".into()),
            ..IdentityConfig::default()
        };
        Identity::open(Arc::new(store), SigningKey::generate(), config)
            .await
            .unwrap()
            .0
    }

    fn new(
        name: &str,
        mode: Mode,
        parent: Option<&str>,
        repositories: &[&str],
    ) -> NewConnectedRegistry {
        NewConnectedRegistry {
            name: name.into(),
            mode,
            parent: parent.map(Into::into),
            repositories: repositories.iter().map(|r| r.to_string()).collect(),
            ..NewConnectedRegistry::default()
        }
    }

    fn map_of(identity: &Identity, registry: &str) -> ScopeMap {
        let token = identity
            .management()
            .token(
                &identity
                    .hierarchy()
                    .definitions()
                    .into_iter()
                    .find(|r| r.name == registry)
                    .unwrap()
                    .sync_token,
            )
            .unwrap();
        identity.management().scope_map(&token.scope_map).unwrap()
    }

    #[tokio::test]
    async fn hierarchy_rules_and_derived_sync_maps() {
        let dir = tempfile::tempdir().unwrap();
        let identity = identity(dir.path()).await;
        identity
            .hierarchy()
            .create_connected_registry(new(
                "factory",
                Mode::ReadWrite,
                None,
                &["hello-world", "team/*"],
            ))
            .await
            .unwrap();
        identity
            .hierarchy()
            .create_connected_registry(new("line3", Mode::ReadOnly, Some("factory"), &["team/app"]))
            .await
            .unwrap();

        let factory = map_of(&identity, "factory");
        assert_eq!(factory.name, "factory-sync-scope-map");
        let gateways: Vec<&str> = factory
            .gateways
            .iter()
            .map(|g| g.connected_registry.as_str())
            .collect();
        assert_eq!(
            gateways,
            ["factory", "line3"],
            "an ancestor's sync map reaches its descendants"
        );
        let line3 = map_of(&identity, "line3");
        assert_eq!(
            line3.repositories,
            [RepositoryRule {
                repository: "team/app".into(),
                actions: [
                    RepositoryAction::ContentRead,
                    RepositoryAction::MetadataRead
                ]
                .into()
            }]
        );
        assert_eq!(line3.gateways.len(), 1);

        let err = |e: IdentityError| e.to_string();
        let e = err(identity
            .hierarchy()
            .create_connected_registry(new("line4", Mode::ReadWrite, Some("line3"), &["team/app"]))
            .await
            .unwrap_err());
        assert!(e.contains("only takes ReadOnly children"), "{e}");
        let e = err(identity
            .hierarchy()
            .create_connected_registry(new("line4", Mode::ReadOnly, Some("factory"), &["other"]))
            .await
            .unwrap_err());
        assert!(e.contains("not synced by parent `factory`"), "{e}");
        let e = err(identity
            .hierarchy()
            .create_connected_registry(new("line3", Mode::ReadOnly, None, &["x"]))
            .await
            .unwrap_err());
        assert!(e.contains("already exists"), "{e}");
        let e = err(identity
            .hierarchy()
            .create_connected_registry(new("l3", Mode::ReadOnly, None, &["x"]))
            .await
            .unwrap_err());
        assert!(e.contains("5 to 40"), "{e}");

        // Permissions: --add reaches the ancestors, --remove the descendants.
        identity
            .hierarchy()
            .update_connected_permissions("line3", &["other/thing".into()], &[])
            .await
            .unwrap();
        assert!(
            identity
                .hierarchy()
                .connected_registry("factory")
                .await
                .unwrap()
                .repositories
                .contains(&"other/thing".to_owned())
        );
        identity
            .hierarchy()
            .update_connected_permissions(
                "factory",
                &[],
                &["team/app".into(), "other/thing".into()],
            )
            .await
            .unwrap();
        assert!(
            identity
                .hierarchy()
                .connected_registry("line3")
                .await
                .unwrap()
                .repositories
                .is_empty()
        );

        // The sync token is protected, and its scope map follows the registry.
        assert!(matches!(
            identity
                .management()
                .delete_token("factory-sync-token")
                .await,
            Err(IdentityError::InUse { .. })
        ));
        assert!(matches!(
            identity
                .management()
                .update_scope_map("factory-sync-scope-map", Default::default())
                .await,
            Err(IdentityError::ReadOnly { .. })
        ));

        // Deleting: children first; --cleanup narrows the ancestors.
        assert!(matches!(
            identity
                .hierarchy()
                .delete_connected_registry("factory", true)
                .await,
            Err(IdentityError::InUse { .. })
        ));
        identity
            .hierarchy()
            .delete_connected_registry("line3", true)
            .await
            .unwrap();
        assert!(identity.management().token("line3-sync-token").is_err());
        assert_eq!(map_of(&identity, "factory").gateways.len(), 1);
        let left = identity
            .hierarchy()
            .delete_connected_registry("factory", false)
            .await
            .unwrap();
        assert_eq!(left.tokens, ["factory-sync-token"]);
        assert_eq!(left.scope_maps, ["factory-sync-scope-map"]);
    }

    #[tokio::test]
    async fn read_only_registries_take_only_read_only_client_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let identity = identity(dir.path()).await;
        let reader = NewToken {
            name: "reader".into(),
            scope_map: Some("_repositories_pull".into()),
            ..NewToken::default()
        };
        identity.management().create_token(reader).await.unwrap();
        let pusher = NewToken {
            name: "pusher".into(),
            scope_map: Some("_repositories_push".into()),
            ..NewToken::default()
        };
        identity.management().create_token(pusher).await.unwrap();
        let mut shop = new("shop7", Mode::ReadOnly, None, &["*"]);
        shop.client_tokens = vec!["pusher".into()];
        let e = identity
            .hierarchy()
            .create_connected_registry(shop.clone())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("only read-only client tokens") && e.contains("content/write"),
            "{e}"
        );
        shop.client_tokens = vec!["reader".into()];
        identity
            .hierarchy()
            .create_connected_registry(shop)
            .await
            .unwrap();
        // The rule holds afterwards too: the token cannot move to a pushing scope map, and its
        // scope map cannot gain a write action.
        let e = identity
            .management()
            .update_token("reader", Some("_repositories_push"), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("only read-only client tokens"), "{e}");
        let own = NewToken {
            name: "reader2".into(),
            repositories: vec![RepositoryRule {
                repository: "x".into(),
                actions: [RepositoryAction::ContentRead].into(),
            }],
            ..NewToken::default()
        };
        identity.management().create_token(own).await.unwrap();
        identity
            .hierarchy()
            .update_connected_registry(
                "shop7",
                ConnectedRegistryUpdate {
                    add_client_tokens: vec!["reader2".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let widen = crate::management::ScopeMapUpdate {
            add_repositories: vec![RepositoryRule {
                repository: "x".into(),
                actions: [RepositoryAction::ContentWrite].into(),
            }],
            ..Default::default()
        };
        let e = identity
            .management()
            .update_scope_map("reader2-scope-map", widen)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("only read-only client tokens"), "{e}");
        // Deleting a client token takes it off the list.
        identity.management().delete_token("reader").await.unwrap();
        assert_eq!(
            identity
                .hierarchy()
                .connected_registry("shop7")
                .await
                .unwrap()
                .client_tokens,
            ["reader2"]
        );
    }

    #[tokio::test]
    async fn a_connection_string_always_names_a_usable_parent_address() {
        let dir = tempfile::tempdir().unwrap();
        let identity = identity(dir.path()).await;
        identity
            .hierarchy()
            .create_connected_registry(new("factory", Mode::ReadWrite, None, &["*"]))
            .await
            .unwrap();
        identity
            .hierarchy()
            .create_connected_registry(new("line3", Mode::ReadOnly, Some("factory"), &["*"]))
            .await
            .unwrap();
        let settings = |endpoint: Option<&'static str>| {
            let identity = &identity;
            async move {
                identity
                    .hierarchy()
                    .connection_string(
                        "line3",
                        "http",
                        endpoint,
                        "root:5000",
                        None,
                        Some(Slot::One),
                    )
                    .await
            }
        };
        // factory has not reported: refused, before any password is generated.
        let e = settings(None).await.unwrap_err();
        assert!(matches!(e, IdentityError::NoParentAddress(_)), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("`factory`") && e.contains("--parent-gateway-endpoint"),
            "{e}"
        );
        assert!(
            identity
                .management()
                .token("line3-sync-token")
                .unwrap()
                .password1
                .is_none()
        );
        // Named explicitly: used as given, when it is a host[:port].
        let (text, _) = settings(Some("10.0.0.5:5001")).await.unwrap();
        assert!(
            text.contains(";ParentGatewayEndpoint=10.0.0.5:5001;"),
            "{text}"
        );
        let e = settings(Some("http://10.0.0.5")).await.unwrap_err();
        assert!(matches!(e, IdentityError::Malformed { .. }), "{e}");
        // Reported: the instance's address, unless it names no machine.
        identity
            .hierarchy()
            .instances()
            .activate("factory", "instance-a")
            .await
            .unwrap();
        let report = |login_server: &str| InstanceStatus {
            connection_state: "Online".into(),
            login_server: login_server.into(),
            ..InstanceStatus::default()
        };
        identity
            .hierarchy()
            .instances()
            .report("factory", "instance-a", report("0.0.0.0:5001"))
            .await
            .unwrap();
        let e = settings(None).await.unwrap_err().to_string();
        assert!(
            e.contains("0.0.0.0:5001") && e.contains("--public-url"),
            "{e}"
        );
        identity
            .hierarchy()
            .instances()
            .report("factory", "instance-a", report("factory.site:5001"))
            .await
            .unwrap();
        let (text, _) = settings(None).await.unwrap();
        assert!(
            text.contains(";ParentGatewayEndpoint=factory.site:5001;"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn activation_connection_string_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let identity = identity(dir.path()).await;
        identity
            .hierarchy()
            .create_connected_registry(new("factory", Mode::ReadWrite, None, &["*"]))
            .await
            .unwrap();
        let (text, password) = identity
            .hierarchy()
            .connection_string(
                "factory",
                "http",
                None,
                "registry.example:5000",
                None,
                Some(Slot::One),
            )
            .await
            .unwrap();
        let password = password.unwrap();
        assert_eq!(
            text,
            format!(
                "ConnectedRegistryName=factory;SyncTokenName=factory-sync-token;SyncTokenPassword={};\
                 ParentGatewayEndpoint=registry.example:5000;ParentEndpointProtocol=http",
                password.value
            )
        );
        let login = identity
            .checks()
            .login(
                "factory-sync-token",
                &password.value,
                "127.0.0.1".parse().unwrap(),
            )
            .await
            .unwrap();
        assert!(matches!(login, Principal::Token { .. }));
        assert!(
            identity
                .checks()
                .repository_actions(&login, "anything")
                .contains(RepositoryAction::ContentWrite)
        );
        assert!(
            identity
                .checks()
                .gateway_actions(&login, "factory")
                .contains(&GatewayAction::ConfigRead)
        );
        let (placeholder, none) = identity
            .hierarchy()
            .connection_string("factory", "https", None, "r:1", Some("data.r:1"), None)
            .await
            .unwrap();
        assert!(none.is_none() && placeholder.contains("--generate-password"));
        assert!(
            placeholder.ends_with(";ParentDataEndpoint=data.r:1"),
            "{placeholder}"
        );

        assert_eq!(
            connection_state(
                &identity
                    .hierarchy()
                    .connected_registry("factory")
                    .await
                    .unwrap(),
                unix_now()
            ),
            ConnectionState::Offline
        );
        identity
            .hierarchy()
            .instances()
            .activate("factory", "instance-a")
            .await
            .unwrap();
        identity
            .hierarchy()
            .instances()
            .activate("factory", "instance-a")
            .await
            .unwrap();
        let e = identity
            .hierarchy()
            .instances()
            .activate("factory", "instance-b")
            .await
            .unwrap_err();
        assert!(
            matches!(e, IdentityError::AlreadyActivated { .. })
                && e.to_string().contains("deactivate"),
            "{e}"
        );
        let details = identity
            .hierarchy()
            .connected_registry("factory")
            .await
            .unwrap()
            .status
            .unwrap()
            .details;
        assert_eq!(details.len(), 1);
        assert_eq!(
            details[0].code, "ALREADY_ACTIVATED",
            "the refused activation is a status detail"
        );
        let status = InstanceStatus {
            connection_state: "Online".into(),
            ..InstanceStatus::default()
        };
        identity
            .hierarchy()
            .instances()
            .report("factory", "instance-a", status.clone())
            .await
            .unwrap();
        assert_eq!(
            connection_state(
                &identity
                    .hierarchy()
                    .connected_registry("factory")
                    .await
                    .unwrap(),
                unix_now()
            ),
            ConnectionState::Online
        );
        let details = identity
            .hierarchy()
            .connected_registry("factory")
            .await
            .unwrap()
            .status
            .unwrap()
            .details;
        assert!(
            details[0].code == "ALREADY_ACTIVATED" && !details[0].is_current(),
            "the refusal is past once the active instance reports: {details:?}"
        );
        assert_eq!(
            connection_state(
                &identity
                    .hierarchy()
                    .connected_registry("factory")
                    .await
                    .unwrap(),
                unix_now() + 16
            ),
            ConnectionState::Offline
        );
        assert!(
            identity
                .hierarchy()
                .instances()
                .report("factory", "instance-b", status)
                .await
                .is_err()
        );
        identity
            .hierarchy()
            .instances()
            .deactivate("factory")
            .await
            .unwrap();
        // The deactivated instance learns it on its next call, and can never come back.
        assert!(matches!(
            identity
                .hierarchy()
                .instances()
                .report("factory", "instance-a", InstanceStatus::default())
                .await,
            Err(IdentityError::InstanceDeactivated { .. })
        ));
        assert!(matches!(
            identity
                .hierarchy()
                .instances()
                .activate("factory", "instance-a")
                .await,
            Err(IdentityError::InstanceDeactivated { .. })
        ));
        identity
            .hierarchy()
            .instances()
            .activate("factory", "instance-b")
            .await
            .unwrap();
        assert!(
            identity
                .hierarchy()
                .instances()
                .check_active("factory", "instance-b")
                .is_ok()
        );
        assert!(matches!(
            identity
                .hierarchy()
                .instances()
                .check_active("factory", "instance-c"),
            Err(IdentityError::InstanceNotActive { .. })
        ));
    }
}
