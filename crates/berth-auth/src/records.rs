//! The identity records every part of [`crate::Identity`] shares: the [`IdentityStore`],
//! the in-memory [`Snapshot`] that checks read, and the one way to change them,
//! [`Records::change`].
//!
//! Invariant: the snapshot is what the store holds, as of the last change this process
//! made or saw. A change reads the snapshot, decides its writes from it (with every rule
//! checked there), and commits them in one store transaction; no other change lands between
//! what it read and what it wrote.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use berth_notify::{Notifier, Subscription, Topic};

use crate::connected::ConnectedRegistry;
use crate::error::{Corruption, IdentityError};
use crate::identity::Settings;
use crate::keys::{KeyPurpose, KeyRing, StoredKey};
use crate::network::{NetworkPolicy, NetworkSettings};
use crate::scope_map::{CompiledScopeMap, ScopeMap, built_in_scope_maps};
use crate::store::{AdminRecord, Applied, IdentityStore, StoredIdentities, Write};
use crate::token::Token;

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// The settings key network settings are stored under, as one JSON value.
pub(crate) const NETWORK_KEY: &str = "network";
/// The settings key of the anonymous pull switch.
pub(crate) const ANONYMOUS_PULL_KEY: &str = "anonymous_pull_enabled";

/// Every identity, as of one moment: immutable, shared by the checks that read it.
#[derive(Clone)]
pub(crate) struct Snapshot {
    /// The last change of the store's change log this snapshot includes.
    pub(crate) head: i64,
    pub(crate) tokens: HashMap<String, Token>,
    pub(crate) scope_maps: BTreeMap<String, ScopeMap>,
    pub(crate) compiled: HashMap<String, Arc<CompiledScopeMap>>,
    pub(crate) settings: Settings,
    pub(crate) network: Arc<NetworkPolicy>,
    pub(crate) admin: AdminRecord,
    pub(crate) connected: BTreeMap<String, ConnectedRegistry>,
    pub(crate) keys: BTreeMap<String, StoredKey>,
}

impl Snapshot {
    /// The snapshot of everything `stored` holds, with the built-in scope maps.
    fn build(stored: StoredIdentities) -> Result<Snapshot> {
        let mut scope_maps: BTreeMap<String, ScopeMap> = built_in_scope_maps()
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect();
        scope_maps.extend(stored.scope_maps.into_iter().map(|m| (m.name.clone(), m)));
        let compiled = scope_maps
            .iter()
            .map(|(name, m)| (name.clone(), Arc::new(m.compile())))
            .collect();
        let mut snapshot = Snapshot {
            head: stored.head,
            tokens: stored
                .tokens
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            scope_maps,
            compiled,
            settings: Settings::default(),
            network: Arc::new(NetworkPolicy::new(NetworkSettings::default())),
            admin: stored.admin.ok_or(Corruption::AdminMissing)?,
            connected: stored
                .connected_registries
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
            keys: stored.keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
        };
        for (key, value) in &stored.settings {
            snapshot.set(key, value)?;
        }
        Ok(snapshot)
    }

    fn set(&mut self, key: &str, value: &serde_json::Value) -> Result<()> {
        match key {
            ANONYMOUS_PULL_KEY => {
                self.settings.anonymous_pull_enabled = value.as_bool().unwrap_or(false);
            }
            NETWORK_KEY => {
                let settings = serde_json::from_value(value.clone())
                    .map_err(|e| Corruption::NetworkSettings(e.to_string()))?;
                self.network = Arc::new(NetworkPolicy::new(settings));
            }
            _ => {}
        }
        Ok(())
    }

    /// The current key of `purpose`, if there is one yet.
    pub(crate) fn current_key(&self, purpose: KeyPurpose) -> Option<&StoredKey> {
        self.keys
            .values()
            .filter(|k| k.purpose == purpose && k.retired_at.is_none())
            .max_by_key(|k| k.created_at)
    }

    /// The keys of `purpose` that verify at `now`: the current one, and those retired less
    /// than `grace` seconds ago, newest first.
    pub(crate) fn key_ring(&self, purpose: KeyPurpose, now: i64, grace: i64) -> Result<KeyRing> {
        let current = self
            .current_key(purpose)
            .ok_or(Corruption::NoKey(purpose.as_str()))?;
        let mut previous: Vec<&StoredKey> = self
            .keys
            .values()
            .filter(|k| k.purpose == purpose && k.retired_at.is_some_and(|r| r + grace > now))
            .collect();
        previous.sort_by_key(|k| std::cmp::Reverse(k.retired_at));
        Ok(KeyRing {
            current: current.key()?,
            previous: previous.iter().map(|k| k.key()).collect::<Result<_>>()?,
        })
    }

    /// This snapshot with `writes` applied, as the store will hold it after them.
    pub(crate) fn after(&self, writes: &[Write]) -> Result<Snapshot> {
        let mut next = self.clone();
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
                Write::PutSetting(key, value) => next.set(key, value)?,
                Write::PutConnectedRegistry(registry) => {
                    next.connected
                        .insert(registry.name.clone(), (**registry).clone());
                }
                Write::DeleteConnectedRegistry(name) => {
                    next.connected.remove(name);
                }
                Write::PutKey(key) => {
                    next.keys.insert(key.id.clone(), key.clone());
                }
                Write::DeleteKey(id) => {
                    next.keys.remove(id);
                }
            }
        }
        Ok(next)
    }
}

/// How many times a change is decided again when other processes' changes keep landing
/// first, before it gives up.
const ATTEMPTS: usize = 32;

/// The store and the snapshot of it, changed only through [`Records::change`].
pub(crate) struct Records {
    store: Arc<dyn IdentityStore>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Spares this process's own changes from retrying each other; across processes, the
    /// store's condition on the change log's head is what serialises writers.
    writes: tokio::sync::Mutex<()>,
    /// Announces every change ([`Topic::Identity`]), for those waiting on one (the
    /// gateway's long polls).
    notifier: Arc<dyn Notifier>,
}

impl Records {
    /// The records of `store`, loaded.
    pub(crate) async fn open(
        store: Arc<dyn IdentityStore>,
        notifier: Arc<dyn Notifier>,
    ) -> Result<Records> {
        let snapshot = Snapshot::build(store.load().await?)?;
        Ok(Records {
            store,
            snapshot: RwLock::new(Arc::new(snapshot)),
            writes: tokio::sync::Mutex::new(()),
            notifier,
        })
    }

    /// The snapshot now (cheap: an `Arc` clone).
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether other processes write to the store too.
    pub(crate) fn shared(&self) -> bool {
        self.store.shared()
    }

    /// A receiver that sees every change to identities.
    pub(crate) fn subscribe(&self) -> Subscription {
        self.notifier.subscribe(Topic::Identity)
    }

    /// Announces a change of `topic` through the shared notifier.
    pub(crate) fn notify(&self, topic: Topic) {
        self.notifier.notify(topic);
    }

    /// Installs `next` as the snapshot, unless one at least as recent is there already,
    /// and wakes whoever waits for identity changes: every node for this process's own
    /// writes (`ours`), this node only for changes read from the store (another node made
    /// them and announced them already).
    fn install(&self, next: Snapshot, ours: bool) {
        let mut current = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        if next.head > current.head {
            *current = Arc::new(next);
            drop(current);
            if ours {
                self.notifier.notify(Topic::Identity);
            } else {
                self.notifier.notify_here(Topic::Identity);
            }
        }
    }

    /// Brings the snapshot up to the store's change log: the changes other processes made
    /// (this process's own are in it already). Returns whether anything changed.
    pub(crate) async fn refresh(&self) -> Result<bool> {
        let snapshot = self.snapshot();
        let (head, writes) = self.store.changes_since(snapshot.head).await?;
        if head <= snapshot.head {
            return Ok(false);
        }
        let mut next = snapshot.after(&writes)?;
        next.head = head;
        self.install(next, false);
        Ok(true)
    }

    /// Runs `decide` on the current snapshot and commits the writes it returns, in one store
    /// transaction, then to the snapshot (no reload: the snapshot follows the writes exactly,
    /// so a change costs the same with ten tokens or ten thousand). The snapshot first catches
    /// up with the store's change log (one small query), and the store refuses the writes if
    /// another change landed after that; the snapshot then catches up again and `decide`
    /// runs again, so no change is ever decided on stale records.
    /// Returns what `decide` returned besides its writes; an error from it changes nothing.
    pub(crate) async fn change<T>(
        &self,
        mut decide: impl FnMut(&Snapshot) -> Result<(Vec<Write>, T)>,
    ) -> Result<T> {
        let _ours_one_at_a_time = self.writes.lock().await;
        // Decided on the records as the store holds them: what another process changed
        // since this one last looked counts, for the rules and for the answer.
        self.refresh().await?;
        for _ in 0..ATTEMPTS {
            let snapshot = self.snapshot();
            let (writes, value) = decide(&snapshot)?;
            if writes.is_empty() {
                return Ok(value);
            }
            let mut next = snapshot.after(&writes)?;
            match self.store.apply(snapshot.head, &writes).await? {
                Applied::At(head) => {
                    next.head = head;
                    self.install(next, true);
                    return Ok(value);
                }
                Applied::Stale => {
                    self.refresh().await?;
                }
            }
        }
        Err(IdentityError::Contended)
    }
}
