//! Errors of the account API: JSON `{"error", "error_description"}` with fixed codes, and the RFC 6750 challenge
//! on 401 and on a token without the account scope.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api_keys::{ApiKeyError, UserKeyError};

/// Why an account API request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AccountApiError {
    /// Neither a live logged-in session nor a bearer token.
    #[error("unauthorized")]
    Unauthenticated,
    /// A bearer token that is not a valid, live access token of this server for the account API.
    #[error("invalid_token")]
    InvalidToken,
    /// A valid token without the account scope, or one that speaks for a client rather than a user.
    #[error("insufficient_scope")]
    InsufficientScope,
    /// A cookie-authenticated change without the session's CSRF token in `X-CSRF-Token`.
    #[error("invalid_csrf_token")]
    Csrf,
    /// A cookie-authenticated change the browser says comes from another site.
    #[error("cross_site_request")]
    CrossSite,
    /// The request is malformed or a value is not acceptable; the description says which.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// The operator's policy refuses it; the description says why.
    #[error("policy_denied: {0}")]
    PolicyDenied(String),
    /// The user has no key with this id.
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

impl AccountApiError {
    fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthorized",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::Csrf => "invalid_csrf_token",
            Self::CrossSite => "cross_site_request",
            Self::InvalidRequest(_) => "invalid_request",
            Self::PolicyDenied(_) => "policy_denied",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Unavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope | Self::Csrf | Self::CrossSite | Self::PolicyDenied(_) => {
                StatusCode::FORBIDDEN
            }
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn description(&self) -> Option<String> {
        Some(match self {
            Self::Unauthenticated => {
                "sign in at /account/api-keys or send a bearer token".to_owned()
            }
            Self::InvalidToken => "the access token is invalid, expired or revoked".to_owned(),
            Self::InsufficientScope => {
                format!(
                    "a user's access token with the scope {}",
                    super::ACCOUNT_SCOPE
                )
            }
            Self::Csrf => "send the session's csrf_token in the X-CSRF-Token header".to_owned(),
            Self::CrossSite => "requests from another site are refused".to_owned(),
            Self::InvalidRequest(description) | Self::PolicyDenied(description) => {
                description.clone()
            }
            Self::NotFound => "you have no api key with this id".to_owned(),
            _ => return None,
        })
    }

    fn challenge(&self) -> Option<String> {
        let realm = "Bearer realm=\"keymesh-account\"";
        match self {
            Self::Unauthenticated => Some(realm.to_owned()),
            Self::InvalidToken => Some(format!("{realm}, error=\"invalid_token\"")),
            Self::InsufficientScope => Some(format!(
                "{realm}, error=\"insufficient_scope\", scope=\"{}\"",
                super::ACCOUNT_SCOPE
            )),
            _ => None,
        }
    }
}

impl From<UserKeyError> for AccountApiError {
    fn from(error: UserKeyError) -> Self {
        if error.is_invalid_request() {
            return Self::InvalidRequest(error.to_string());
        }
        match error {
            UserKeyError::Denied(denied) => Self::PolicyDenied(denied.to_string()),
            UserKeyError::NotFound => Self::NotFound,
            UserKeyError::Key(ApiKeyError::Conflict(_)) => Self::Conflict,
            UserKeyError::Key(ApiKeyError::Redis(error)) => {
                tracing::warn!(%error, "account api: cannot reach redis");
                Self::Unavailable
            }
            UserKeyError::Policy(crate::api_keys::policy::PolicyError::Redis(error)) => {
                tracing::warn!(%error, "account api: cannot reach redis");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "account api: request failed");
                Self::ServerError
            }
        }
    }
}

impl IntoResponse for AccountApiError {
    fn into_response(self) -> Response {
        let body = match self.description() {
            Some(description) => {
                serde_json::json!({ "error": self.code(), "error_description": description })
            }
            None => serde_json::json!({ "error": self.code() }),
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = self
            .challenge()
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
