//! [`Identity`]: every identity operation, over an [`IdentityStore`] and an in-memory snapshot.
//!
//! Checks on the request path (logins, sessions, actions) read an immutable snapshot of all
//! tokens, scope maps and settings, so they never wait on the database. Management writes
//! go to the store and then replace the snapshot, one write at a time; a change (a disabled
//! token, a rotated password, an edited scope map) is therefore in force from the very next
//! request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access_token::{Access, Claims, SigningKey, TokenError, TokenKind};
use crate::action::{Actions, GatewayAction};
use crate::admin::{self, AdminCache};
use crate::error::IdentityError;
use crate::network::{NetworkPolicy, NetworkSettings};
use crate::rate_limit::LoginLimiter;
use crate::scope_map::{
    self, CompiledScopeMap, GatewayRule, RepositoryRule, ScopeMap, built_in_scope_maps,
};
use crate::store::{AdminRecord, IdentityStore, Write};
use crate::token::{self, Slot, Token, TokenStatus, generate_password};

type Result<T, E = IdentityError> = std::result::Result<T, E>;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Identity settings, parsed once from configuration.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The admin's user name.
    pub admin_username: String,
    /// The admin's password, if configured; otherwise one is generated at first start.
    pub admin_password: Option<String>,
    /// Lifetime of access tokens.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_token_ttl: Duration,
    /// Failed logins allowed per client address per minute.
    pub login_failures_per_minute: u32,
    /// Admin password (Argon2) checks allowed to run at once in the whole process; more
    /// wait their turn, up to [`PASSWORD_CHECK_WAIT`].
    pub max_password_checks: usize,
}

/// How long an admin login waits for a free password check before it is answered
/// `RateLimited`.
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(5);

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            admin_username: "admin".into(),
            admin_password: None,
            access_token_ttl: Duration::from_secs(300),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            login_failures_per_minute: 10,
            max_password_checks: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

/// Registry-wide settings managed through the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Anyone may pull any repository (never push).
    pub anonymous_pull_enabled: bool,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The registry's owner: every action.
    Admin,
    /// A token, logged in with one of its passwords.
    Token {
        /// Token name.
        name: String,
        /// The slot whose password was used.
        slot: Slot,
        /// Which password ([`crate::token::PasswordSlot::id`]): a new one ends the session.
        password_id: String,
    },
    /// No credentials.
    Anonymous,
}

impl Principal {
    /// The name to show in logs and errors.
    pub fn display_name(&self) -> &str {
        match self {
            Principal::Admin => "admin",
            Principal::Token { name, .. } => name,
            Principal::Anonymous => "anonymous",
        }
    }
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Wrong name or password, a disabled token, or an expired password. Deliberately vague.
    #[error("invalid user name or password, or the token is disabled or its password expired")]
    Invalid,
    /// Too many failures from this address.
    #[error("too many failed logins from this address; retry in {} seconds", .0.as_secs())]
    RateLimited(Duration),
}

/// A requested token scope, e.g. `repository:team/app:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry`.
    pub kind: String,
    /// Repository name, or `catalog`.
    pub name: String,
    /// Requested actions (Docker names).
    pub actions: String,
}

impl Scope {
    /// Parses one scope (`type[(class)]:name:actions`). `None` if malformed.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next()?.to_owned();
        (!kind.is_empty() && !name.is_empty()).then(|| Scope {
            kind,
            name: name.to_owned(),
            actions: actions.to_owned(),
        })
    }

    /// Parses every scope of a list of `scope` parameters, each possibly space-separated.
    pub fn parse_all<'a>(params: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        params
            .into_iter()
            .flat_map(|p| p.split(' '))
            .filter_map(Scope::parse)
            .collect()
    }
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// What it grants.
    pub access: Vec<Access>,
}

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

/// The settings key network settings are stored under, as one JSON value.
const NETWORK_KEY: &str = "network";

#[derive(Clone)]
pub(crate) struct Snapshot {
    pub(crate) tokens: HashMap<String, Token>,
    pub(crate) scope_maps: BTreeMap<String, ScopeMap>,
    compiled: HashMap<String, Arc<CompiledScopeMap>>,
    settings: Settings,
    network: Arc<NetworkPolicy>,
    admin: AdminRecord,
    pub(crate) connected: BTreeMap<String, crate::connected::ConnectedRegistry>,
}

/// Identities: logins, sessions, permissions, and their management.
pub struct Identity {
    pub(crate) store: Arc<dyn IdentityStore>,
    snapshot: RwLock<Arc<Snapshot>>,
    pub(crate) writes: tokio::sync::Mutex<()>,
    /// Bumped after every change, for those waiting on one (the gateway's long polls).
    changes: tokio::sync::watch::Sender<u64>,
    /// Connected registries' last status reports (in memory only).
    pub(crate) statuses: RwLock<HashMap<String, crate::connected::InstanceStatus>>,
    /// Problems the root itself saw for a connected registry (e.g. a refused activation).
    pub(crate) events: RwLock<HashMap<String, Vec<crate::connected::StatusDetail>>>,
    key: SigningKey,
    admin_cache: AdminCache,
    limiter: LoginLimiter,
    /// Bounds the Argon2 checks running at once (each takes ~19 MiB and a blocking thread).
    password_checks: tokio::sync::Semaphore,
    config: IdentityConfig,
}

async fn hash_admin_password(password: String) -> String {
    tokio::task::spawn_blocking(move || admin::hash_password(&password))
        .await
        .expect("hashing does not panic")
}

impl Identity {
    /// Opens identities, creating the admin account on first start. Returns the generated
    /// admin password when one was generated (to be shown once).
    pub async fn open(
        store: Arc<dyn IdentityStore>,
        key: SigningKey,
        config: IdentityConfig,
    ) -> Result<(Identity, Option<String>)> {
        let stored = store.load().await?;
        let mut generated = None;
        // The admin account: created on first start (with the configured password, or a
        // generated one shown once); a configured password always wins afterwards, so
        // rotating it in configuration works.
        let new_password = match (&stored.admin, &config.admin_password) {
            (None, Some(configured)) => Some(configured.clone()),
            (None, None) => {
                let password = admin::generate_password();
                generated = Some(password.clone());
                Some(password)
            }
            (Some(existing), Some(configured)) => {
                let (candidate, hash) = (configured.clone(), existing.password_hash.clone());
                let matches =
                    tokio::task::spawn_blocking(move || admin::verify_password(&candidate, &hash))
                        .await
                        .expect("verifying does not panic");
                (!matches || existing.username != config.admin_username).then(|| configured.clone())
            }
            (Some(_), None) => None,
        };
        if let Some(password) = new_password {
            let record = AdminRecord {
                username: config.admin_username.clone(),
                password_hash: hash_admin_password(password).await,
            };
            store.put_admin(&record).await?;
        }
        let limiter = LoginLimiter::new(
            config.login_failures_per_minute.max(1),
            Duration::from_secs(60),
        );
        let identity = Identity {
            snapshot: RwLock::new(Arc::new(Self::build_snapshot(store.load().await?)?)),
            store,
            writes: tokio::sync::Mutex::new(()),
            statuses: RwLock::default(),
            events: RwLock::default(),
            changes: tokio::sync::watch::Sender::new(0),
            key,
            admin_cache: AdminCache::default(),
            limiter,
            password_checks: tokio::sync::Semaphore::new(config.max_password_checks.max(1)),
            config,
        };
        Ok((identity, generated))
    }

    fn build_snapshot(stored: crate::store::StoredIdentities) -> Result<Snapshot> {
        let mut scope_maps: BTreeMap<String, ScopeMap> = built_in_scope_maps()
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect();
        scope_maps.extend(stored.scope_maps.into_iter().map(|m| (m.name.clone(), m)));
        let compiled = scope_maps
            .iter()
            .map(|(name, m)| (name.clone(), Arc::new(m.compile())))
            .collect();
        let mut settings = Settings::default();
        let mut network = NetworkSettings::default();
        for (key, value) in stored.settings {
            match key.as_str() {
                "anonymous_pull_enabled" => {
                    settings.anonymous_pull_enabled = value.as_bool().unwrap_or(false);
                }
                NETWORK_KEY => {
                    network = serde_json::from_value(value).map_err(|e| {
                        IdentityError::Invalid(format!("stored network settings are invalid: {e}"))
                    })?;
                }
                _ => {}
            }
        }
        Ok(Snapshot {
            tokens: stored
                .tokens
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            scope_maps,
            compiled,
            settings,
            network: Arc::new(NetworkPolicy::new(network)),
            admin: stored
                .admin
                .ok_or_else(|| IdentityError::Invalid("the admin account is missing".into()))?,
            connected: stored
                .connected_registries
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
        })
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies `writes` to the store in one transaction, then to the in-memory snapshot (no
    /// reload: every write goes through here, so the snapshot can follow them exactly, and a
    /// write costs the same with ten tokens or ten thousand).
    pub(crate) async fn commit(&self, writes: &[Write]) -> Result<()> {
        self.store.apply(writes).await?;
        let mut next = (*self.snapshot()).clone();
        for write in writes {
            match write {
                Write::PutScopeMap(map) => {
                    next.compiled
                        .insert(map.name.clone(), Arc::new(map.compile()));
                    next.scope_maps.insert(map.name.clone(), map.clone());
                }
                Write::DeleteScopeMap(name) => {
                    // Built-ins are never stored, so never deleted.
                    if next.scope_maps.get(name).is_some_and(|m| !m.built_in) {
                        next.scope_maps.remove(name);
                        next.compiled.remove(name);
                    }
                }
                Write::PutToken(token) => {
                    next.tokens.insert(token.name.clone(), token.clone());
                }
                Write::DeleteToken(name) => {
                    next.tokens.remove(name);
                }
                Write::PutSetting(key, value) => match key.as_str() {
                    "anonymous_pull_enabled" => {
                        next.settings.anonymous_pull_enabled = value.as_bool().unwrap_or(false);
                    }
                    NETWORK_KEY => {
                        let settings = serde_json::from_value(value.clone())
                            .map_err(|e| IdentityError::Invalid(e.to_string()))?;
                        next.network = Arc::new(NetworkPolicy::new(settings));
                    }
                    _ => {}
                },
                Write::PutConnectedRegistry(registry) => {
                    next.connected
                        .insert(registry.name.clone(), (**registry).clone());
                }
                Write::DeleteConnectedRegistry(name) => {
                    next.connected.remove(name);
                }
            }
        }
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// A receiver that sees every change to identities (tokens, scope maps, settings,
    /// connected registries).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The admin's user name.
    pub fn admin_username(&self) -> String {
        self.snapshot().admin.username.clone()
    }

    // ----- logins and permissions -----

    /// Checks a user name and password from `client`.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Principal, LoginError> {
        let snapshot = self.snapshot();
        if username == snapshot.admin.username {
            let hash = snapshot.admin.password_hash.clone();
            // A recent success is remembered: no slow check, nothing to count.
            if self.admin_cache.hit(&hash, password) {
                self.limiter
                    .check(client)
                    .map_err(LoginError::RateLimited)?;
                return Ok(Principal::Admin);
            }
            // Counted before the slow check, so concurrent attempts cannot pass the limit.
            let attempt = self
                .limiter
                .attempt(client)
                .map_err(LoginError::RateLimited)?;
            let _permit = tokio::time::timeout(PASSWORD_CHECK_WAIT, self.password_checks.acquire())
                .await
                .map_err(|_| LoginError::RateLimited(Duration::from_secs(1)))?
                .expect("the password check semaphore is never closed");
            let (candidate, stored) = (password.to_owned(), hash.clone());
            let ok =
                tokio::task::spawn_blocking(move || admin::verify_password(&candidate, &stored))
                    .await
                    .unwrap_or(false);
            if !ok {
                return Err(LoginError::Invalid);
            }
            self.admin_cache.remember(&hash, password);
            attempt.succeeded();
            return Ok(Principal::Admin);
        }
        let attempt = self
            .limiter
            .attempt(client)
            .map_err(LoginError::RateLimited)?;
        // An unknown name is checked against a dummy token, so it costs what a wrong
        // password for a known one does.
        let principal = match snapshot.tokens.get(username) {
            Some(token) => token
                .check_password(password, now())
                .map(|slot| Principal::Token {
                    name: token.name.clone(),
                    slot,
                    password_id: token
                        .slot(slot)
                        .map(|p| p.id().to_owned())
                        .unwrap_or_default(),
                }),
            None => {
                token::check_unknown_name(password);
                None
            }
        };
        let principal = principal.ok_or(LoginError::Invalid)?;
        attempt.succeeded();
        Ok(principal)
    }

    /// Whether a principal's login still stands (token enabled, password unchanged and not
    /// expired).
    pub fn principal_valid(&self, principal: &Principal) -> bool {
        match principal {
            Principal::Admin | Principal::Anonymous => true,
            Principal::Token {
                name,
                slot,
                password_id,
            } => self
                .snapshot()
                .tokens
                .get(name)
                .is_some_and(|t| t.session_valid(*slot, password_id, now())),
        }
    }

    /// The repository actions `principal` has on `repository` now.
    pub fn repository_actions(&self, principal: &Principal, repository: &str) -> Actions {
        let snapshot = self.snapshot();
        match principal {
            Principal::Admin => Actions::ALL,
            Principal::Anonymous if snapshot.settings.anonymous_pull_enabled => {
                Actions::of(&[crate::action::RepositoryAction::ContentRead])
            }
            Principal::Anonymous => Actions::NONE,
            Principal::Token {
                name,
                slot,
                password_id,
            } => {
                let Some(token) = snapshot.tokens.get(name) else {
                    return Actions::NONE;
                };
                if !token.session_valid(*slot, password_id, now()) {
                    return Actions::NONE;
                }
                snapshot
                    .compiled
                    .get(&token.scope_map)
                    .map_or(Actions::NONE, |m| m.repository_actions(repository))
            }
        }
    }

    /// The gateway actions `principal` has on connected registry `name` now.
    pub fn gateway_actions(&self, principal: &Principal, name: &str) -> BTreeSet<GatewayAction> {
        let snapshot = self.snapshot();
        match principal {
            Principal::Admin => GatewayAction::ALL.into_iter().collect(),
            Principal::Anonymous => BTreeSet::new(),
            Principal::Token {
                name: token,
                slot,
                password_id,
            } => snapshot
                .tokens
                .get(token)
                .filter(|t| t.session_valid(*slot, password_id, now()))
                .and_then(|t| snapshot.compiled.get(&t.scope_map))
                .map(|m| m.gateway_actions(name))
                .unwrap_or_default(),
        }
    }

    /// The registry settings.
    pub fn settings(&self) -> Settings {
        self.snapshot().settings.clone()
    }

    // ----- access and refresh tokens -----

    fn claims(
        &self,
        principal: &Principal,
        service: &str,
        kind: TokenKind,
        ttl: Duration,
        access: Vec<Access>,
    ) -> Claims {
        let now = now();
        let (who, sub, slot, pwd) = match principal {
            Principal::Admin => ("admin", self.admin_username(), None, None),
            Principal::Token {
                name,
                slot,
                password_id,
            } => (
                "token",
                name.clone(),
                Some(slot.number()),
                Some(password_id.clone()),
            ),
            Principal::Anonymous => ("anonymous", String::new(), None, None),
        };
        Claims {
            iss: "berth".into(),
            sub,
            aud: service.to_owned(),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            kind,
            who: who.into(),
            slot,
            pwd,
            access,
        }
    }

    /// Issues an access token for `scopes`, granting only what `principal` may do: requested
    /// but ungranted actions are dropped silently, as the Docker token spec asks.
    pub fn issue_access_token(
        &self,
        principal: &Principal,
        service: &str,
        scopes: &[Scope],
    ) -> IssuedToken {
        let mut access: Vec<Access> = Vec::new();
        for scope in scopes {
            match scope.kind.as_str() {
                "repository" => {
                    let granted = Actions::from_docker(&scope.actions)
                        .intersection(self.repository_actions(principal, &scope.name));
                    if !granted.is_empty() {
                        access.push(Access {
                            kind: "repository".into(),
                            name: scope.name.clone(),
                            actions: granted
                                .docker_names()
                                .into_iter()
                                .map(str::to_owned)
                                .collect(),
                        });
                    }
                }
                "registry" if scope.name == "catalog" && *principal != Principal::Anonymous => {
                    access.push(Access {
                        kind: "registry".into(),
                        name: "catalog".into(),
                        actions: vec!["*".into()],
                    });
                }
                // The management API, for the admin only, and only when asked for: an admin
                // token obtained to pull does not manage.
                "registry" if scope.name == "management" && *principal == Principal::Admin => {
                    access.push(Access {
                        kind: "registry".into(),
                        name: "management".into(),
                        actions: vec!["*".into()],
                    });
                }
                _ => {}
            }
        }
        let claims = self.claims(
            principal,
            service,
            TokenKind::Access,
            self.config.access_token_ttl,
            access,
        );
        IssuedToken {
            token: self.key.sign(&claims),
            expires_in: self.config.access_token_ttl.as_secs(),
            issued_at: claims.iat,
            access: claims.access,
        }
    }

    /// Issues a refresh token: a login that can be exchanged for access tokens until it
    /// expires, the token is disabled, or its password changes.
    pub fn issue_refresh_token(&self, principal: &Principal, service: &str) -> String {
        self.key.sign(&self.claims(
            principal,
            service,
            TokenKind::Refresh,
            self.config.refresh_token_ttl,
            Vec::new(),
        ))
    }

    fn principal_of(&self, claims: &Claims) -> Result<Principal, TokenError> {
        let principal = match claims.who.as_str() {
            "admin" if claims.sub == self.admin_username() => Principal::Admin,
            "token" => Principal::Token {
                name: claims.sub.clone(),
                slot: claims
                    .slot
                    .and_then(Slot::from_number)
                    .ok_or(TokenError::Malformed)?,
                password_id: claims.pwd.clone().ok_or(TokenError::Malformed)?,
            },
            "anonymous" => Principal::Anonymous,
            _ => return Err(TokenError::Malformed),
        };
        if self.principal_valid(&principal) {
            Ok(principal)
        } else {
            Err(TokenError::Revoked)
        }
    }

    /// Verifies an access token presented to `service`; returns who it is for and what it
    /// grants. A token issued for another service, or whose login no longer stands
    /// (disabled, rotated password), is refused.
    pub fn verify_access_token(
        &self,
        jwt: &str,
        service: &str,
    ) -> Result<(Principal, Vec<Access>), TokenError> {
        let claims = self.key.verify(jwt, now())?;
        if claims.kind != TokenKind::Access {
            return Err(TokenError::Malformed);
        }
        if claims.aud != service {
            return Err(TokenError::Audience(claims.aud));
        }
        let principal = self.principal_of(&claims)?;
        Ok((principal, claims.access))
    }

    /// Verifies a refresh token presented to `service`; returns who it is for.
    pub fn verify_refresh_token(&self, jwt: &str, service: &str) -> Result<Principal, TokenError> {
        let claims = self.key.verify(jwt, now())?;
        if claims.kind != TokenKind::Refresh || claims.who == "anonymous" {
            return Err(TokenError::Malformed);
        }
        if claims.aud != service {
            return Err(TokenError::Audience(claims.aud));
        }
        self.principal_of(&claims)
    }

    // ----- scope maps -----

    /// Every scope map, built-ins first (their names start with `_`).
    pub fn scope_maps(&self) -> Vec<ScopeMap> {
        self.snapshot().scope_maps.values().cloned().collect()
    }

    /// One scope map.
    pub fn scope_map(&self, name: &str) -> Result<ScopeMap> {
        self.snapshot()
            .scope_maps
            .get(name)
            .cloned()
            .ok_or_else(|| IdentityError::NotFound {
                kind: "scope map",
                name: name.into(),
            })
    }

    /// Creates a scope map.
    pub async fn create_scope_map(
        &self,
        name: &str,
        description: &str,
        repositories: &[RepositoryRule],
        gateways: &[GatewayRule],
    ) -> Result<ScopeMap> {
        let _write = self.writes.lock().await;
        let mut map = ScopeMap::new(name, description, repositories, gateways)?;
        if self.snapshot().scope_maps.contains_key(name) {
            return Err(IdentityError::Conflict(format!(
                "scope map `{name}` already exists; use `scope-map update` to change it"
            )));
        }
        if map.repositories.is_empty() && map.gateways.is_empty() {
            return Err(IdentityError::Invalid(
                "a scope map needs at least one repository or gateway rule".into(),
            ));
        }
        map.created_at = now();
        self.commit(&[Write::PutScopeMap(map.clone())]).await?;
        Ok(map)
    }

    /// Changes a scope map's description and rules.
    pub async fn update_scope_map(&self, name: &str, update: ScopeMapUpdate) -> Result<ScopeMap> {
        let _write = self.writes.lock().await;
        let mut map = self.scope_map(name)?;
        if map.built_in {
            return Err(IdentityError::ReadOnly(format!(
                "`{name}` is a built-in scope map and cannot be changed; create your own"
            )));
        }
        let snapshot = self.snapshot();
        let sync_owner = snapshot.connected.values().find(|r| {
            snapshot
                .tokens
                .get(&r.sync_token)
                .is_some_and(|t| t.scope_map == name)
        });
        if let Some(owner) = sync_owner {
            return Err(IdentityError::ReadOnly(format!(
                "`{name}` is the sync scope map of connected registry `{}` and follows its repositories; change them with \
                 `connected-registry permissions update --name {}`",
                owner.name, owner.name
            )));
        }
        if let Some(description) = update.description {
            map.description = description;
        }
        let mut repositories = map.repositories.clone();
        repositories.extend(update.add_repositories);
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
        gateways.extend(update.add_gateways);
        for remove in &update.remove_gateways {
            for rule in gateways
                .iter_mut()
                .filter(|r| r.connected_registry == remove.connected_registry)
            {
                rule.actions.retain(|a| !remove.actions.contains(a));
            }
        }
        gateways.retain(|r| !r.actions.is_empty());
        let mut updated = ScopeMap::new(&map.name, &map.description, &repositories, &gateways)?;
        updated.created_at = map.created_at;
        // Tokens on this map that a ReadOnly connected registry accepts must stay read-only.
        let mut future = (*snapshot).clone();
        future
            .scope_maps
            .insert(updated.name.clone(), updated.clone());
        for registry in future.connected.values() {
            let users: Vec<String> = registry
                .client_tokens
                .iter()
                .filter(|t| future.tokens.get(*t).is_some_and(|t| t.scope_map == name))
                .cloned()
                .collect();
            Identity::check_client_tokens(&future, registry.mode, &users)?;
        }
        self.commit(&[Write::PutScopeMap(updated.clone())]).await?;
        Ok(updated)
    }

    /// Deletes a scope map that no token uses.
    pub async fn delete_scope_map(&self, name: &str) -> Result<()> {
        let _write = self.writes.lock().await;
        let map = self.scope_map(name)?;
        if map.built_in {
            return Err(IdentityError::ReadOnly(format!(
                "`{name}` is a built-in scope map and cannot be deleted"
            )));
        }
        let users: Vec<String> = self
            .snapshot()
            .tokens
            .values()
            .filter(|t| t.scope_map == name)
            .map(|t| t.name.clone())
            .collect();
        if !users.is_empty() {
            let mut users = users;
            users.sort();
            return Err(IdentityError::Conflict(format!(
                "scope map `{name}` is used by token(s) {}; delete them or move them to another scope map first",
                users
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.commit(&[Write::DeleteScopeMap(name.to_owned())]).await
    }

    // ----- tokens -----

    /// Every token.
    pub fn tokens(&self) -> Vec<Token> {
        let mut tokens: Vec<Token> = self.snapshot().tokens.values().cloned().collect();
        tokens.sort_by(|a, b| a.name.cmp(&b.name));
        tokens
    }

    /// One token.
    pub fn token(&self, name: &str) -> Result<Token> {
        self.snapshot()
            .tokens
            .get(name)
            .cloned()
            .ok_or_else(|| IdentityError::NotFound {
                kind: "token",
                name: name.into(),
            })
    }

    /// Creates a token (and its scope map, when given rules instead of a scope map name).
    pub async fn create_token(&self, new: NewToken) -> Result<(Token, Vec<GeneratedPassword>)> {
        let _write = self.writes.lock().await;
        token::validate_name(&new.name)?;
        let snapshot = self.snapshot();
        if new.name == snapshot.admin.username {
            return Err(IdentityError::Conflict(format!(
                "`{}` is the admin's user name; choose another token name",
                new.name
            )));
        }
        if snapshot.tokens.contains_key(&new.name) {
            return Err(IdentityError::Conflict(format!(
                "token `{}` already exists; use `token update` to change it",
                new.name
            )));
        }
        let mut writes = Vec::new();
        let scope_map = match (
            &new.scope_map,
            new.repositories.is_empty() && new.gateways.is_empty(),
        ) {
            (Some(_), false) => {
                return Err(IdentityError::Invalid(
                    "give either a scope map or repository/gateway rules for a new one, not both"
                        .into(),
                ));
            }
            (Some(name), true) => {
                if !snapshot.scope_maps.contains_key(name) {
                    return Err(IdentityError::NotFound {
                        kind: "scope map",
                        name: name.clone(),
                    });
                }
                name.clone()
            }
            (None, true) => {
                return Err(IdentityError::Invalid(
                    "a token needs a scope map, or repository/gateway rules for a new one".into(),
                ));
            }
            (None, false) => {
                let name = format!("{}-scope-map", new.name);
                if name.len() > 50 {
                    return Err(IdentityError::Invalid(format!(
                        "the scope map created with a token is named `<token>-scope-map`, which must fit in 50 \
                         characters: token names over 40 characters need an existing scope map (`{}` is {})",
                        new.name,
                        new.name.len()
                    )));
                }
                if snapshot.scope_maps.contains_key(&name) {
                    return Err(IdentityError::Conflict(format!(
                        "scope map `{name}` already exists; pass it with --scope-map"
                    )));
                }
                let mut map = ScopeMap::new(
                    &name,
                    &format!("Created with token {}", new.name),
                    &new.repositories,
                    &new.gateways,
                )?;
                map.created_at = now();
                writes.push(Write::PutScopeMap(map));
                name
            }
        };
        let now = now();
        if new.expiry.is_some_and(|e| e <= now) {
            return Err(IdentityError::Invalid(
                "the passwords' expiry must be in the future".into(),
            ));
        }
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
        writes.push(Write::PutToken(token.clone()));
        self.commit(&writes).await?;
        Ok((token, passwords))
    }

    /// Changes a token's scope map or status.
    pub async fn update_token(
        &self,
        name: &str,
        scope_map: Option<&str>,
        status: Option<TokenStatus>,
    ) -> Result<Token> {
        let _write = self.writes.lock().await;
        let mut token = self.token(name)?;
        if let Some(map) = scope_map {
            if !self.snapshot().scope_maps.contains_key(map) {
                return Err(IdentityError::NotFound {
                    kind: "scope map",
                    name: map.into(),
                });
            }
            token.scope_map = map.to_owned();
            // A ReadOnly connected registry accepting this token must stay read-only.
            let mut future = (*self.snapshot()).clone();
            future.tokens.insert(token.name.clone(), token.clone());
            for registry in future
                .connected
                .values()
                .filter(|r| r.client_tokens.contains(&token.name))
            {
                Identity::check_client_tokens(
                    &future,
                    registry.mode,
                    std::slice::from_ref(&token.name),
                )?;
            }
        }
        if let Some(status) = status {
            token.status = status;
        }
        self.commit(&[Write::PutToken(token.clone())]).await?;
        Ok(token)
    }

    /// Deletes a token; its sessions end at once.
    pub async fn delete_token(&self, name: &str) -> Result<()> {
        let _write = self.writes.lock().await;
        self.token(name)?;
        let snapshot = self.snapshot();
        if let Some(owner) = snapshot.connected.values().find(|r| r.sync_token == name) {
            return Err(IdentityError::Conflict(format!(
                "token `{name}` is the sync token of connected registry `{}`; it goes with `connected-registry delete --cleanup`",
                owner.name
            )));
        }
        // A deleted token also leaves the client-token lists that named it, in the same step.
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
        self.commit(&writes).await
    }

    /// Generates new passwords in `slots`, replacing what they held.
    pub async fn generate_passwords(
        &self,
        name: &str,
        slots: &[Slot],
        expiry: Option<i64>,
    ) -> Result<Vec<GeneratedPassword>> {
        let _write = self.writes.lock().await;
        let mut token = self.token(name)?;
        let now = now();
        if expiry.is_some_and(|e| e <= now) {
            return Err(IdentityError::Invalid(
                "the expiry must be in the future".into(),
            ));
        }
        let passwords = slots
            .iter()
            .map(|slot| fill_slot(&mut token, *slot, now, expiry))
            .collect();
        self.commit(&[Write::PutToken(token.clone())]).await?;
        Ok(passwords)
    }

    /// Empties a password slot.
    pub async fn delete_password(&self, name: &str, slot: Slot) -> Result<Token> {
        let _write = self.writes.lock().await;
        let mut token = self.token(name)?;
        token.set_slot(slot, None);
        self.commit(&[Write::PutToken(token.clone())]).await?;
        Ok(token)
    }

    /// The network access settings, compiled for the listeners (cheap: an `Arc` clone).
    pub fn network(&self) -> Arc<NetworkPolicy> {
        Arc::clone(&self.snapshot().network)
    }

    /// Changes the network access settings with `change`, which may refuse; stored in one
    /// transaction. Returns the new settings.
    pub async fn update_network(
        &self,
        change: impl FnOnce(&mut NetworkSettings) -> Result<()>,
    ) -> Result<NetworkSettings> {
        let _write = self.writes.lock().await;
        let mut settings = self.network().settings.clone();
        change(&mut settings)?;
        let value = serde_json::to_value(&settings).expect("network settings serialise");
        self.commit(&[Write::PutSetting(NETWORK_KEY.into(), value)])
            .await?;
        Ok(settings)
    }

    /// Changes settings.
    pub async fn set_anonymous_pull(&self, enabled: bool) -> Result<Settings> {
        let _write = self.writes.lock().await;
        self.commit(&[Write::PutSetting(
            "anonymous_pull_enabled".into(),
            serde_json::Value::Bool(enabled),
        )])
        .await?;
        Ok(self.settings())
    }
}

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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::access_token::SigningKey;
    use crate::action::RepositoryAction;
    use crate::store::SqliteIdentityStore;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    async fn open(dir: &std::path::Path, config: IdentityConfig) -> (Identity, Option<String>) {
        let store = SqliteIdentityStore::open(&dir.join("identity.db"))
            .await
            .unwrap();
        Identity::open(Arc::new(store), SigningKey::generate(), config)
            .await
            .unwrap()
    }

    fn rule(repository: &str, actions: &[&str]) -> RepositoryRule {
        RepositoryRule {
            repository: repository.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn admin_password_is_generated_once_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, generated) = open(dir.path(), IdentityConfig::default()).await;
        let password = generated.expect("a first start generates the admin password");
        assert_eq!(
            identity.login("admin", &password, IP).await,
            Ok(Principal::Admin)
        );
        assert_eq!(
            identity.login("admin", "wrong", IP).await,
            Err(LoginError::Invalid)
        );
        drop(identity);
        let (identity, generated) = open(dir.path(), IdentityConfig::default()).await;
        assert!(generated.is_none(), "shown only once");
        assert_eq!(
            identity.login("admin", &password, IP).await,
            Ok(Principal::Admin)
        );
        // A configured password replaces it.
        drop(identity);
        let config = IdentityConfig {
            admin_password: Some("chosen".into()),
            ..IdentityConfig::default()
        };
        let (identity, _) = open(dir.path(), config).await;
        assert_eq!(
            identity.login("admin", "chosen", IP).await,
            Ok(Principal::Admin)
        );
        assert_eq!(
            identity.login("admin", &password, IP).await,
            Err(LoginError::Invalid)
        );
    }

    #[tokio::test]
    async fn an_unknown_name_costs_what_a_wrong_token_password_does() {
        let dir = tempfile::tempdir().unwrap();
        let config = IdentityConfig {
            admin_password: Some("pw".into()),
            login_failures_per_minute: u32::MAX,
            ..IdentityConfig::default()
        };
        let (identity, _) = open(dir.path(), config).await;
        let new = NewToken {
            name: "robot".into(),
            repositories: vec![rule("team/*", &["content/read"])],
            ..NewToken::default()
        };
        identity.create_token(new).await.unwrap();
        let median = |mut samples: Vec<std::time::Duration>| {
            samples.sort();
            samples[samples.len() / 2]
        };
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for _ in 0..3000 {
            let start = std::time::Instant::now();
            assert!(identity.login("robot", "wrong", IP).await.is_err());
            known.push(start.elapsed());
            let start = std::time::Instant::now();
            assert!(identity.login("nobody", "wrong", IP).await.is_err());
            unknown.push(start.elapsed());
        }
        let (known, unknown) = (median(known), median(unknown));
        let ratio = unknown.as_secs_f64() / known.as_secs_f64();
        assert!(
            (0.5..2.0).contains(&ratio),
            "unknown name {unknown:?}, wrong password {known:?}"
        );
    }

    #[tokio::test]
    async fn token_lifecycle_takes_effect_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = IdentityConfig {
            admin_password: Some("pw".into()),
            ..IdentityConfig::default()
        };
        let (identity, _) = open(dir.path(), config).await;
        let new = NewToken {
            name: "robot".into(),
            repositories: vec![rule("team/*", &["content/read"])],
            ..NewToken::default()
        };
        let (token, passwords) = identity.create_token(new).await.unwrap();
        assert_eq!(token.scope_map, "robot-scope-map");
        assert_eq!(passwords.len(), 2);
        let (p1, p2) = (passwords[0].value.clone(), passwords[1].value.clone());
        let session = identity.login("robot", &p1, IP).await.unwrap();
        assert!(
            identity
                .repository_actions(&session, "team/app")
                .contains(RepositoryAction::ContentRead)
        );
        assert!(identity.repository_actions(&session, "other").is_empty());

        // An access token grants only what was both asked for and allowed.
        let scopes = Scope::parse_all(["repository:team/app:pull,push repository:other:pull"]);
        let issued = identity.issue_access_token(&session, "svc", &scopes);
        assert_eq!(issued.access.len(), 1);
        assert_eq!(issued.access[0].actions, ["pull"]);
        assert!(identity.verify_access_token(&issued.token, "svc").is_ok());

        // Regenerating password1 ends its sessions; password2 keeps working.
        identity
            .generate_passwords("robot", &[Slot::One], None)
            .await
            .unwrap();
        assert!(!identity.principal_valid(&session));
        assert!(identity.verify_access_token(&issued.token, "svc").is_err());
        assert_eq!(
            identity.login("robot", &p1, IP).await,
            Err(LoginError::Invalid)
        );
        let session2 = identity.login("robot", &p2, IP).await.unwrap();

        // Disabling refuses at once; enabling restores.
        identity
            .update_token("robot", None, Some(TokenStatus::Disabled))
            .await
            .unwrap();
        assert!(
            identity
                .repository_actions(&session2, "team/app")
                .is_empty()
        );
        assert_eq!(
            identity.login("robot", &p2, IP).await,
            Err(LoginError::Invalid)
        );
        identity
            .update_token("robot", None, Some(TokenStatus::Enabled))
            .await
            .unwrap();
        assert!(identity.principal_valid(&session2));

        // A scope map in use cannot be deleted; the error names the token.
        let err = identity
            .delete_scope_map("robot-scope-map")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`robot`"), "{err}");
        identity.delete_token("robot").await.unwrap();
        assert!(!identity.principal_valid(&session2));
        identity.delete_scope_map("robot-scope-map").await.unwrap();
    }

    #[tokio::test]
    async fn failed_logins_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let config = IdentityConfig {
            admin_password: Some("pw".into()),
            login_failures_per_minute: 2,
            ..IdentityConfig::default()
        };
        let (identity, _) = open(dir.path(), config).await;
        assert_eq!(
            identity.login("nobody", "x", IP).await,
            Err(LoginError::Invalid)
        );
        assert_eq!(
            identity.login("nobody", "x", IP).await,
            Err(LoginError::Invalid)
        );
        assert!(matches!(
            identity.login("admin", "pw", IP).await,
            Err(LoginError::RateLimited(_))
        ));
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            identity.login("admin", "pw", other).await,
            Ok(Principal::Admin)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_wrong_admin_passwords_stay_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let config = IdentityConfig {
            admin_password: Some("pw".into()),
            login_failures_per_minute: 10,
            max_password_checks: 2,
            ..IdentityConfig::default()
        };
        let (identity, _) = open(dir.path(), config).await;
        let identity = Arc::new(identity);
        let attempts: Vec<_> = (0..200)
            .map(|_| {
                let identity = Arc::clone(&identity);
                tokio::spawn(async move { identity.login("admin", "wrong", IP).await })
            })
            .collect();
        let mut checked = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Err(LoginError::Invalid) => checked += 1,
                Err(LoginError::RateLimited(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // Only the address's allowance of slow checks ran; the rest were refused up front.
        assert_eq!(checked, 10);
        // Token logins hold the limit too, and a right password is refunded.
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        for _ in 0..9 {
            assert_eq!(
                identity.login("nobody", "x", other).await,
                Err(LoginError::Invalid)
            );
        }
        for _ in 0..3 {
            assert_eq!(
                identity.login("admin", "pw", other).await,
                Ok(Principal::Admin)
            );
        }
        assert_eq!(
            identity.login("nobody", "x", other).await,
            Err(LoginError::Invalid)
        );
        assert!(matches!(
            identity.login("nobody", "x", other).await,
            Err(LoginError::RateLimited(_))
        ));
    }

    #[tokio::test]
    async fn built_ins_are_read_only_and_anonymous_pull_is_pull_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = IdentityConfig {
            admin_password: Some("pw".into()),
            ..IdentityConfig::default()
        };
        let (identity, _) = open(dir.path(), config).await;
        assert!(matches!(
            identity.delete_scope_map("_repositories_pull").await,
            Err(IdentityError::ReadOnly(_))
        ));
        assert!(matches!(
            identity
                .update_scope_map("_repositories_admin", ScopeMapUpdate::default())
                .await,
            Err(IdentityError::ReadOnly(_))
        ));
        assert!(
            identity
                .repository_actions(&Principal::Anonymous, "x")
                .is_empty()
        );
        identity.set_anonymous_pull(true).await.unwrap();
        assert_eq!(
            identity.repository_actions(&Principal::Anonymous, "x"),
            Actions::of(&[RepositoryAction::ContentRead])
        );
    }
}
