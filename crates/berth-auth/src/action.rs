//! The actions a scope map grants, and how Docker's token scopes map onto them.

use std::fmt;

/// A repository action (`repositories/<repo>/<action>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepositoryAction {
    /// Pull: read manifests and blobs.
    ContentRead,
    /// Push: upload blobs, put manifests and tags.
    ContentWrite,
    /// Delete manifests, tags and blobs.
    ContentDelete,
    /// List tags and manifests.
    MetadataRead,
    /// Untag, lock and unlock attributes.
    MetadataWrite,
}

impl RepositoryAction {
    /// Every repository action, in display order.
    pub const ALL: [RepositoryAction; 5] = [
        RepositoryAction::ContentRead,
        RepositoryAction::ContentWrite,
        RepositoryAction::ContentDelete,
        RepositoryAction::MetadataRead,
        RepositoryAction::MetadataWrite,
    ];

    /// The action as written in a scope map.
    pub fn as_str(self) -> &'static str {
        match self {
            RepositoryAction::ContentRead => "content/read",
            RepositoryAction::ContentWrite => "content/write",
            RepositoryAction::ContentDelete => "content/delete",
            RepositoryAction::MetadataRead => "metadata/read",
            RepositoryAction::MetadataWrite => "metadata/write",
        }
    }

    /// Parses `content/read` and the like.
    pub fn parse(s: &str) -> Option<Self> {
        RepositoryAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The Docker token-scope action name for this action.
    pub fn docker_name(self) -> &'static str {
        match self {
            RepositoryAction::ContentRead => "pull",
            RepositoryAction::ContentWrite => "push",
            RepositoryAction::ContentDelete => "delete",
            RepositoryAction::MetadataRead => "metadata_read",
            RepositoryAction::MetadataWrite => "metadata_write",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for RepositoryAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Written by name (`content/read`), as scope maps are stored and sent.
impl serde::Serialize for RepositoryAction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A set of repository actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Actions(u8);

impl Actions {
    /// No action.
    pub const NONE: Actions = Actions(0);
    /// All five repository actions.
    pub const ALL: Actions = Actions(0b1_1111);

    /// A set of the given actions.
    pub fn of(actions: &[RepositoryAction]) -> Self {
        actions.iter().fold(Actions::NONE, |set, a| set.with(*a))
    }

    /// This set plus `action`.
    pub fn with(self, action: RepositoryAction) -> Self {
        Actions(self.0 | action.bit())
    }

    /// Whether `action` is in the set.
    pub fn contains(self, action: RepositoryAction) -> bool {
        self.0 & action.bit() != 0
    }

    /// Union.
    pub fn union(self, other: Actions) -> Self {
        Actions(self.0 | other.0)
    }

    /// Intersection.
    pub fn intersection(self, other: Actions) -> Self {
        Actions(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions, in display order.
    pub fn iter(self) -> impl Iterator<Item = RepositoryAction> {
        RepositoryAction::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }

    /// Parses Docker token-scope actions (`pull,push,delete,metadata_read,metadata_write`,
    /// `*` for all). Unknown names are ignored, as the Docker token spec asks.
    pub fn from_docker(actions: &str) -> Self {
        actions
            .split(',')
            .map(str::trim)
            .fold(Actions::NONE, |set, name| match name {
                "*" => Actions::ALL,
                other => match RepositoryAction::ALL
                    .into_iter()
                    .find(|a| a.docker_name() == other)
                {
                    Some(action) => set.with(action),
                    None => set,
                },
            })
    }

    /// The Docker token-scope names of the actions.
    pub fn docker_names(self) -> Vec<&'static str> {
        self.iter().map(RepositoryAction::docker_name).collect()
    }
}

/// A gateway action (`gateway/<connected-registry>/<action>`), used by sync tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GatewayAction {
    /// Read the connected registry's configuration.
    ConfigRead,
    /// Report the connected registry's status.
    ConfigWrite,
    /// Read sync messages.
    MessageRead,
    /// Send sync messages.
    MessageWrite,
}

impl GatewayAction {
    /// Every gateway action.
    pub const ALL: [GatewayAction; 4] = [
        GatewayAction::ConfigRead,
        GatewayAction::ConfigWrite,
        GatewayAction::MessageRead,
        GatewayAction::MessageWrite,
    ];

    /// The action as written in a scope map.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayAction::ConfigRead => "config/read",
            GatewayAction::ConfigWrite => "config/write",
            GatewayAction::MessageRead => "message/read",
            GatewayAction::MessageWrite => "message/write",
        }
    }

    /// Parses `config/read` and the like.
    pub fn parse(s: &str) -> Option<Self> {
        GatewayAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for GatewayAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Written by name (`config/read`), as scope maps are stored and sent.
impl serde::Serialize for GatewayAction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_scope_mapping() {
        assert_eq!(
            Actions::from_docker("pull"),
            Actions::of(&[RepositoryAction::ContentRead])
        );
        assert_eq!(
            Actions::from_docker("pull,push"),
            Actions::of(&[
                RepositoryAction::ContentRead,
                RepositoryAction::ContentWrite
            ])
        );
        assert_eq!(Actions::from_docker("*"), Actions::ALL);
        assert_eq!(
            Actions::from_docker("delete,metadata_read,metadata_write,bogus").docker_names(),
            ["delete", "metadata_read", "metadata_write"]
        );
        assert!(Actions::from_docker("").is_empty());
    }

    #[test]
    fn parse_round_trip() {
        for a in RepositoryAction::ALL {
            assert_eq!(RepositoryAction::parse(a.as_str()), Some(a));
        }
        for a in GatewayAction::ALL {
            assert_eq!(GatewayAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(RepositoryAction::parse("content/readd"), None);
    }
}
