//! The authorization code and refresh token grants of `POST /oauth/token`.
//!
//! A code is redeemed once: the first redemption checks every binding (client, redirect URI, PKCE, expiry) and
//! issues tokens under the code's grant; any later redemption gets `invalid_grant` and revokes that grant, with the
//! access tokens the first one issued. A refresh token rotates on every use; presenting a rotated one revokes the
//! grant (see [`crate::oauth::grants`]).

use crate::http::oauth::client_auth::{self, unavailable};
use crate::http::oauth::error::{OAuthError, RequestProblem};
use crate::http::oauth::token::{sign, TokenResponse};
use crate::http::oauth::token_request::TokenRequest;
use crate::http::state::AppState;
use crate::oauth::access_token::Grant;
use crate::oauth::clients::{ClientRecord, GrantType};
use crate::oauth::codes::{CodeGrant, CodeStore, Redemption};
use crate::oauth::grants::{AccessTokenId, GrantRecord, GrantStore, Rotation};
use crate::oauth::users::UserStore;
use crate::oauth::{self, pkce, random_token, SECRET_BYTES};

/// `grant_type=authorization_code`.
pub(crate) async fn authorization_code(
    state: &AppState,
    client: &ClientRecord,
    request: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let code = request
        .code
        .as_deref()
        .ok_or(OAuthError::InvalidRequest(RequestProblem::Missing("code")))?;
    if request
        .code_verifier
        .as_deref()
        .is_some_and(|verifier| !pkce::is_verifier(verifier))
    {
        return Err(OAuthError::InvalidRequest(
            RequestProblem::MalformedCodeVerifier,
        ));
    }
    let names = state.names().clone();
    let grants = GrantStore::new(names.clone());
    let mut conn = client_auth::redis(state).await?;
    let now = state.clock().now_secs();
    let grant = match CodeStore::new(names)
        .redeem(&mut conn, code)
        .await
        .map_err(unavailable)?
    {
        Redemption::Unknown => {
            tracing::info!(client_id = %client.client_id, "unknown authorization code");
            return Err(OAuthError::InvalidGrant);
        }
        Redemption::Replay(grant) => {
            let revoked = grants
                .revoke(&mut conn, &grant.grant_id, now)
                .await
                .map_err(unavailable)?;
            tracing::warn!(client_id = %client.client_id, grant_id = %grant.grant_id, revoked,
                "authorization code redeemed twice: grant revoked");
            return Err(OAuthError::InvalidGrant);
        }
        Redemption::First(grant) => grant,
    };
    check_bindings(&grant, client, &request, now)?;
    let audience = oauth::select_resources(&grant.resources, &request.resources)
        .ok_or(OAuthError::InvalidTarget)?;
    let issued = sign(
        state,
        Grant {
            client_id: &client.client_id,
            subject: &grant.subject,
            audience: &audience,
            scopes: &grant.scopes,
        },
    )?;
    let refresh_token = client
        .allows(GrantType::RefreshToken)
        .then(|| random_token(SECRET_BYTES));
    let lifetime = if refresh_token.is_some() {
        state.config().refresh_token_ttl_secs
    } else {
        state.config().token_ttl_secs
    };
    let record = GrantRecord {
        grant_id: grant.grant_id.clone(),
        client_id: client.client_id.clone(),
        subject: grant.subject.clone(),
        scopes: grant.scopes.clone(),
        resources: grant.resources.clone(),
        created_at: now,
        expires_at: now.saturating_add(lifetime),
    };
    let access = AccessTokenId {
        jti: &issued.jti,
        exp: issued.expires_at,
    };
    let created = grants
        .create(&mut conn, &record, refresh_token.as_deref(), access, now)
        .await
        .map_err(unavailable)?;
    if !created {
        tracing::warn!(grant_id = %grant.grant_id, "grant revoked while its code was redeemed");
        return Err(OAuthError::InvalidGrant);
    }
    tracing::info!(client_id = %client.client_id, sub = %grant.subject, grant_id = %grant.grant_id,
        refresh = refresh_token.is_some(), "authorization code redeemed");
    Ok(TokenResponse::new(issued, &grant.scopes, refresh_token))
}

/// The checks of RFC 6749 §4.1.3 and RFC 7636 §4.6 on a first redemption.
fn check_bindings(
    grant: &CodeGrant,
    client: &ClientRecord,
    request: &TokenRequest,
    now: u64,
) -> Result<(), OAuthError> {
    let refuse = |why: &str| {
        tracing::info!(client_id = %client.client_id, grant_id = %grant.grant_id, why, "authorization code refused");
        OAuthError::InvalidGrant
    };
    if grant.client_id != client.client_id {
        return Err(refuse("issued to another client"));
    }
    if now >= grant.expires_at {
        return Err(refuse("expired"));
    }
    let redirect_ok = match request.redirect_uri.as_deref() {
        Some(uri) => uri == grant.redirect_uri,
        None => !grant.redirect_uri_given,
    };
    if !redirect_ok {
        return Err(refuse("redirect_uri differs"));
    }
    match (
        grant.code_challenge.as_deref(),
        request.code_verifier.as_deref(),
    ) {
        (Some(challenge), Some(verifier)) if pkce::verify(verifier, challenge) => Ok(()),
        (Some(_), Some(_)) => Err(refuse("code_verifier does not match")),
        (Some(_), None) => Err(refuse("code_verifier missing")),
        // RFC 9700 §2.1.1: a verifier for a code issued without a challenge means a code injection attempt.
        (None, Some(_)) => Err(refuse("code_verifier for a code without challenge")),
        (None, None) if client.public => Err(refuse("public client without PKCE")),
        (None, None) => Ok(()),
    }
}

/// `grant_type=refresh_token`.
pub(crate) async fn refresh_token(
    state: &AppState,
    client: &ClientRecord,
    request: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let presented = request
        .refresh_token
        .as_deref()
        .ok_or(OAuthError::InvalidRequest(RequestProblem::Missing(
            "refresh_token",
        )))?;
    let grants = GrantStore::new(state.names().clone());
    let mut conn = client_auth::redis(state).await?;
    let now = state.clock().now_secs();
    let found = grants
        .find_refresh(&mut conn, presented)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            tracing::info!(client_id = %client.client_id, "unknown refresh token");
            OAuthError::InvalidGrant
        })?;
    let grant_id = found.record.grant_id.clone();
    let refuse = |why: &str| {
        tracing::info!(client_id = %client.client_id, %grant_id, why, "refresh token refused");
        OAuthError::InvalidGrant
    };
    if found.record.client_id != client.client_id {
        return Err(refuse("issued to another client"));
    }
    if found.revoked {
        return Err(refuse("grant revoked"));
    }
    let grant = found.grant.as_ref().ok_or_else(|| refuse("grant gone"))?;
    if !found.current {
        let revoked = grants
            .revoke(&mut conn, &grant_id, now)
            .await
            .map_err(unavailable)?;
        tracing::warn!(client_id = %client.client_id, %grant_id, revoked,
            "rotated refresh token reused: grant revoked");
        return Err(OAuthError::InvalidGrant);
    }
    if now >= grant.expires_at {
        return Err(refuse("grant expired"));
    }
    match UserStore::new(state.names().clone())
        .get(&mut conn, &grant.subject)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return Err(refuse("user deleted")),
        Err(error) => return Err(unavailable(error)),
    }
    let scopes = oauth::select_scopes(&grant.scopes, request.scope.as_deref())
        .ok_or(OAuthError::InvalidScope)?;
    let audience = oauth::select_resources(&grant.resources, &request.resources)
        .ok_or(OAuthError::InvalidTarget)?;
    let issued = sign(
        state,
        Grant {
            client_id: &client.client_id,
            subject: &grant.subject,
            audience: &audience,
            scopes: &scopes,
        },
    )?;
    let next = random_token(SECRET_BYTES);
    let access = AccessTokenId {
        jti: &issued.jti,
        exp: issued.expires_at,
    };
    match grants
        .rotate(
            &mut conn,
            &grant_id,
            &client.client_id,
            (presented, &next),
            access,
            now,
        )
        .await
        .map_err(unavailable)?
    {
        Rotation::Rotated => Ok(TokenResponse::new(issued, &scopes, Some(next))),
        Rotation::Reused => {
            tracing::warn!(client_id = %client.client_id, %grant_id, "refresh token reused concurrently: grant revoked");
            Err(OAuthError::InvalidGrant)
        }
        Rotation::Revoked => Err(refuse("grant revoked")),
    }
}
