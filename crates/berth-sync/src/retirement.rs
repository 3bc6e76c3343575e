//! An instance its root retired for good: deactivated (a replacement takes over), its
//! connected registry deleted, or its sync token refused.
//!
//! The instance learns it on a call to its parent, logs it at error level and stops, and
//! records it in `retired.json` in its data directory, so that a restart does not serve the
//! credentials of its last configuration (which the root can no longer revoke) nor knock on
//! the parent's door again. The record holds for as long as its cause does:
//! - deactivated: for this instance identity (`instance.id`). The root refuses it for good; a
//!   new identity (remove `instance.id` and `retired.json`) activates as a replacement;
//! - deleted: for this connection string. A registry created again under the same name has a
//!   new sync token password, so its connection string starts the instance again;
//! - sync token refused (`401`: a regenerated password, a disabled or deleted token): for
//!   this connection string, so that a supervisor restarting the instance does not log a
//!   failed login at the parent per restart (which would lock the site's other clients out
//!   of it). A new connection string (`get-settings --generate-password`) starts it again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::connection::ConnectionString;

/// Why the root retired this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// `berth connected-registry deactivate` on the root.
    Deactivated,
    /// `berth connected-registry delete` on the root.
    Deleted,
    /// The parent refused the sync token (`401`).
    TokenRefused,
}

/// What `retired.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// Why.
    pub cause: Cause,
    /// The connected registry.
    pub registry: String,
    /// The instance identity it applies to (deactivated).
    pub instance_id: String,
    /// A fingerprint of the connection string it applies to (deleted); never the password.
    pub connection: String,
    /// When the instance learnt it, Unix seconds.
    pub at: i64,
    /// What the parent said.
    pub message: String,
}

/// The file that records a retirement.
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("retired.json")
}

/// A fingerprint of the parts of a connection string that name the registry and prove the
/// sync token: the same string, the same fingerprint; a new password, a new fingerprint.
pub fn fingerprint(connection: &ConnectionString) -> String {
    let mut hash = Sha256::new();
    for part in [
        &connection.registry,
        &connection.sync_token,
        &connection.password,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

impl Retirement {
    /// Whether this record still holds for an instance `instance_id` started with
    /// `connection`.
    pub fn holds_for(&self, instance_id: &str, connection: &ConnectionString) -> bool {
        self.registry == connection.registry
            && match self.cause {
                Cause::Deactivated => self.instance_id == instance_id,
                Cause::Deleted | Cause::TokenRefused => self.connection == fingerprint(connection),
            }
    }

    /// What the instance says when it stops, or refuses to start, for this reason.
    pub fn explain(&self, data_dir: &Path) -> String {
        let when = jiff::Timestamp::from_second(self.at)
            .map(|t| t.display_with_offset(jiff::tz::Offset::UTC).to_string())
            .unwrap_or_default();
        match self.cause {
            Cause::Deactivated => format!(
                "this instance of connected registry `{}` was deactivated on the root registry ({when}): it no longer \
                 syncs or serves, so that its replacement can. To run this data directory as the registry's instance \
                 again, remove `{}` and `{}` (it then activates as a new instance, once no other instance holds the \
                 registry)",
                self.registry,
                data_dir.join("instance.id").display(),
                file(data_dir).display(),
            ),
            Cause::Deleted => format!(
                "connected registry `{}` was deleted on the root registry ({when}): this instance no longer syncs or \
                 serves. To use this data directory again, create the registry again on the root and start with the \
                 new connection string from `berth connected-registry get-settings`",
                self.registry
            ),
            Cause::TokenRefused => format!(
                "the parent refused the sync token of connected registry `{registry}` ({when}: {message}): this \
                 instance no longer syncs or serves, and does not call its parent again with this connection string. \
                 Get a new one on the root with `berth connected-registry get-settings --name {registry} \
                 --generate-password 1` (or 2) and start with it. If the token was only disabled, or the parent (a \
                 connected registry itself) had not yet learnt it, fix that and remove `{file}`",
                registry = self.registry,
                message = self.message,
                file = file(data_dir).display(),
            ),
        }
    }

    /// The record in `data_dir`, if there is one.
    pub fn load(data_dir: &Path) -> Option<Retirement> {
        let text = std::fs::read_to_string(file(data_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the record to `data_dir`, durably.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = file(data_dir);
        let temp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).expect("a retirement serialises");
        crate::instance::write_private(&temp, &text)?;
        std::fs::rename(&temp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(password: &str) -> ConnectionString {
        ConnectionString::parse(&format!(
            "ConnectedRegistryName=factory;SyncTokenName=factory-sync-token;SyncTokenPassword={password};\
             ParentGatewayEndpoint=root:5000;ParentEndpointProtocol=http"
        ))
        .unwrap()
    }

    #[test]
    fn a_record_holds_for_its_cause_only() {
        let dir = tempfile::tempdir().unwrap();
        let old = connection("one");
        let retired = |cause| Retirement {
            cause,
            registry: "factory".into(),
            instance_id: "instance-a".into(),
            connection: fingerprint(&old),
            at: 0,
            message: String::new(),
        };
        let deactivated = retired(Cause::Deactivated);
        assert!(deactivated.holds_for("instance-a", &connection("two")));
        assert!(!deactivated.holds_for("instance-b", &old));
        let deleted = retired(Cause::Deleted);
        assert!(deleted.holds_for("instance-b", &old));
        assert!(!deleted.holds_for("instance-a", &connection("two")));

        deleted.save(dir.path()).unwrap();
        assert_eq!(Retirement::load(dir.path()), Some(deleted.clone()));
        assert!(
            !std::fs::read_to_string(file(dir.path()))
                .unwrap()
                .contains("one"),
            "never the password"
        );
        assert!(deleted.explain(dir.path()).contains("get-settings"));
        let refused = retired(Cause::TokenRefused);
        assert!(refused.holds_for("instance-b", &old));
        assert!(!refused.holds_for("instance-a", &connection("two")));
        assert!(
            refused
                .explain(dir.path())
                .contains("get-settings --name factory --generate-password 1")
        );
        assert!(deactivated.explain(dir.path()).contains("instance.id"));
    }
}
