//! [`Identity`]: identities, in three parts over one set of records ([`crate::records`]):
//!
//! - [`Checks`] ([`Identity::checks`]): what every request needs: logins, whether a login still
//!   stands, the actions a caller has, access and refresh tokens;
//! - [`Management`] ([`Identity::management`]): the admin's changes to scope maps, tokens and
//!   settings;
//! - [`Hierarchy`] ([`Identity::hierarchy`]): the connected-registry control plane: the
//!   resources, their activation and status, the configuration documents.
//!
//! Checks on the request path read an immutable snapshot of all tokens, scope maps and
//! settings, so they never wait on the database. Changes go to the store and then replace the
//! snapshot; a change (a disabled token, a rotated password, an edited scope map) is
//! therefore in force from the very next request.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access_token::SigningKey;
use crate::admin;
use crate::checks::Checks;
use crate::error::IdentityError;
use crate::hierarchy::Hierarchy;
use crate::keys::KeyPurpose;
use crate::management::Management;
use crate::records::Records;
use crate::store::{AdminRecord, IdentityStore};
use berth_notify::{LocalNotifier, Notifier, Subscription};

type Result<T, E = IdentityError> = std::result::Result<T, E>;

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
    /// Argon2 checks (admin logins, and every failed login) allowed to run at once in the
    /// whole process; more wait their turn, up to [`PASSWORD_CHECK_WAIT`].
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

/// Identities: logins, permissions, their management, and connected registries.
pub struct Identity {
    records: Arc<Records>,
    checks: Checks,
    management: Management,
    hierarchy: Hierarchy,
    store: Arc<dyn IdentityStore>,
}

async fn hash_admin_password(password: String) -> String {
    tokio::task::spawn_blocking(move || admin::hash_password(&password))
        .await
        .expect("hashing does not panic")
}

impl Identity {
    /// Opens identities, creating the admin account on first start, and the token signing
    /// key: `key` when the store holds none yet (a key kept in a file by an earlier version,
    /// so the tokens it signed stay valid; or a new one). Returns the generated admin password
    /// when one was generated (to be shown once).
    pub async fn open(
        store: Arc<dyn IdentityStore>,
        key: SigningKey,
        config: IdentityConfig,
    ) -> Result<(Identity, Option<String>)> {
        Identity::open_with(store, key, config, Arc::new(LocalNotifier::new())).await
    }

    /// [`Identity::open`], announcing changes through `notifier` (the one the registry
    /// shares, so that every wake-up of the process goes through one seam).
    pub async fn open_with(
        store: Arc<dyn IdentityStore>,
        key: SigningKey,
        config: IdentityConfig,
        notifier: Arc<dyn Notifier>,
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
        let records = Arc::new(Records::open(Arc::clone(&store), notifier).await?);
        let identity = Identity {
            management: Management::new(Arc::clone(&records), config.refresh_token_ttl),
            checks: Checks::new(Arc::clone(&records), config),
            hierarchy: Hierarchy::new(Arc::clone(&records), Arc::clone(&store)),
            records,
            store,
        };
        identity
            .management
            .ensure_key(KeyPurpose::Tokens, Some(key))
            .await?;
        Ok((identity, generated))
    }

    /// Logins, permission checks and access tokens.
    pub fn checks(&self) -> &Checks {
        &self.checks
    }

    /// Scope maps, tokens and settings, as the admin manages them.
    pub fn management(&self) -> &Management {
        &self.management
    }

    /// Connected registries: resources, activation, status, configuration documents.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// The store itself, for what it keeps beside identities and outside their change log
    /// (the audit log, webhooks): read and written directly, never part of the snapshot.
    pub fn store(&self) -> &Arc<dyn IdentityStore> {
        &self.store
    }

    /// Announces a change of `topic` through the notifier identities share with the rest of
    /// the process.
    pub fn notify(&self, topic: berth_notify::Topic) {
        self.records.notify(topic);
    }

    /// A receiver that sees every change to identities (tokens, scope maps, settings,
    /// connected registries).
    pub fn subscribe(&self) -> Subscription {
        self.records.subscribe()
    }

    /// Picks up the changes other processes sharing the store made since this one last
    /// looked (its own are in force at once): reads the store's change log after the
    /// snapshot's position. Returns whether anything changed.
    pub async fn refresh(&self) -> Result<bool> {
        self.records.refresh().await
    }

    /// Before a request's credentials are checked: on a store other nodes write to, catches
    /// up with the changes they made (one small query when there are none), so a token
    /// disabled through another node is refused here on the very next request. Nothing to
    /// do on a store only this process writes. If the store cannot be read, the snapshot
    /// stands (a change that committed was read or announced already, unless it is the
    /// very one being made while the store fails), and the failure is returned to log.
    pub async fn catch_up(&self) -> Result<()> {
        if self.records.shared() {
            self.records.refresh().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::access_token::SigningKey;
    use crate::action::Actions;
    use crate::action::RepositoryAction;
    use crate::checks::{LoginError, Principal, Scope};
    use crate::management::{NewToken, ScopeMapUpdate};
    use crate::scope_map::RepositoryRule;
    use crate::store::SqliteIdentityStore;
    use crate::token::{Slot, TokenStatus};

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
        let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        RepositoryRule::parse(repository.into(), &actions).unwrap()
    }

    #[tokio::test]
    async fn admin_password_is_generated_once_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, generated) = open(dir.path(), IdentityConfig::default()).await;
        let password = generated.expect("a first start generates the admin password");
        assert_eq!(
            identity.checks().login("admin", &password, IP).await,
            Ok(Principal::Admin)
        );
        assert_eq!(
            identity.checks().login("admin", "wrong", IP).await,
            Err(LoginError::Invalid)
        );
        drop(identity);
        let (identity, generated) = open(dir.path(), IdentityConfig::default()).await;
        assert!(generated.is_none(), "shown only once");
        assert_eq!(
            identity.checks().login("admin", &password, IP).await,
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
            identity.checks().login("admin", "chosen", IP).await,
            Ok(Principal::Admin)
        );
        assert_eq!(
            identity.checks().login("admin", &password, IP).await,
            Err(LoginError::Invalid)
        );
    }

    #[tokio::test]
    async fn an_unknown_name_costs_what_a_wrong_password_for_a_known_one_does() {
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
        identity.management().create_token(new).await.unwrap();
        let median = |mut samples: Vec<std::time::Duration>| {
            samples.sort();
            samples[samples.len() / 2]
        };
        // Each failure is an Argon2 check (tens of milliseconds), so a few samples give
        // steady medians.
        let mut samples = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..20 {
            for (user, times) in ["robot", "nobody", "admin"].iter().zip(samples.iter_mut()) {
                let start = std::time::Instant::now();
                assert!(identity.checks().login(user, "wrong", IP).await.is_err());
                times.push(start.elapsed());
            }
        }
        let [known, unknown, admin] = samples.map(median);
        for (what, time) in [("wrong token password", known), ("unknown name", unknown)] {
            let ratio = time.as_secs_f64() / admin.as_secs_f64();
            assert!(
                (0.5..2.0).contains(&ratio),
                "{what} {time:?}, wrong admin password {admin:?}"
            );
        }
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
        let (token, passwords) = identity.management().create_token(new).await.unwrap();
        assert_eq!(token.scope_map, "robot-scope-map");
        assert_eq!(passwords.len(), 2);
        let (p1, p2) = (passwords[0].value.clone(), passwords[1].value.clone());
        let session = identity.checks().login("robot", &p1, IP).await.unwrap();
        assert!(
            identity
                .checks()
                .repository_actions(&session, "team/app")
                .contains(RepositoryAction::ContentRead)
        );
        assert!(
            identity
                .checks()
                .repository_actions(&session, "other")
                .is_empty()
        );

        // An access token grants only what was both asked for and allowed.
        let scopes = Scope::parse_all(["repository:team/app:pull,push repository:other:pull"]);
        let issued = identity
            .checks()
            .issue_access_token(&session, "svc", &scopes);
        assert_eq!(issued.access.len(), 1);
        assert_eq!(issued.access[0].actions, ["pull"]);
        assert!(
            identity
                .checks()
                .verify_access_token(&issued.token, "svc")
                .is_ok()
        );

        // Regenerating password1 ends its sessions; password2 keeps working.
        identity
            .management()
            .generate_passwords("robot", &[Slot::One], None)
            .await
            .unwrap();
        assert!(!identity.checks().principal_valid(&session));
        assert!(
            identity
                .checks()
                .verify_access_token(&issued.token, "svc")
                .is_err()
        );
        assert_eq!(
            identity.checks().login("robot", &p1, IP).await,
            Err(LoginError::Invalid)
        );
        let session2 = identity.checks().login("robot", &p2, IP).await.unwrap();

        // Disabling refuses at once; enabling restores.
        identity
            .management()
            .update_token("robot", None, Some(TokenStatus::Disabled))
            .await
            .unwrap();
        assert!(
            identity
                .checks()
                .repository_actions(&session2, "team/app")
                .is_empty()
        );
        assert_eq!(
            identity.checks().login("robot", &p2, IP).await,
            Err(LoginError::Invalid)
        );
        identity
            .management()
            .update_token("robot", None, Some(TokenStatus::Enabled))
            .await
            .unwrap();
        assert!(identity.checks().principal_valid(&session2));

        // A scope map in use cannot be deleted; the error names the token.
        let err = identity
            .management()
            .delete_scope_map("robot-scope-map")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`robot`"), "{err}");
        identity.management().delete_token("robot").await.unwrap();
        assert!(!identity.checks().principal_valid(&session2));
        identity
            .management()
            .delete_scope_map("robot-scope-map")
            .await
            .unwrap();
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
            identity.checks().login("nobody", "x", IP).await,
            Err(LoginError::Invalid)
        );
        assert_eq!(
            identity.checks().login("nobody", "x", IP).await,
            Err(LoginError::Invalid)
        );
        assert!(matches!(
            identity.checks().login("admin", "pw", IP).await,
            Err(LoginError::RateLimited(_))
        ));
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            identity.checks().login("admin", "pw", other).await,
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
                tokio::spawn(async move { identity.checks().login("admin", "wrong", IP).await })
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
                identity.checks().login("nobody", "x", other).await,
                Err(LoginError::Invalid)
            );
        }
        for _ in 0..3 {
            assert_eq!(
                identity.checks().login("admin", "pw", other).await,
                Ok(Principal::Admin)
            );
        }
        assert_eq!(
            identity.checks().login("nobody", "x", other).await,
            Err(LoginError::Invalid)
        );
        assert!(matches!(
            identity.checks().login("nobody", "x", other).await,
            Err(LoginError::RateLimited(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_admin_logins_do_not_free_their_password_check_slot() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let config = IdentityConfig {
            admin_password: Some("pw".into()),
            max_password_checks: 1,
            ..IdentityConfig::default()
        };
        let (identity, _) = open(dir.path(), config).await;
        // Clients on many addresses, each hanging up a moment after its check started:
        // every dropped login must keep its slot until its Argon2 check has ended.
        for i in 0..8u8 {
            let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i));
            let login = identity.checks().login("admin", "wrong", client);
            let _ = tokio::time::timeout(Duration::from_millis(2), login).await;
        }
        while identity.checks().running_checks.now() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(identity.checks().running_checks.peak.load(SeqCst), 1);
    }

    #[tokio::test]
    async fn every_failed_login_costs_what_a_wrong_admin_password_does() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let config = IdentityConfig {
            admin_username: "keeper".into(),
            admin_password: Some("pw".into()),
            login_failures_per_minute: 100,
            ..IdentityConfig::default()
        };
        let (identity, _) = open(dir.path(), config).await;
        let new = NewToken {
            name: "robot".into(),
            repositories: vec![rule("app", &["content/read"])],
            ..NewToken::default()
        };
        let (_, passwords) = identity.management().create_token(new).await.unwrap();
        let password = passwords[0].value.clone();
        let checks = identity.checks();
        let argon2_runs = || checks.running_checks.total.load(SeqCst);
        // Each failure runs one Argon2 check, whichever name it names, so that timing tells
        // neither the admin's name nor which token names exist.
        for (user, wrong) in [("keeper", "x"), ("nobody", "x"), ("robot", "x")] {
            let before = argon2_runs();
            assert_eq!(
                checks.login(user, wrong, IP).await,
                Err(LoginError::Invalid)
            );
            assert_eq!(argon2_runs(), before + 1, "a wrong password for `{user}`");
        }
        // A token's right password stays a fast check.
        let before = argon2_runs();
        assert!(checks.login("robot", &password, IP).await.is_ok());
        assert_eq!(argon2_runs(), before);
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
            identity
                .management()
                .delete_scope_map("_repositories_pull")
                .await,
            Err(IdentityError::ReadOnly { .. })
        ));
        assert!(matches!(
            identity
                .management()
                .update_scope_map("_repositories_admin", ScopeMapUpdate::default())
                .await,
            Err(IdentityError::ReadOnly { .. })
        ));
        assert!(
            identity
                .checks()
                .repository_actions(&Principal::Anonymous, "x")
                .is_empty()
        );
        identity
            .management()
            .set_anonymous_pull(true)
            .await
            .unwrap();
        assert_eq!(
            identity
                .checks()
                .repository_actions(&Principal::Anonymous, "x"),
            Actions::of(&[RepositoryAction::ContentRead])
        );
    }
}
