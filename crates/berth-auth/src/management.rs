//! [`Management`]: the admin's changes to identities: scope maps, tokens and their
//! passwords, registry settings and network settings. Every change goes through
//! [`Records::change`], which checks it against the snapshot and stores it in one
//! transaction; the rules connected registries impose on tokens and scope maps (a ReadOnly
//! registry's client tokens stay read-only, sync tokens and sync scope maps follow their
//! registry) are checked here too, with [`crate::hierarchy::check_client_tokens`].

use std::sync::Arc;
use std::time::Duration;

use berth_oci::time::unix_now;
use serde::Serialize;

use crate::access_token::SigningKey;
use crate::keys::{KeyPurpose, StoredKey, grace};

use crate::error::{IdentityError, ReadOnlyReason, RequestProblem};
use crate::hierarchy::check_client_tokens;
use crate::identity::Settings;
use crate::network::{NetworkPolicy, NetworkSettings};
use crate::records::{ANONYMOUS_PULL_KEY, NETWORK_KEY, Records, Snapshot};
use crate::scope_map::{self, GatewayRule, RepositoryRule, ScopeMap};
use crate::store::Write;
use crate::token::{self, Slot, Token, TokenStatus, generate_password};

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// A password shown once, when generated.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedPassword {
    /// Which slot it fills.
    pub slot: Slot,
    /// The password itself; never stored.
    pub value: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expiry: Option<i64>,
}

/// A new token.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    /// Name.
    pub name: String,
    /// An existing scope map; or `None` to create `<name>-scope-map` from the rules below.
    pub scope_map: Option<String>,
    /// Rules of the scope map to create.
    pub repositories: Vec<RepositoryRule>,
    /// Gateway rules of the scope map to create.
    pub gateways: Vec<GatewayRule>,
    /// Disabled at creation?
    pub disabled: bool,
    /// Generate both passwords (the default) or none.
    pub no_passwords: bool,
    /// Expiry of the generated passwords, Unix seconds.
    pub expiry: Option<i64>,
}

/// Changes to a scope map.
#[derive(Debug, Clone, Default)]
pub struct ScopeMapUpdate {
    /// New description.
    pub description: Option<String>,
    /// Actions to add, per repository pattern.
    pub add_repositories: Vec<RepositoryRule>,
    /// Actions to remove, per repository pattern.
    pub remove_repositories: Vec<RepositoryRule>,
    /// Actions to add, per connected registry.
    pub add_gateways: Vec<GatewayRule>,
    /// Actions to remove, per connected registry.
    pub remove_gateways: Vec<GatewayRule>,
}

/// Scope maps, tokens, settings and keys, as the admin manages them.
pub struct Management {
    records: Arc<Records>,
    /// How long a refresh token lives: how long a retired token key keeps verifying.
    refresh_token_ttl: Duration,
}

fn scope_map_in(snapshot: &Snapshot, name: &str) -> Result<ScopeMap> {
    snapshot
        .scope_maps
        .get(name)
        .cloned()
        .ok_or_else(|| IdentityError::NotFound {
            kind: "scope map",
            name: name.into(),
        })
}

fn token_in(snapshot: &Snapshot, name: &str) -> Result<Token> {
    snapshot
        .tokens
        .get(name)
        .cloned()
        .ok_or_else(|| IdentityError::NotFound {
            kind: "token",
            name: name.into(),
        })
}

/// The rules of `map` changed as `update` says.
fn updated_rules(
    map: &ScopeMap,
    update: &ScopeMapUpdate,
) -> (Vec<RepositoryRule>, Vec<GatewayRule>) {
    let mut repositories = map.repositories.clone();
    repositories.extend(update.add_repositories.iter().cloned());
    for remove in &update.remove_repositories {
        for rule in repositories
            .iter_mut()
            .filter(|r| r.repository == remove.repository)
        {
            rule.actions.retain(|a| !remove.actions.contains(a));
        }
    }
    repositories.retain(|r| !r.actions.is_empty());
    let mut gateways = map.gateways.clone();
    gateways.extend(update.add_gateways.iter().cloned());
    for remove in &update.remove_gateways {
        for rule in gateways
            .iter_mut()
            .filter(|r| r.connected_registry == remove.connected_registry)
        {
            rule.actions.retain(|a| !remove.actions.contains(a));
        }
    }
    gateways.retain(|r| !r.actions.is_empty());
    (repositories, gateways)
}

/// The scope map a new token uses: an existing one, or `<token>-scope-map` made from its
/// rules (returned too, to store with the token).
fn scope_map_for(snapshot: &Snapshot, new: &NewToken) -> Result<(String, Option<ScopeMap>)> {
    match (
        &new.scope_map,
        new.repositories.is_empty() && new.gateways.is_empty(),
    ) {
        (Some(_), false) => Err(RequestProblem::ScopeMapAndRules.into()),
        (Some(name), true) => {
            scope_map_in(snapshot, name)?;
            Ok((name.clone(), None))
        }
        (None, true) => Err(RequestProblem::NoScopeMap.into()),
        (None, false) => {
            let name = format!("{}-scope-map", new.name);
            if name.len() > 50 {
                return Err(RequestProblem::TokenNameTooLongForScopeMap {
                    token: new.name.clone(),
                }
                .into());
            }
            if snapshot.scope_maps.contains_key(&name) {
                return Err(IdentityError::AlreadyExists {
                    kind: "scope map",
                    name,
                    hint: "; pass it with --scope-map",
                });
            }
            let mut map = ScopeMap::new(
                &name,
                &format!("Created with token {}", new.name),
                &new.repositories,
                &new.gateways,
            )?;
            map.created_at = unix_now();
            Ok((name, Some(map)))
        }
    }
}

impl Management {
    pub(crate) fn new(records: Arc<Records>, refresh_token_ttl: Duration) -> Self {
        Management {
            records,
            refresh_token_ttl,
        }
    }

    // ----- scope maps -----

    /// Every scope map, built-ins first (their names start with `_`).
    pub fn scope_maps(&self) -> Vec<ScopeMap> {
        self.records
            .snapshot()
            .scope_maps
            .values()
            .cloned()
            .collect()
    }

    /// One scope map.
    pub fn scope_map(&self, name: &str) -> Result<ScopeMap> {
        scope_map_in(&self.records.snapshot(), name)
    }

    /// Creates a scope map.
    pub async fn create_scope_map(
        &self,
        name: &str,
        description: &str,
        repositories: &[RepositoryRule],
        gateways: &[GatewayRule],
    ) -> Result<ScopeMap> {
        let mut map = ScopeMap::new(name, description, repositories, gateways)?;
        if map.repositories.is_empty() && map.gateways.is_empty() {
            return Err(RequestProblem::EmptyScopeMap.into());
        }
        map.created_at = unix_now();
        self.records
            .change(|snapshot| {
                if snapshot.scope_maps.contains_key(name) {
                    return Err(IdentityError::AlreadyExists {
                        kind: "scope map",
                        name: name.to_owned(),
                        hint: "; use `scope-map update` to change it",
                    });
                }
                Ok((vec![Write::PutScopeMap(map.clone())], map.clone()))
            })
            .await
    }

    /// Changes a scope map's description and rules.
    pub async fn update_scope_map(&self, name: &str, update: ScopeMapUpdate) -> Result<ScopeMap> {
        self.records
            .change(|snapshot| {
                let map = scope_map_in(snapshot, name)?;
                if map.built_in {
                    return Err(IdentityError::ReadOnly {
                        scope_map: name.to_owned(),
                        reason: ReadOnlyReason::BuiltInChanged,
                    });
                }
                let sync_owner = snapshot.connected.values().find(|r| {
                    snapshot
                        .tokens
                        .get(&r.sync_token)
                        .is_some_and(|t| t.scope_map == name)
                });
                if let Some(owner) = sync_owner {
                    return Err(IdentityError::ReadOnly {
                        scope_map: name.to_owned(),
                        reason: ReadOnlyReason::SyncScopeMap {
                            registry: owner.name.clone(),
                        },
                    });
                }
                let description = update.description.as_deref().unwrap_or(&map.description);
                let (repositories, gateways) = updated_rules(&map, &update);
                let mut updated = ScopeMap::new(&map.name, description, &repositories, &gateways)?;
                updated.created_at = map.created_at;
                let writes = vec![Write::PutScopeMap(updated.clone())];
                // Tokens on this map that a ReadOnly connected registry accepts must stay
                // read-only.
                let future = snapshot.after(&writes)?;
                for registry in future.connected.values() {
                    let users: Vec<String> = registry
                        .client_tokens
                        .iter()
                        .filter(|t| future.tokens.get(*t).is_some_and(|t| t.scope_map == name))
                        .cloned()
                        .collect();
                    check_client_tokens(&future, registry.mode, &users)?;
                }
                Ok((writes, updated))
            })
            .await
    }

    /// Deletes a scope map that no token uses.
    pub async fn delete_scope_map(&self, name: &str) -> Result<()> {
        self.records
            .change(|snapshot| {
                let map = scope_map_in(snapshot, name)?;
                if map.built_in {
                    return Err(IdentityError::ReadOnly {
                        scope_map: name.to_owned(),
                        reason: ReadOnlyReason::BuiltInDeleted,
                    });
                }
                let mut users: Vec<String> = snapshot
                    .tokens
                    .values()
                    .filter(|t| t.scope_map == name)
                    .map(|t| t.name.clone())
                    .collect();
                if !users.is_empty() {
                    users.sort();
                    return Err(IdentityError::InUse {
                        kind: "scope map",
                        name: name.to_owned(),
                        reason: format!(
                        "is used by token(s) {}; delete them or move them to another scope map first",
                        users
                            .iter()
                            .map(|u| format!("`{u}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                    });
                }
                Ok((vec![Write::DeleteScopeMap(name.to_owned())], ()))
            })
            .await
    }

    // ----- tokens -----

    /// Every token.
    pub fn tokens(&self) -> Vec<Token> {
        let mut tokens: Vec<Token> = self.records.snapshot().tokens.values().cloned().collect();
        tokens.sort_by(|a, b| a.name.cmp(&b.name));
        tokens
    }

    /// One token.
    pub fn token(&self, name: &str) -> Result<Token> {
        token_in(&self.records.snapshot(), name)
    }

    /// Creates a token (and its scope map, when given rules instead of a scope map name).
    pub async fn create_token(&self, new: NewToken) -> Result<(Token, Vec<GeneratedPassword>)> {
        token::validate_name(&new.name)?;
        let now = unix_now();
        if new.expiry.is_some_and(|e| e <= now) {
            return Err(RequestProblem::PasswordsExpired.into());
        }
        self.records
            .change(|snapshot| {
                if new.name == snapshot.admin.username {
                    return Err(IdentityError::AdminName {
                        name: new.name.clone(),
                    });
                }
                if snapshot.tokens.contains_key(&new.name) {
                    return Err(IdentityError::AlreadyExists {
                        kind: "token",
                        name: new.name.clone(),
                        hint: "; use `token update` to change it",
                    });
                }
                let (scope_map, created) = scope_map_for(snapshot, &new)?;
                let mut token = Token {
                    name: new.name.clone(),
                    scope_map,
                    status: if new.disabled {
                        TokenStatus::Disabled
                    } else {
                        TokenStatus::Enabled
                    },
                    password1: None,
                    password2: None,
                    created_at: now,
                };
                let mut passwords = Vec::new();
                if !new.no_passwords {
                    for slot in Slot::BOTH {
                        passwords.push(fill_slot(&mut token, slot, now, new.expiry));
                    }
                }
                // The token and the scope map made for it appear together, or not at all.
                let mut writes: Vec<Write> = created.into_iter().map(Write::PutScopeMap).collect();
                writes.push(Write::PutToken(token.clone()));
                Ok((writes, (token, passwords)))
            })
            .await
    }

    /// Changes a token's scope map or status.
    pub async fn update_token(
        &self,
        name: &str,
        scope_map: Option<&str>,
        status: Option<TokenStatus>,
    ) -> Result<Token> {
        self.records
            .change(|snapshot| {
                let mut token = token_in(snapshot, name)?;
                if let Some(map) = scope_map {
                    scope_map_in(snapshot, map)?;
                    token.scope_map = map.to_owned();
                }
                if let Some(status) = status {
                    token.status = status;
                }
                let writes = vec![Write::PutToken(token.clone())];
                if scope_map.is_some() {
                    // A ReadOnly connected registry accepting this token must stay read-only.
                    let future = snapshot.after(&writes)?;
                    for registry in future
                        .connected
                        .values()
                        .filter(|r| r.client_tokens.contains(&token.name))
                    {
                        check_client_tokens(
                            &future,
                            registry.mode,
                            std::slice::from_ref(&token.name),
                        )?;
                    }
                }
                Ok((writes, token))
            })
            .await
    }

    /// Deletes a token; its sessions end at once.
    pub async fn delete_token(&self, name: &str) -> Result<()> {
        self.records
            .change(|snapshot| {
                token_in(snapshot, name)?;
                if let Some(owner) = snapshot.connected.values().find(|r| r.sync_token == name) {
                    return Err(IdentityError::InUse {
                        kind: "token",
                        name: name.to_owned(),
                        reason: format!(
                            "is the sync token of connected registry `{}`; it goes with `connected-registry delete --cleanup`",
                            owner.name
                        ),
                    });
                }
                // A deleted token also leaves the client-token lists that named it, in the
                // same step.
                let mut writes = vec![Write::DeleteToken(name.to_owned())];
                for registry in snapshot
                    .connected
                    .values()
                    .filter(|r| r.client_tokens.iter().any(|t| t == name))
                {
                    let mut registry = registry.clone();
                    registry.client_tokens.retain(|t| t != name);
                    writes.push(Write::PutConnectedRegistry(Box::new(registry)));
                }
                Ok((writes, ()))
            })
            .await
    }

    /// Generates new passwords in `slots`, replacing what they held.
    pub async fn generate_passwords(
        &self,
        name: &str,
        slots: &[Slot],
        expiry: Option<i64>,
    ) -> Result<Vec<GeneratedPassword>> {
        let now = unix_now();
        if expiry.is_some_and(|e| e <= now) {
            return Err(RequestProblem::PasswordExpired.into());
        }
        self.records
            .change(|snapshot| {
                let mut token = token_in(snapshot, name)?;
                let passwords = slots
                    .iter()
                    .map(|slot| fill_slot(&mut token, *slot, now, expiry))
                    .collect();
                Ok((vec![Write::PutToken(token)], passwords))
            })
            .await
    }

    /// Empties a password slot.
    pub async fn delete_password(&self, name: &str, slot: Slot) -> Result<Token> {
        self.records
            .change(|snapshot| {
                let mut token = token_in(snapshot, name)?;
                token.set_slot(slot, None);
                Ok((vec![Write::PutToken(token.clone())], token))
            })
            .await
    }

    // ----- settings -----

    /// The registry settings.
    pub fn settings(&self) -> Settings {
        self.records.snapshot().settings.clone()
    }

    /// Turns anonymous pulls on or off.
    pub async fn set_anonymous_pull(&self, enabled: bool) -> Result<Settings> {
        self.records
            .change(|snapshot| {
                let write =
                    Write::PutSetting(ANONYMOUS_PULL_KEY.into(), serde_json::Value::Bool(enabled));
                let settings = snapshot.after(std::slice::from_ref(&write))?.settings;
                Ok((vec![write], settings))
            })
            .await
    }

    /// The network access settings, compiled for the listeners (cheap: an `Arc` clone).
    pub fn network(&self) -> Arc<NetworkPolicy> {
        Arc::clone(&self.records.snapshot().network)
    }

    /// Changes the network access settings with `change`, which may refuse; stored in one
    /// transaction. Returns the new settings.
    pub async fn update_network(
        &self,
        mut change: impl FnMut(&mut NetworkSettings) -> Result<()>,
    ) -> Result<NetworkSettings> {
        self.records
            .change(|snapshot| {
                let mut settings = snapshot.network.settings.clone();
                change(&mut settings)?;
                let value = serde_json::to_value(&settings).expect("network settings serialise");
                Ok((vec![Write::PutSetting(NETWORK_KEY.into(), value)], settings))
            })
            .await
    }

    // ----- keys -----

    /// How long a retired key of `purpose` keeps verifying, in seconds.
    pub fn key_grace(&self, purpose: KeyPurpose) -> i64 {
        grace(purpose, self.refresh_token_ttl)
    }

    /// Every key (never their secrets: callers show ids and times).
    pub fn keys(&self) -> Vec<StoredKey> {
        let mut keys: Vec<StoredKey> = self.records.snapshot().keys.values().cloned().collect();
        // By purpose; the current key first, then the most recently retired.
        keys.sort_by_key(|k| {
            (
                k.purpose,
                k.retired_at.is_some(),
                std::cmp::Reverse(k.retired_at),
                std::cmp::Reverse(k.created_at),
            )
        });
        keys
    }

    /// Makes sure there is a current key of `purpose`: `initial` (a key kept by an earlier
    /// version, to import) or a new one, when the store holds none yet.
    pub async fn ensure_key(&self, purpose: KeyPurpose, initial: Option<SigningKey>) -> Result<()> {
        self.records
            .change(|snapshot| {
                if snapshot.current_key(purpose).is_some() {
                    return Ok((Vec::new(), ()));
                }
                let key = initial.clone().unwrap_or_else(SigningKey::generate);
                Ok((
                    vec![Write::PutKey(StoredKey::new(purpose, &key, unix_now()))],
                    (),
                ))
            })
            .await
    }

    /// Makes a new current key of `purpose`. The previous one keeps verifying until what it
    /// signed has expired; keys retired longer ago than that are deleted. Returns the new key.
    pub async fn rotate_key(&self, purpose: KeyPurpose) -> Result<StoredKey> {
        let now = unix_now();
        let grace = grace(purpose, self.refresh_token_ttl);
        self.records
            .change(|snapshot| {
                let fresh = StoredKey::new(purpose, &SigningKey::generate(), now);
                let mut writes = vec![Write::PutKey(fresh.clone())];
                for key in snapshot.keys.values().filter(|k| k.purpose == purpose) {
                    match key.retired_at {
                        None => writes.push(Write::PutKey(StoredKey {
                            retired_at: Some(now),
                            ..key.clone()
                        })),
                        Some(retired) if retired + grace <= now => {
                            writes.push(Write::DeleteKey(key.id.clone()));
                        }
                        Some(_) => {}
                    }
                }
                Ok((writes, fresh))
            })
            .await
    }
}

/// Fills `slot` of `token` with a new password; returns it, to be shown once.
pub(crate) fn fill_slot(
    token: &mut Token,
    slot: Slot,
    now: i64,
    expiry: Option<i64>,
) -> GeneratedPassword {
    let (value, stored) = generate_password(now, expiry);
    token.set_slot(slot, Some(stored));
    GeneratedPassword {
        slot,
        value,
        created_at: now,
        expiry,
    }
}

/// Validates a scope map name (re-exported for callers that check before calling).
pub fn validate_scope_map_name(name: &str) -> Result<()> {
    scope_map::validate_name(name)
}
