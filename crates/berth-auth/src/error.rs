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
    /// The object exists already, or is in use.
    #[error("{0}")]
    Conflict(String),
    /// Built-in objects cannot be changed.
    #[error("{0}")]
    ReadOnly(String),
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
