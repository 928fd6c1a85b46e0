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
    /// The `page`/`version` query parameters of a bundle request are not whole numbers, repeated, inconsistent
    /// (a page after the first without its version, a version without a page, a wait with a version), or name
    /// a page past the end of the key list.
    #[error("page and version must be whole numbers, a page after the first names its version, no wait with version, and the page must exist")]
    InvalidPage,
    /// A page of a version the sidecar no longer holds was asked for: start again from the first page.
    #[error("this version is no longer held for paging; start again from page 0")]
    PageVersionGone,
    /// The bundle could not be serialised or built.
    #[error("internal error")]
    Internal,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = match self {
            Self::NotReady => (StatusCode::SERVICE_UNAVAILABLE, self.to_string()).into_response(),
            Self::InvalidWait | Self::InvalidPage => (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": "invalid_request",
                    "error_description": self.to_string(),
                })),
            )
                .into_response(),
            Self::PageVersionGone => (
                StatusCode::GONE,
                Json(serde_json::json!({
                    "error": "version_gone",
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
