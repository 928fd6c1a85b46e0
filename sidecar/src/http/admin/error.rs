//! Errors of the admin API, and the bearer-token check every admin endpoint starts with.
//!
//! Bodies are JSON `{"error", "error_description"?}` with fixed codes; details go to the log.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api_keys::ApiKeyError;
use crate::http::state::AppState;

/// The challenge of a request without a bearer token (RFC 6750 §3).
const CHALLENGE: &str = "Bearer realm=\"keymesh-admin\"";
/// The challenge of a request with a wrong token.
const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"keymesh-admin\", error=\"invalid_token\"";

/// Why an admin request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AdminError {
    /// No admin token is configured, so the admin API is off.
    #[error("admin_api_disabled")]
    Disabled,
    /// No `Authorization: Bearer` credentials.
    #[error("unauthorized")]
    MissingToken,
    /// A bearer token that is not the admin token.
    #[error("invalid_token")]
    InvalidToken,
    /// The request is malformed or a value is not acceptable; the description says which.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// No API key has this id.
    #[error("not_found")]
    NotFound,
    /// The key kept changing under the operation.
    #[error("conflict")]
    Conflict,
    /// Redis is not available right now.
    #[error("temporarily_unavailable")]
    Unavailable,
    /// An internal failure, such as a corrupt record.
    #[error("server_error")]
    ServerError,
}

impl AdminError {
    fn code(&self) -> &'static str {
        match self {
            Self::Disabled => "admin_api_disabled",
            Self::MissingToken => "unauthorized",
            Self::InvalidToken => "invalid_token",
            Self::InvalidRequest(_) => "invalid_request",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Unavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Disabled => StatusCode::FORBIDDEN,
            Self::MissingToken | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ApiKeyError> for AdminError {
    fn from(error: ApiKeyError) -> Self {
        if error.is_invalid_request() {
            return Self::InvalidRequest(error.to_string());
        }
        match error {
            ApiKeyError::Conflict(_) => Self::Conflict,
            ApiKeyError::Redis(error) => {
                tracing::warn!(%error, "cannot reach redis for an admin request");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "admin request failed");
                Self::ServerError
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = match &self {
            Self::InvalidRequest(description) => {
                serde_json::json!({ "error": self.code(), "error_description": description })
            }
            _ => serde_json::json!({ "error": self.code() }),
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Self::MissingToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE),
                );
            }
            Self::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(INVALID_TOKEN_CHALLENGE),
                );
            }
            Self::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// Proof that the request carries the admin token: the first extractor of every admin handler.
#[derive(Debug)]
pub(crate) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        let Some(expected) = state.config().admin_token.as_ref() else {
            return Err(AdminError::Disabled);
        };
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(if parts.headers.contains_key(header::AUTHORIZATION) {
                AdminError::InvalidRequest("send one Authorization header".to_owned())
            } else {
                AdminError::MissingToken
            });
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            None => Err(AdminError::MissingToken),
            Some(token) if expected.verify(token) => Ok(Self),
            Some(_) => {
                tracing::warn!(path = %parts.uri.path(), "admin request with a wrong token");
                Err(AdminError::InvalidToken)
            }
        }
    }
}
