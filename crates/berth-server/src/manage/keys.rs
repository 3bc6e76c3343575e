//! `/berth/v1/keys`: the registry's signing keys (never their secrets) and their rotation.
//! Keys are each registry's own: a connected registry rotates its keys itself.

use axum::Json;
use axum::extract::State;
use berth_api as api;
use berth_auth::{KeyPurpose, StoredKey};

use super::{Admin, Body, time};
use crate::error::ApiError;
use crate::state::AppState;

fn purpose(p: KeyPurpose) -> api::KeyPurpose {
    match p {
        KeyPurpose::Tokens => api::KeyPurpose::Tokens,
        KeyPurpose::DataUrls => api::KeyPurpose::DataUrls,
    }
}

fn key_view(state: &AppState, key: StoredKey) -> api::KeyView {
    let grace = state.identity.management().key_grace(key.purpose);
    api::KeyView {
        id: key.id,
        purpose: purpose(key.purpose),
        created_at: time(key.created_at),
        retired_at: key.retired_at.map(time),
        verifies_until: key.retired_at.map(|at| time(at + grace)),
    }
}

/// `GET /berth/v1/keys`: every key, current ones first within each purpose.
pub(crate) async fn list(_: Admin, State(state): State<AppState>) -> Json<Vec<api::KeyView>> {
    let keys = state.identity.management().keys();
    Json(keys.into_iter().map(|k| key_view(&state, k)).collect())
}

/// `POST /berth/v1/keys/rotate`: a new current key for the purpose; the old one keeps
/// verifying what it signed until that expires.
pub(crate) async fn rotate(
    _: Admin,
    State(state): State<AppState>,
    Body(body): Body<api::KeyRotate>,
) -> Result<Json<Vec<api::KeyView>>, ApiError> {
    let purpose = KeyPurpose::parse(&body.purpose)?;
    let fresh = state.identity.management().rotate_key(purpose).await?;
    tracing::info!(purpose = purpose.as_str(), key = %fresh.id, "rotated a signing key");
    let keys = state.identity.management().keys();
    Ok(Json(
        keys.into_iter()
            .filter(|k| k.purpose == purpose)
            .map(|k| key_view(&state, k))
            .collect(),
    ))
}
