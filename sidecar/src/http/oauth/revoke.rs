//! `POST /oauth/revoke` (RFC 7009).
//!
//! The client authenticates as at the token endpoint. Revoking a refresh token revokes its grant: every refresh
//! token of the grant and every access token issued from it. Revoking an access token puts its `jti` in the bundle,
//! so the proxies refuse it within moments and until it expires, and revokes every token exchanged from it
//! (RFC 8693). A token the server does not know, one already
//! expired, or one issued to another client is answered with 200 and left alone: RFC 7009 §2.2 lets the answer
//! say nothing, and a client learns nothing about other clients' tokens.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::oauth::client_auth::{self, unavailable};
use crate::http::oauth::error::OAuthError;
use crate::http::oauth::source::Source;
use crate::http::oauth::token_lookup::{self, Found};
use crate::http::state::AppState;
use crate::oauth::exchange;
use crate::oauth::grants::GrantStore;

/// Handles a revocation request.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    source: Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let query = token_lookup::read(&state, &source, &headers, body).await?;
    let client_id = query.client.client_id.as_str();
    let now = state.clock().now_secs();
    match token_lookup::find(&state, &query.token).await? {
        Found::Access(token) if token.client_id == client_id => {
            let mut conn = client_auth::redis(&state).await?;
            let (revoked, exchanged) = exchange::revoke_with_exchanged(
                &mut conn,
                state.names(),
                &token.jti,
                token.expires_at,
                now,
            )
            .await
            .map_err(unavailable)?;
            tracing::info!(%client_id, jti = %token.jti, revoked, exchanged_tokens_revoked = exchanged,
                "access token revocation");
        }
        Found::Refresh(found) if found.record.client_id == client_id => {
            let mut conn = client_auth::redis(&state).await?;
            let revoked = GrantStore::new(state.names().clone())
                .revoke(&mut conn, &found.record.grant_id, now)
                .await
                .map_err(unavailable)?;
            tracing::info!(%client_id, grant_id = %found.record.grant_id, access_tokens_revoked = revoked,
                "refresh token revoked with its grant");
        }
        Found::Access(_) | Found::Refresh(_) => {
            tracing::warn!(%client_id, "refused to revoke another client's token");
        }
        Found::Unknown => tracing::info!(%client_id, "revocation of an unknown token"),
    }
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
    )
        .into_response())
}
