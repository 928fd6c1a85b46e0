//! Discovery documents: the public JWK Set and RFC 8414 authorization server metadata.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::http::error::AppError;
use crate::http::oauth::authorize::AUTHORIZE_PATH;
use crate::http::state::AppState;
use crate::oauth::clients::GrantType;

/// Path of the token endpoint.
pub(crate) const TOKEN_PATH: &str = "/oauth/token";
/// Path of the revocation endpoint (RFC 7009).
pub(crate) const REVOCATION_PATH: &str = "/oauth/revoke";
/// Path of the introspection endpoint (RFC 7662).
pub(crate) const INTROSPECTION_PATH: &str = "/oauth/introspect";
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
    let grant_types: Vec<&str> = GrantType::ALL.iter().map(|g| g.as_str()).collect();
    let mut document = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "jwks_uri": format!("{base}{JWKS_PATH}"),
        "revocation_endpoint": format!("{base}{REVOCATION_PATH}"),
        "introspection_endpoint": format!("{base}{INTROSPECTION_PATH}"),
        // No implicit or hybrid flow (RFC 9700 §2.1.2), no password grant (§2.4).
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types,
        "code_challenge_methods_supported": [crate::oauth::pkce::S256],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
    });
    if state.config().registration.enabled() {
        document["registration_endpoint"] =
            format!("{base}{}", crate::http::oauth::register::REGISTRATION_PATH).into();
    }
    let mut response = Json(document).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    response
}
