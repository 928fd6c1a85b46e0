//! Errors of the non-OAuth, non-admin endpoints.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Why a key-material request cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AppError {
    /// The first snapshot of the key set has not been loaded from Redis yet.
    #[error("key set not loaded yet")]
    NotReady,
    /// The `wait` query parameter of a bundle request is not a whole number of seconds in range, or repeated.
    #[error("wait must be a whole number of seconds from 0 to {max}", max = crate::http::keys::MAX_WAIT_SECS)]
    InvalidWait,
    /// The bundle could not be serialised or built.
    #[error("internal error")]
    Internal,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = match self {
            Self::NotReady => (StatusCode::SERVICE_UNAVAILABLE, self.to_string()).into_response(),
            Self::InvalidWait => (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": "invalid_request",
                    "error_description": self.to_string(),
                })),
            )
                .into_response(),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self == Self::NotReady {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
