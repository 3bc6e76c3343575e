//! Berth's HTTP layer: the only crate that knows status codes and headers.
//!
//! Layout:
//! - [`api`]: the router of the OCI distribution API and its dispatch by endpoint and method;
//! - [`route`]: parsing `/v2/…` paths, where repository names contain `/`;
//! - [`range`]: `Range` and `Content-Range` from clients, with checked arithmetic;
//! - [`handlers`]: one module per resource (blobs, uploads, manifests, listings, tokens);
//! - [`error`]: [`ApiError`], the one mapping from domain errors to the spec's error JSON;
//! - [`extract`]: JSON body extractors whose rejections use that error format;
//! - [`auth`]: authenticating requests and checking their one action (401/403 rules);
//! - [`manage`]: the management API under `/berth/v1/`, admin only; its bodies and views
//!   are `berth-api`'s, built from the domain's types in `manage/wire.rs`;
//! - [`gateway`]: the parent side of the link with connected registries;
//! - [`network`]: what each listener serves: public switch, IP rules, private endpoint
//!   states, client addresses behind trusted proxies;
//! - [`data`]: the dedicated data endpoint and its signed blob URLs;
//! - [`tls`]: certificates per listener, reloaded when their files change;
//! - [`listener`]: the accept loop (TLS, graceful shutdown);
//! - [`observe`]: per-request metrics and the access log, `/healthz` and `/readyz`, and the
//!   metrics listener's router;
//! - [`state`]: [`AppState`], shared by every handler.

pub mod api;
pub mod auth;
pub mod data;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod handlers;
pub mod listener;
pub mod manage;
pub mod network;
pub mod observe;
pub mod range;
pub mod route;
pub mod state;
pub mod tls;

pub use api::router;
pub use error::ApiError;
pub use listener::{ConnectionLimits, ListenerConfig, serve};
pub use state::{AppState, Site};
