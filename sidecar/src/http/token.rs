//! `POST /oauth/token`: the client-credentials grant (RFC 6749 §4.4) with resource indicators (RFC 8707).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::oauth_error::{RequestProblem, TokenError};
use super::token_request::{self, Credentials, TokenRequest};
use crate::access_token::{self, Grant};
use crate::clients::{ClientError, ClientRecord};
use crate::secret;
use crate::state::AppState;
use crate::syntax;

/// The only grant type supported so far.
const CLIENT_CREDENTIALS: &str = "client_credentials";

/// RFC 6749 §5.1 success response.
#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Handles a token request.
pub(crate) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, TokenError> {
    if !token_request::is_form(&headers) {
        return Err(TokenError::InvalidRequest(RequestProblem::ContentType));
    }
    let body = body.map_err(|_| TokenError::InvalidRequest(RequestProblem::MalformedBody))?;
    let request = token_request::parse_form(&body).map_err(TokenError::InvalidRequest)?;
    let credentials = token_request::credentials(&headers, &request)?;
    if request.grant_type != CLIENT_CREDENTIALS {
        return Err(TokenError::UnsupportedGrantType);
    }
    let client = authenticate(&state, credentials).await?;
    let audience = audience(&client, &request)?;
    let scopes = scopes(&client, &request)?;

    let snapshot = state.mirror().snapshot().ok_or(TokenError::Unavailable)?;
    let key = snapshot.active_key().ok_or(TokenError::Unavailable)?;
    let config = state.config();
    let grant = Grant {
        client_id: &client.client_id,
        audience: &audience,
        scopes: &scopes,
    };
    let issued = access_token::issue(
        key,
        &config.issuer,
        config.token_ttl_secs,
        state.clock().now_secs(),
        grant,
    )
    .map_err(|error| {
        tracing::error!(%error, "cannot sign access token");
        TokenError::ServerError
    })?;
    tracing::info!(client_id = %client.client_id, jti = %issued.jti, kid = %key.kid(), aud = ?audience,
        scope = %scopes.join(" "), "issued access token");

    let body = TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Looks the client up in Redis and checks its secret.
async fn authenticate(
    state: &AppState,
    credentials: Credentials,
) -> Result<ClientRecord, TokenError> {
    let mut conn = state.redis().await.map_err(|error| {
        tracing::warn!(%error, "cannot reach redis to authenticate a client");
        TokenError::Unavailable
    })?;
    let client = match state.clients().get(&mut conn, &credentials.client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            tracing::info!(client_id = %credentials.client_id, method = ?credentials.method, "unknown client");
            return Err(TokenError::InvalidClient);
        }
        Err(ClientError::Redis(error)) => {
            tracing::warn!(%error, "cannot read client record");
            return Err(TokenError::Unavailable);
        }
        Err(error) => {
            tracing::error!(%error, "cannot use client record");
            return Err(TokenError::ServerError);
        }
    };
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let stored = client.secret_hash.clone();
    let presented = credentials.secret;
    let matches = tokio::task::spawn_blocking(move || secret::verify(&presented, &stored))
        .await
        .map_err(|error| {
            tracing::error!(%error, "secret verification task failed");
            TokenError::ServerError
        })?;
    if !matches {
        tracing::info!(client_id = %client.client_id, method = ?credentials.method, "wrong client secret");
        return Err(TokenError::InvalidClient);
    }
    Ok(client)
}

/// The token's audience: the requested resources (each allowed for the client), or all allowed ones.
fn audience(client: &ClientRecord, request: &TokenRequest) -> Result<Vec<String>, TokenError> {
    if request.resources.is_empty() {
        if client.resources.is_empty() {
            tracing::warn!(client_id = %client.client_id, "client has no resources: no audience for its tokens");
            return Err(TokenError::InvalidTarget);
        }
        return Ok(client.resources.clone());
    }
    let mut audience: Vec<String> = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        if !syntax::is_absolute_uri_without_fragment(resource)
            || !client.resources.contains(resource)
        {
            tracing::info!(client_id = %client.client_id, %resource, "resource refused");
            return Err(TokenError::InvalidTarget);
        }
        if !audience.contains(resource) {
            audience.push(resource.clone());
        }
    }
    Ok(audience)
}

/// The granted scopes: the requested ones (each allowed for the client), or all allowed ones.
fn scopes(client: &ClientRecord, request: &TokenRequest) -> Result<Vec<String>, TokenError> {
    let Some(requested) = &request.scope else {
        return Ok(client.scopes.clone());
    };
    let mut granted: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !syntax::is_scope_token(scope) || !client.scopes.iter().any(|allowed| allowed == scope) {
            tracing::info!(client_id = %client.client_id, %scope, "scope refused");
            return Err(TokenError::InvalidScope);
        }
        if !granted.iter().any(|g| g == scope) {
            granted.push(scope.to_owned());
        }
    }
    if granted.is_empty() {
        // Only spaces: not a scope list at all.
        return Err(TokenError::InvalidScope);
    }
    Ok(granted)
}
