//! What can go wrong with identities, in domain terms; the HTTP layer maps these to statuses.

/// An error of an identity operation.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The request is malformed or breaks a rule; the message says which and how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The named object does not exist.
    #[error("{kind} `{name}` does not exist")]
    NotFound {
        /// `token` or `scope map`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// An object of that name exists already.
    #[error("{kind} `{name}` already exists{hint}")]
    AlreadyExists {
        /// `token`, `scope map`, `connected registry`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// What to do instead, starting with its own separator (`; use …`).
        hint: &'static str,
    },
    /// The object is in use: what is asked would break what uses it.
    #[error("{kind} `{name}` {reason}")]
    InUse {
        /// `token`, `scope map`, `connected registry`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What uses it, and what to do first.
        reason: String,
    },
    /// Another conflict with the state of the registry; the message says which.
    #[error("{0}")]
    Conflict(String),
    /// Built-in objects cannot be changed.
    #[error("{0}")]
    ReadOnly(String),
    /// Another instance holds the connected registry.
    #[error(
        "connected registry `{registry}` is already activated by another instance; run \
         `berth connected-registry deactivate --name {registry}` to let a replacement activate"
    )]
    AlreadyActivated {
        /// The connected registry.
        registry: String,
    },
    /// The instance was deactivated on the root: it must stop for good, so that a
    /// replacement can take over.
    #[error(
        "instance `{instance}` of connected registry `{registry}` was deactivated on the root registry: it no \
         longer syncs or serves; a replacement instance activates in its place"
    )]
    InstanceDeactivated {
        /// The connected registry.
        registry: String,
        /// The deactivated instance.
        instance: String,
    },
    /// The instance is not (or no longer) the active instance of its connected registry.
    #[error(
        "instance `{instance}` is not the active instance of connected registry `{registry}`; restart it to activate again"
    )]
    InstanceNotActive {
        /// The connected registry.
        registry: String,
        /// The instance that asked.
        instance: String,
    },
    /// This registry is a connected registry: its identities come from its parent.
    #[error(
        "this registry is connected registry `{registry}`: its tokens, scope maps and connected registries are \
         managed on the root registry and reach it with the configuration from its parent ({parent}); make the \
         change there (`berth login <root>`)"
    )]
    ManagedByParent {
        /// This connected registry's name.
        registry: String,
        /// Its parent's address.
        parent: String,
    },
    /// The store failed.
    #[error("identity store: {0}")]
    Store(Box<dyn std::error::Error + Send + Sync>),
}

impl IdentityError {
    /// Wraps a store failure.
    pub fn store(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        IdentityError::Store(Box::new(e))
    }
}
