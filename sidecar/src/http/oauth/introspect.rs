//! `POST /oauth/introspect` (RFC 7662).
//!
//! Only a confidential client may ask, and only about its own tokens. An access token is active when its
//! signature verifies with one of this sidecar's keys, it has not expired, and it is not revoked; a refresh token
//! when it is its grant's current one and the grant is live. Everything else (unknown, expired, revoked, rotated,
//! another client's) is exactly `{"active":false}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::http::oauth::client_auth::{self, unavailable};
use crate::http::oauth::error::OAuthError;
use crate::http::oauth::source::Source;
use crate::http::oauth::token_lookup::{self, Found};
use crate::http::state::AppState;
use crate::oauth::revocation;

/// Handles an introspection request.
pub(crate) async fn introspect(
    State(state): State<AppState>,
    source: Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let query = token_lookup::read(&state, &source, &headers, body).await?;
    if query.client.public {
        // A public client proves nothing about who is asking.
        tracing::info!(client_id = %query.client.client_id, "public client refused at introspection");
        return Err(OAuthError::InvalidClient);
    }
    let client_id = query.client.client_id.as_str();
    let now = state.clock().now_secs();
    let issuer = state.config().issuer.as_str();
    let answer = match token_lookup::find(&state, &query.token).await? {
        Found::Access(token) if token.client_id == client_id && now < token.expires_at => {
            let mut conn = client_auth::redis(&state).await?;
            let revoked = revocation::is_revoked(&mut conn, state.names(), &token.jti)
                .await
                .map_err(unavailable)?;
            (!revoked).then(|| {
                let mut body = json!({
                    "active": true,
                    "token_type": "Bearer",
                    "client_id": token.client_id,
                    "sub": token.subject,
                    "aud": token.audience,
                    "iss": issuer,
                    "exp": token.expires_at,
                    "iat": token.issued_at,
                    "jti": token.jti,
                });
                if let Some(scope) = token.scope {
                    body["scope"] = Value::from(scope);
                }
                body
            })
        }
        Found::Refresh(found) if found.is_usable(client_id, now) => found.grant.map(|grant| {
            let mut body = json!({
                "active": true,
                "client_id": grant.client_id,
                "sub": grant.subject,
                "aud": grant.resources,
                "iss": issuer,
                "exp": grant.expires_at,
                "iat": grant.created_at,
            });
            if !grant.scopes.is_empty() {
                body["scope"] = Value::from(grant.scopes.join(" "));
            }
            body
        }),
        _ => None,
    };
    tracing::info!(%client_id, active = answer.is_some(), "introspection");
    let mut response = Json(answer.unwrap_or_else(|| json!({ "active": false }))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
