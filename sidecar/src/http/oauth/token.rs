//! `POST /oauth/token`: the client credentials (RFC 6749 §4.4), authorization code (§4.1.3, with PKCE) and
//! refresh token (§6) grants, with resource indicators (RFC 8707). The password and implicit grants are not
//! supported (RFC 9700 §2.4).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::http::oauth::client_auth;
use crate::http::oauth::error::{OAuthError, RequestProblem};
use crate::http::oauth::token_grants;
use crate::http::oauth::token_request::{self, TokenRequest};
use crate::http::state::AppState;
use crate::oauth;
use crate::oauth::access_token::{self, Grant, IssuedToken};
use crate::oauth::clients::{ClientRecord, GrantType};

/// RFC 6749 §5.1 success response.
#[derive(Serialize)]
pub(crate) struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

impl TokenResponse {
    /// The response for `issued` with `scopes`, and a refresh token if one was issued.
    pub(crate) fn new(
        issued: IssuedToken,
        scopes: &[String],
        refresh_token: Option<String>,
    ) -> Self {
        Self {
            access_token: issued.token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            refresh_token,
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
        }
    }
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut response = Json(self).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
            .headers_mut()
            .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Handles a token request.
pub(crate) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    if !token_request::is_form(&headers) {
        return Err(OAuthError::InvalidRequest(RequestProblem::ContentType));
    }
    let body = body.map_err(|_| OAuthError::InvalidRequest(RequestProblem::MalformedBody))?;
    let request = token_request::parse_form(&body).map_err(OAuthError::InvalidRequest)?;
    let credentials = token_request::credentials(
        &headers,
        request.client_id.as_deref(),
        request.client_secret.as_deref(),
    )?;
    let grant: GrantType = request
        .grant_type
        .parse()
        .map_err(|_| OAuthError::UnsupportedGrantType)?;
    let client = client_auth::authenticate(&state, credentials).await?;
    if !client.allows(grant) {
        tracing::info!(client_id = %client.client_id, %grant, "grant type not allowed for the client");
        return Err(OAuthError::UnauthorizedClient);
    }
    let response = match grant {
        GrantType::ClientCredentials => client_credentials(&state, &client, &request)?,
        GrantType::AuthorizationCode => {
            token_grants::authorization_code(&state, &client, request).await?
        }
        GrantType::RefreshToken => token_grants::refresh_token(&state, &client, request).await?,
    };
    Ok(response.into_response())
}

/// The client credentials grant: a token about the client itself.
fn client_credentials(
    state: &AppState,
    client: &ClientRecord,
    request: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let audience =
        oauth::select_resources(&client.resources, &request.resources).ok_or_else(|| {
            tracing::info!(client_id = %client.client_id, "no acceptable audience");
            OAuthError::InvalidTarget
        })?;
    let scopes = oauth::select_scopes(&client.scopes, request.scope.as_deref())
        .ok_or(OAuthError::InvalidScope)?;
    let issued = sign(
        state,
        Grant {
            client_id: &client.client_id,
            subject: &client.client_id,
            audience: &audience,
            scopes: &scopes,
        },
    )?;
    Ok(TokenResponse::new(issued, &scopes, None))
}

/// Signs an access token for `grant` with the active key, now.
pub(crate) fn sign(state: &AppState, grant: Grant<'_>) -> Result<IssuedToken, OAuthError> {
    let snapshot = state.mirror().snapshot().ok_or(OAuthError::Unavailable)?;
    let key = snapshot.active_key().ok_or(OAuthError::Unavailable)?;
    let config = state.config();
    let issued = access_token::issue(
        key,
        &config.issuer,
        config.token_ttl_secs,
        state.clock().now_secs(),
        grant,
    )
    .map_err(|error| {
        tracing::error!(%error, "cannot sign access token");
        OAuthError::ServerError
    })?;
    tracing::info!(client_id = %grant.client_id, sub = %grant.subject, jti = %issued.jti, kid = %key.kid(),
        aud = ?grant.audience, scope = %grant.scopes.join(" "), "issued access token");
    Ok(issued)
}
