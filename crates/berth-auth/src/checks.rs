//! [`Checks`]: the part of identities on every request's path: logins, whether a login
//! still stands, the actions a caller has, and the access and refresh tokens that carry
//! them. Everything here reads the in-memory snapshot ([`crate::records`]); nothing waits
//! on the database.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_oci::time::unix_now;

use crate::access_token::{Access, Claims, TokenError, TokenKind};
use crate::action::{Actions, GatewayAction};
use crate::admin::{self, AdminCache};
use crate::error::IdentityError;
use crate::identity::{IdentityConfig, PASSWORD_CHECK_WAIT};
use crate::keys::{KeyPurpose, KeyRing, grace};
use crate::rate_limit::LoginLimiter;
use crate::records::Records;
use crate::token::Slot;

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

/// Logins, permission checks and access tokens.
pub struct Checks {
    records: Arc<Records>,
    admin_cache: AdminCache,
    limiter: LoginLimiter,
    /// Bounds the Argon2 checks running at once (each takes ~19 MiB and a blocking thread).
    password_checks: Arc<tokio::sync::Semaphore>,
    config: IdentityConfig,
    /// Counts the Argon2 checks actually running, so a test can see the bound hold.
    #[cfg(test)]
    pub(crate) running_checks: Arc<RunningChecks>,
}

/// The Argon2 checks running now, and the most that ever ran at once (tests only).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct RunningChecks {
    now: std::sync::atomic::AtomicUsize,
    /// The most checks that ran at once.
    pub(crate) peak: std::sync::atomic::AtomicUsize,
    /// Every check that ran.
    pub(crate) total: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl RunningChecks {
    /// Counts a check from now until the guard drops.
    fn enter(self: Arc<Self>) -> impl Drop {
        use std::sync::atomic::Ordering::SeqCst;
        struct Leave(Arc<RunningChecks>);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.now.fetch_sub(1, SeqCst);
            }
        }
        self.total.fetch_add(1, SeqCst);
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(n, SeqCst);
        Leave(self)
    }

    /// Checks running now.
    pub(crate) fn now(&self) -> usize {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Checks {
    pub(crate) fn new(records: Arc<Records>, config: IdentityConfig) -> Self {
        Checks {
            records,
            admin_cache: AdminCache::default(),
            limiter: LoginLimiter::new(
                config.login_failures_per_minute.max(1),
                Duration::from_secs(60),
            ),
            password_checks: Arc::new(tokio::sync::Semaphore::new(
                config.max_password_checks.max(1),
            )),
            config,
            #[cfg(test)]
            running_checks: Arc::default(),
        }
    }

    /// The keys of `purpose` that verify now (the current one signs).
    pub fn keys(&self, purpose: KeyPurpose) -> Result<KeyRing, IdentityError> {
        self.records.snapshot().key_ring(
            purpose,
            unix_now(),
            grace(purpose, self.config.refresh_token_ttl),
        )
    }

    /// Verifies `jwt` with the first token key that accepts its signature.
    fn verify(&self, jwt: &str) -> Result<Claims, TokenError> {
        let ring = self
            .keys(KeyPurpose::Tokens)
            .map_err(|_| TokenError::BadSignature)?;
        let mut last = TokenError::BadSignature;
        for key in ring.verifying() {
            match key.verify(jwt, unix_now()) {
                Err(TokenError::BadSignature) => last = TokenError::BadSignature,
                other => return other,
            }
        }
        Err(last)
    }

    /// Signs `claims` with the current token key.
    fn sign(&self, claims: &Claims) -> String {
        self.keys(KeyPurpose::Tokens)
            .expect("a token key exists from the first start")
            .current
            .sign(claims)
    }

    /// The admin's user name.
    pub fn admin_username(&self) -> String {
        self.records.snapshot().admin.username.clone()
    }

    /// Checks a user name and password from `client`.
    ///
    /// Every failed login costs one Argon2 check, whichever name it names: a wrong admin
    /// password is checked against the admin's hash, any other failure against a dummy one.
    /// Timing therefore tells neither the admin's name (configurable, so an operator may
    /// keep it private) nor which token names exist; a token's right password stays a fast
    /// check. The failure is counted before the check, so the limit bounds this work per
    /// address, and the process-wide bound on Argon2 checks bounds it overall.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Principal, LoginError> {
        let snapshot = self.records.snapshot();
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
            if !self.argon2_check(password, Some(hash.clone())).await? {
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
        // An unknown name and a wrong token password both end in the Argon2 check below,
        // so a failure's cost names no one.
        let principal = match snapshot.tokens.get(username) {
            Some(token) => {
                token
                    .check_password(password, unix_now())
                    .map(|slot| Principal::Token {
                        name: token.name.clone(),
                        slot,
                        password_id: token
                            .slot(slot)
                            .map(|p| p.id().to_owned())
                            .unwrap_or_default(),
                    })
            }
            None => None,
        };
        let Some(principal) = principal else {
            // The work of a wrong admin password, so that a failure names no one.
            self.argon2_check(password, None).await?;
            return Err(LoginError::Invalid);
        };
        attempt.succeeded();
        Ok(principal)
    }

    /// Checks `password` against an Argon2 hash (`None`: a dummy one that nothing matches)
    /// on a blocking thread, within the process-wide bound on checks at once.
    async fn argon2_check(&self, password: &str, hash: Option<String>) -> Result<bool, LoginError> {
        let permit = tokio::time::timeout(
            PASSWORD_CHECK_WAIT,
            Arc::clone(&self.password_checks).acquire_owned(),
        )
        .await
        .map_err(|_| LoginError::RateLimited(Duration::from_secs(1)))?
        .expect("the password check semaphore is never closed");
        let candidate = password.to_owned();
        #[cfg(test)]
        let running = Arc::clone(&self.running_checks);
        // The slot belongs to the blocking check, not to this future: a client that hangs
        // up drops the future, but the check runs on to its end and holds the slot until
        // then, so abandoned logins cannot pile up more checks than the bound.
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            #[cfg(test)]
            let _running = running.enter();
            match hash {
                Some(hash) => admin::verify_password(&candidate, &hash),
                None => {
                    admin::check_no_account(&candidate);
                    false
                }
            }
        })
        .await
        .unwrap_or(false);
        Ok(ok)
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
                .records
                .snapshot()
                .tokens
                .get(name)
                .is_some_and(|t| t.session_valid(*slot, password_id, unix_now())),
        }
    }

    /// The repository actions `principal` has on `repository` now.
    pub fn repository_actions(&self, principal: &Principal, repository: &str) -> Actions {
        let snapshot = self.records.snapshot();
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
                if !token.session_valid(*slot, password_id, unix_now()) {
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
        let snapshot = self.records.snapshot();
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
                .filter(|t| t.session_valid(*slot, password_id, unix_now()))
                .and_then(|t| snapshot.compiled.get(&t.scope_map))
                .map(|m| m.gateway_actions(name))
                .unwrap_or_default(),
        }
    }

    fn claims(
        &self,
        principal: &Principal,
        service: &str,
        kind: TokenKind,
        ttl: Duration,
        access: Vec<Access>,
    ) -> Claims {
        let now = unix_now();
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
            token: self.sign(&claims),
            expires_in: self.config.access_token_ttl.as_secs(),
            issued_at: claims.iat,
            access: claims.access,
        }
    }

    /// Issues a refresh token: a login that can be exchanged for access tokens until it
    /// expires, the token is disabled, or its password changes.
    pub fn issue_refresh_token(&self, principal: &Principal, service: &str) -> String {
        self.sign(&self.claims(
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
        let claims = self.verify(jwt)?;
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
        let claims = self.verify(jwt)?;
        if claims.kind != TokenKind::Refresh || claims.who == "anonymous" {
            return Err(TokenError::Malformed);
        }
        if claims.aud != service {
            return Err(TokenError::Audience(claims.aud));
        }
        self.principal_of(&claims)
    }
}
