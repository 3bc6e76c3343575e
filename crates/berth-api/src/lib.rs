//! The wire types of Berth's management API, `/berth/v1/…`: what the server writes and the
//! `berth` command line reads, defined once so the two cannot drift. Serde types only: no
//! HTTP, no I/O, no domain rules; `docs/openapi.json` documents the same shapes, and a test
//! (`tests/openapi.rs`) checks every type here against it.
//!
//! Layout:
//! - [`registry`]: the registry's settings ([`RegistryView`], [`RegistryUpdate`]);
//! - [`scope_map`]: scope maps and their repository and gateway rules;
//! - [`token`]: tokens, their password slots, and passwords just generated;
//! - [`connected`]: connected registries (their sync settings, status, connection string
//!   and permissions);
//! - [`network`]: IP rules, private endpoint connections and the list of endpoints;
//! - [`keys`]: the registry's signing keys and their rotation;
//! - [`gc`]: garbage collections;
//! - [`repository`]: repositories, their tags and manifests, page by page, and deletions;
//! - [`import`]: import jobs (images copied from another registry);
//! - [`audit`]: the audit log of management actions;
//! - [`webhook`]: webhooks, their test calls and delivery records;
//! - [`error`]: the error body, `{"errors":[{"code","message","detail"}]}`, which the OCI
//!   distribution API shares.
//!
//! Who uses it: `berth-server` builds the views from its domain types (the conversions live
//! there, in `manage/`, so this crate knows nothing of `berth-auth`) and reads the request
//! bodies; the `berth` binary's `cli/` sends the bodies and reads the views. Nothing else
//! should need it.
//!
//! Conventions, the same in every module:
//! - A *view* (`…View`) is an answer. Times are RFC 3339 strings; an absent value is `null`,
//!   never a missing field. Fields a registry of an earlier version may not send are
//!   `#[serde(default)]`, and unknown fields are ignored, so an older `berth` reads a newer
//!   registry's answers.
//! - A *body* (`…Create`, `…Patch`, `…Request`, `…Body`) is a request: fields left out
//!   mean "unchanged" or the documented default, and the server refuses unknown fields.
//!   Values with a fixed set (a mode, a log level, a token status, a default action) are
//!   strings in bodies, parsed leniently (case-insensitive, with a message naming the
//!   choices) by the server's domain; in views they are the enums below, written exactly
//!   as documented.
//! - A *query* (`…Query`) is a query string; `false` and absent values are left out.

/// Declares an enum the wire carries as a string: each variant with its exact spelling,
/// `as_str`, `Display` and `ALL` (every value, for tests and help texts).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $wire)] $variant, )+
        }

        impl $name {
            /// Every value, in the documented order.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The value as the wire carries it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod audit;
pub mod connected;
pub mod error;
pub mod gc;
pub mod import;
pub mod keys;
pub mod network;
pub mod registry;
pub mod repository;
pub mod scope_map;
pub mod token;
pub mod webhook;

pub use audit::{AuditEntryView, AuditQuery};
pub use connected::{
    Activation, ConnectedRegistryCreate, ConnectedRegistryDeleteQuery, ConnectedRegistryListQuery,
    ConnectedRegistryPatch, ConnectedRegistryView, ConnectionState, GcSettingsView,
    InstanceSettings, LastGcView, Leftovers, LogLevel, Mode, PermissionsPatch, PermissionsView,
    SettingsRequest, SettingsView, StatusDetailView, SyncSettingsView,
};
pub use error::{ErrorBody, ErrorItem};
pub use gc::{GcRunRequest, GcRunView};
pub use import::{ImportCreate, ImportProgress, ImportState, ImportView};
pub use keys::{KeyPurpose, KeyRotate, KeyView};
pub use network::{
    ConnectionView, DataEndpointView, DecisionBody, EndpointsView, IpRuleBody, LoginServerView,
    NetworkRulesView, PrivateEndpointState,
};
pub use registry::{DefaultAction, RegistryUpdate, RegistryView};
pub use repository::{
    ManifestChildView, ManifestList, ManifestView, PageQuery, RepositoryDeleted, RepositoryList,
    RepositoryView, TagList, TagView,
};
pub use scope_map::{GatewayRule, RepositoryRule, ScopeMapCreate, ScopeMapPatch, ScopeMapView};
pub use token::{
    CredentialsGenerate, CredentialsGenerated, NewPassword, PasswordSlot, PasswordView,
    TokenCreate, TokenCreated, TokenPatch, TokenStatus, TokenView,
};
pub use webhook::{
    DeliveryStatus, WebhookAction, WebhookCreate, WebhookEventView, WebhookEventsQuery,
    WebhookPatch, WebhookStatus, WebhookView,
};
