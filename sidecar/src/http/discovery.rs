//! Discovery documents: the public JWK Set and RFC 8414 authorization server metadata.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::app_error::AppError;
use crate::state::AppState;

/// Path of the token endpoint.
pub(crate) const TOKEN_PATH: &str = "/oauth/token";
/// Path of the JWK Set.
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

/// `GET /.well-known/jwks.json`: the public keys of every published signing key.
pub(crate) async fn jwks(State(state): State<AppState>) -> Result<Response, AppError> {
    let snapshot = state.mirror().snapshot().ok_or(AppError::NotReady)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=60"),
            ),
        ],
        snapshot.jwks_json().clone(),
    )
        .into_response())
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414 §3).
pub(crate) async fn metadata(State(state): State<AppState>) -> Response {
    let issuer = &state.config().issuer;
    let base = issuer.trim_end_matches('/');
    Json(serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        // Required by RFC 8414 even without an authorization endpoint: none yet.
        "response_types_supported": [],
    }))
    .into_response()
}
