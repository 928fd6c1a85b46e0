//! Token endpoint errors and their RFC 6749 §5.2 responses.
//!
//! What the client sees is fixed per variant; the specifics go to the log where the error is raised.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The challenge sent with every `invalid_client` response.
const BASIC_CHALLENGE: &str = "Basic realm=\"keymesh\"";

/// A token request that cannot be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// The request is malformed: wrong content type, bad encoding, a repeated or missing parameter, or more than
    /// one client authentication method.
    #[error("invalid_request: {0}")]
    InvalidRequest(RequestProblem),
    /// Client authentication failed: unknown client, wrong secret, no or unsupported authentication.
    #[error("invalid_client")]
    InvalidClient,
    /// The grant type is not `client_credentials`.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// A requested scope is malformed or not allowed for the client.
    #[error("invalid_scope")]
    InvalidScope,
    /// A requested resource is malformed or not allowed for the client (RFC 8707).
    #[error("invalid_target")]
    InvalidTarget,
    /// Redis or the key set is not available right now.
    #[error("temporarily_unavailable")]
    Unavailable,
    /// An internal failure, such as a corrupt client record or a signing error.
    #[error("server_error")]
    ServerError,
}

/// What is wrong with a malformed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestProblem {
    /// The body is not `application/x-www-form-urlencoded`.
    #[error("content type must be application/x-www-form-urlencoded")]
    ContentType,
    /// The body is not valid form encoding of UTF-8 text.
    #[error("malformed request body")]
    MalformedBody,
    /// A parameter other than `resource` appears more than once.
    #[error("request parameters must not be repeated")]
    RepeatedParameter,
    /// `grant_type` is missing.
    #[error("missing grant_type")]
    MissingGrantType,
    /// Both HTTP Basic and body credentials, or more than one Authorization header.
    #[error("use exactly one client authentication method")]
    MultipleAuthMethods,
    /// `client_id` in the body differs from the one in the Authorization header.
    #[error("client_id does not match the Authorization header")]
    ClientIdMismatch,
}

impl TokenError {
    fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::Unavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn description(self) -> String {
        match self {
            Self::InvalidRequest(problem) => problem.to_string(),
            Self::InvalidClient => "client authentication failed".to_owned(),
            Self::UnsupportedGrantType => "only client_credentials is supported".to_owned(),
            Self::InvalidScope => {
                "requested scope is invalid or not allowed for this client".to_owned()
            }
            Self::InvalidTarget => {
                "each resource must be an absolute URI without fragment allowed for this client"
                    .to_owned()
            }
            Self::Unavailable => "try again later".to_owned(),
            Self::ServerError => "internal error".to_owned(),
        }
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({ "error": self.code(), "error_description": self.description() });
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self == Self::InvalidClient {
            // RFC 6749 §5.2 requires the challenge when Basic was used; RFC 9110 §11.6.1 requires one on every 401.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BASIC_CHALLENGE),
            );
        }
        if self == Self::Unavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
