//! Identities: who may do what to which repository. No HTTP.
//!
//! Layout:
//! - [`action`]: repository and gateway actions, and Docker's token-scope names for them;
//! - [`scope_map`]: scope maps (rules with wildcards that add up) and the five built-ins;
//! - [`token`]: tokens with two password slots; passwords generated here, stored as hashes;
//! - [`admin`]: the admin's human-chosen password, Argon2id, with a brief success cache;
//! - [`audit`]: the audit log's entries (who did which management action, from where);
//! - [`webhook`]: webhooks as stored, their delivery records, events relayed by sites;
//! - [`access_token`]: signed access and refresh tokens (JWT, HMAC-SHA256);
//! - [`keys`]: the secret keys that sign tokens and data URLs, stored and rotated;
//! - [`rate_limit`]: failed logins limited per client address;
//! - [`store`]: the [`IdentityStore`] seam and its SQLite implementation;
//! - [`postgres`]: [`PostgresIdentityStore`], the same store on PostgreSQL, for several nodes;
//! - `contract` (feature `contract-tests`): the suite every store implementation runs;
//! - [`connected`], [`hierarchy`]: connected registries as resources of the root: their
//!   rules, sync tokens and derived sync scope maps, and status;
//! - [`instances`]: which instance holds each connected registry: activation, the
//!   active-instance check, status reports, deactivation;
//! - [`cron`]: a sync schedule's cron expression and when it ticks (UTC);
//! - [`network`]: network access settings (public switch, IP rules, private endpoint
//!   states, data endpoint switch) and their compiled form;
//! - [`gateway`]: the configuration document that flows down to connected registries, and
//!   the gateway seam that serves it;
//! - [`records`]: the store and the in-memory snapshot of it, and the one way to change both;
//! - [`checks`]: [`Checks`], logins, permission checks on the snapshot, token issuing;
//! - [`management`]: [`Management`], the admin's changes to scope maps, tokens, settings;
//! - [`identity`]: [`Identity`], the entry point holding the three parts (`checks`,
//!   `management`, `hierarchy`) over the same records.

pub mod access_token;
pub mod action;
pub mod admin;
pub mod audit;
pub mod checks;
pub mod connected;
#[cfg(feature = "contract-tests")]
pub mod contract;
pub mod cron;
pub mod error;
pub mod gateway;
pub mod hierarchy;
pub mod identity;
pub mod instances;
pub mod keys;
pub mod management;
pub mod network;
pub mod postgres;
pub mod rate_limit;
pub(crate) mod records;
pub mod scope_map;
pub(crate) mod statuses;
pub mod store;
pub mod token;
pub mod webhook;

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub use access_token::{Access, SigningKey};
pub use action::{Actions, GatewayAction, RepositoryAction};
pub use checks::{Checks, IssuedToken, LoginError, Principal, Scope};
pub use error::IdentityError;
pub use hierarchy::Hierarchy;
pub use identity::{Identity, IdentityConfig, Settings};
pub use instances::Instances;
pub use keys::{KeyPurpose, KeyRing, StoredKey};
pub use management::{GeneratedPassword, Management, NewToken, ScopeMapUpdate};
pub use postgres::PostgresIdentityStore;
pub use scope_map::{GatewayRule, RepositoryRule, ScopeMap};
pub use store::{IdentityStore, SqliteIdentityStore};
pub use token::{Slot, Token, TokenStatus};

/// Creates a new file readable and writable only by its owner (mode 0600).
pub fn private_file(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}
