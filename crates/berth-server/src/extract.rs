//! Request extractors shared by the JSON APIs (management, gateway): a rejected body or
//! query comes back in the API's error format, like every other error.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body whose rejections come back in the API's error format.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// An optional JSON body: empty means `T::default()`.
pub struct MaybeBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for MaybeBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::management(StatusCode::BAD_REQUEST, "INVALID", e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeBody(T::default()));
        }
        serde_json::from_slice(&bytes).map(MaybeBody).map_err(|e| {
            ApiError::management(
                StatusCode::BAD_REQUEST,
                "INVALID",
                format!("the request body is not valid: {e}"),
            )
        })
    }
}

/// Query parameters whose rejections (`?limit=many`) come back in the API's error format.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::management(
                StatusCode::BAD_REQUEST,
                "INVALID",
                format!("the query is not valid: {}", rejection.body_text()),
            )),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    ApiError::management(
        StatusCode::BAD_REQUEST,
        "INVALID",
        format!("the request body is not valid: {}", rejection.body_text()),
    )
}
