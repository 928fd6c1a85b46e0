//! Errors of the token, revocation and introspection endpoints and their RFC 6749 §5.2 responses.
//!
//! What the client sees is fixed per variant; the specifics go to the log where the error is raised.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The challenge sent with every `invalid_client` response.
const BASIC_CHALLENGE: &str = "Basic realm=\"keymesh\"";

/// A token request that cannot be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OAuthError {
    /// The request is malformed: wrong content type, bad encoding, a repeated or missing parameter, or more than
    /// one client authentication method.
    #[error("invalid_request: {0}")]
    InvalidRequest(RequestProblem),
    /// Client authentication failed: unknown client, wrong secret, no or unsupported authentication.
    #[error("invalid_client")]
    InvalidClient,
    /// The code or refresh token is unknown, expired, used, revoked, issued to another client, or does not match
    /// the redirect URI or PKCE verifier.
    #[error("invalid_grant")]
    InvalidGrant,
    /// The client is not registered for this grant type.
    #[error("unauthorized_client")]
    UnauthorizedClient,
    /// The grant type is not one this server supports (the password and implicit grants never are).
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// Too many failed authentications of this client recently: refused for this many more seconds.
    #[error("too many failed client authentications")]
    Throttled(u64),
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
    /// A parameter the grant (or endpoint) needs is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// `code_verifier` is not 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
    #[error("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    MalformedCodeVerifier,
    /// A token type other than an access token was named (RFC 8693 §3).
    #[error("only urn:ietf:params:oauth:token-type:access_token is supported")]
    UnsupportedTokenType,
    /// An `actor_token` was sent: the authenticated client is the actor.
    #[error("actor_token is not supported: the authenticated client is the actor")]
    ActorToken,
    /// The subject token is invalid, expired, revoked or does not allow this client to act (RFC 8693 §2.2.2).
    #[error("subject_token is invalid, expired, revoked or does not allow this client to act")]
    SubjectToken,
}

impl OAuthError {
    /// The RFC 6749 §5.2 `error` code.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            // RFC 6749 has no code for throttling; this one tells clients to come back later.
            Self::Throttled(_) => "temporarily_unavailable",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::Unavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    /// The HTTP status of the answer.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn description(self) -> String {
        match self {
            Self::InvalidRequest(problem) => problem.to_string(),
            Self::InvalidClient => "client authentication failed".to_owned(),
            Self::InvalidGrant => {
                "the code or refresh token is invalid, expired, revoked or was issued to another client"
                    .to_owned()
            }
            Self::UnauthorizedClient => {
                "the client is not registered for this grant type".to_owned()
            }
            Self::UnsupportedGrantType => {
                "supported grant types: authorization_code, refresh_token, client_credentials, \
                 urn:ietf:params:oauth:grant-type:token-exchange"
                    .to_owned()
            }
            Self::Throttled(secs) => {
                format!("too many failed client authentications; retry in {secs} s")
            }
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

impl IntoResponse for OAuthError {
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
        if let Self::Throttled(secs) = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
