//! The audit log: every management action that may change something (any method but `GET`
//! and `HEAD`) taken by the admin is recorded after it is answered, with who, from where,
//! the route, the path and the status; for settings, the settings before and after.
//!
//! How: [`record`] is a middleware on the management routes. It puts an [`AuditNote`] in the
//! request; the admin extractor (`Admin`, which every management handler takes) marks it
//! once the caller is known to be the admin; after the answer, a marked note becomes an
//! entry. A request refused before the admin check (no or wrong credentials) is not recorded
//! (it changed nothing, and anyone could fill the log with them). No request body is ever
//! recorded, so no password, token secret or webhook secret can reach the log; settings are
//! recorded as the API shows them, which holds none.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use berth_api as api;
use berth_auth::audit::AuditEntry;
use berth_oci::time::unix_now;
use http::Method;

use super::{Admin, time};
use crate::error::ApiError;
use crate::extract::Query;
use crate::state::AppState;

/// Set by the admin extractor on a request the audit middleware watches.
#[derive(Clone, Default)]
pub struct AuditNote(Arc<Mutex<Option<String>>>);

impl AuditNote {
    /// The caller is the admin, `actor` by name.
    pub fn mark(&self, actor: String) {
        *self.0.lock().expect("not poisoned") = Some(actor);
    }

    fn actor(&self) -> Option<String> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// The settings a route changes, as the API shows them, for the entry's `before` and
/// `after`; `None` for routes that are no settings.
async fn settings(state: &AppState, route: &str, path: &str) -> Option<serde_json::Value> {
    match route {
        "/berth/v1/registry" | "/berth/v1/network-rules" => {
            let network = state.identity.management().network();
            Some(serde_json::json!({
                "registry": super::registry_view(state),
                "network_rules": super::network::rules_view(&network.settings),
            }))
        }
        "/berth/v1/webhooks/{name}" => {
            let name = path.rsplit('/').next().unwrap_or_default();
            let webhook = state.webhooks.show(name).await.ok()?;
            serde_json::to_value(super::webhook::view(webhook, false)).ok()
        }
        _ => None,
    }
}

/// The route `path` is served by, as [`super::ROUTES`] names it (`/berth/v1/tokens/{name}`);
/// a path under `/berth/v1/repositories/` (whose names contain `/`) is named by its kind.
fn route_of(path: &str) -> String {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let found = super::ROUTES.iter().map(|(route, _)| *route).find(|route| {
        let parts: Vec<&str> = route.split('/').collect();
        parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(p, s)| p == s || (p.starts_with('{') && !s.is_empty()))
    });
    match found {
        Some(route) => route.to_owned(),
        None if path.starts_with("/berth/v1/repositories/") => {
            if path.contains("/_manifests/") {
                "/berth/v1/repositories/{name}/_manifests/{digest}".into()
            } else if path.contains("/_tags/") {
                "/berth/v1/repositories/{name}/_tags/{tag}".into()
            } else {
                "/berth/v1/repositories/{name}".into()
            }
        }
        None => path.to_owned(),
    }
}

/// Records the admin's management actions (see the module's documentation).
pub async fn record(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let route = route_of(&path);
    let action = format!("{} {route}", request.method());
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
    let note = AuditNote::default();
    request.extensions_mut().insert(note.clone());
    let before = settings(&state, &route, &path).await;
    let response = next.run(request).await;
    let Some(actor) = note.actor() else {
        return response;
    };
    let after = match before {
        Some(_) if response.status().is_success() => settings(&state, &route, &path).await,
        _ => None,
    };
    let entry = AuditEntry {
        id: 0,
        at: unix_now(),
        actor,
        client,
        action,
        resource: path,
        status: response.status().as_u16(),
        before,
        after,
    };
    if let Err(e) = state.identity.store().append_audit(&entry).await {
        // The action happened; its answer stands. The failure is the operator's to see.
        tracing::error!(error = %e, action = %entry.action, resource = %entry.resource, "cannot record a management action in the audit log");
    }
    response
}

/// `GET /berth/v1/audit`: the recorded actions, oldest first.
pub(super) async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<api::AuditQuery>,
) -> Result<Json<Vec<api::AuditEntryView>>, ApiError> {
    let since = query
        .since
        .as_deref()
        .map(|s| super::parse_time("since", s))
        .transpose()?
        .unwrap_or(0);
    let limit = super::listing_limit(query.limit)?;
    let entries = state
        .identity
        .store()
        .audit(since, query.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| api::AuditEntryView {
                id: e.id,
                at: time(e.at),
                actor: e.actor,
                client: e.client,
                action: e.action,
                resource: e.resource,
                status: e.status,
                before: e.before,
                after: e.after,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn routes_are_named_by_their_template() {
        assert_eq!(route_of("/berth/v1/tokens/ci"), "/berth/v1/tokens/{name}");
        assert_eq!(route_of("/berth/v1/tokens"), "/berth/v1/tokens");
        assert_eq!(
            route_of("/berth/v1/webhooks/hook1/ping"),
            "/berth/v1/webhooks/{name}/ping"
        );
        assert_eq!(
            route_of("/berth/v1/repositories/team/app/_tags/v1"),
            "/berth/v1/repositories/{name}/_tags/{tag}"
        );
        assert_eq!(
            route_of("/berth/v1/repositories/team/app"),
            "/berth/v1/repositories/{name}"
        );
    }
}
