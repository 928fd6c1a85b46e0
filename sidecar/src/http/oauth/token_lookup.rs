//! Shared by revocation and introspection: reading the parameters, authenticating the caller, and finding what a
//! presented token is.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;

use crate::http::oauth::client_auth;
use crate::http::oauth::error::{OAuthError, RequestProblem};
use crate::http::oauth::source::Source;
use crate::http::oauth::token_request;
use crate::http::state::AppState;
use crate::oauth::access_token::{self, VerifiedToken};
use crate::oauth::clients::ClientRecord;
use crate::oauth::grants::{GrantStore, RefreshState};

/// A revocation or introspection request after client authentication.
pub(crate) struct TokenQuery {
    /// The authenticated client.
    pub(crate) client: ClientRecord,
    /// The `token` parameter.
    pub(crate) token: String,
}

/// Parses the form, requires `token` and authenticates the client.
pub(crate) async fn read(
    state: &AppState,
    source: &Source,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<TokenQuery, OAuthError> {
    if !token_request::is_form(headers) {
        return Err(OAuthError::InvalidRequest(RequestProblem::ContentType));
    }
    let body = body.map_err(|_| OAuthError::InvalidRequest(RequestProblem::MalformedBody))?;
    let mut params = token_request::parse_params(&body).map_err(OAuthError::InvalidRequest)?;
    let credentials = token_request::credentials(
        headers,
        params.take("client_id").as_deref(),
        params.take("client_secret").as_deref(),
    )?;
    // `token_type_hint` is only a hint (RFC 7009 §2.1): both kinds are looked up whatever it says.
    let token = params
        .take("token")
        .ok_or(OAuthError::InvalidRequest(RequestProblem::Missing("token")))?;
    let client = client_auth::authenticate(state, source, credentials).await?;
    Ok(TokenQuery { client, token })
}

/// What a presented token turned out to be.
pub(crate) enum Found {
    /// An access token this sidecar issued (signature and issuer verified; expiry not checked).
    Access(VerifiedToken),
    /// A known refresh token.
    Refresh(RefreshState),
    /// Neither.
    Unknown,
}

/// Identifies `token`: a JWT is checked as an access token, anything else looked up as a refresh token.
pub(crate) async fn find(state: &AppState, token: &str) -> Result<Found, OAuthError> {
    if token.split('.').count() == 3 {
        let snapshot = state.mirror().snapshot().ok_or(OAuthError::Unavailable)?;
        return Ok(
            match snapshot
                .own_keys()
                .and_then(|keys| access_token::verify(token, &state.config().issuer, keys))
            {
                Some(verified) => Found::Access(verified),
                None => Found::Unknown,
            },
        );
    }
    let mut conn = client_auth::redis(state).await?;
    Ok(
        match GrantStore::new(state.names().clone())
            .find_refresh(&mut conn, token)
            .await
            .map_err(client_auth::unavailable)?
        {
            Some(found) => Found::Refresh(found),
            None => Found::Unknown,
        },
    )
}
