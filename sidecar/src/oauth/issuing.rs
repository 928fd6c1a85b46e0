//! The token issuing service: the client credentials, authorization code and refresh token grants, and the signing
//! of the access tokens they yield. It returns domain values ([`Issued`], [`IssueError`]); the token endpoint
//! parses the request and renders them.
//!
//! A code is redeemed once: the first redemption checks every binding (client, redirect URI, PKCE, expiry) and
//! issues tokens under the code's grant; any later redemption gets `invalid_grant` and revokes that grant, with the
//! access tokens the first one issued. A refresh token rotates on every use; presenting a rotated one revokes the
//! grant (see [`crate::oauth::grants`]).

use redis::aio::ConnectionLike;

use crate::config::Config;
use crate::keys::SigningKey;
use crate::oauth::access_token::{self, Grant, IssuedToken};
use crate::oauth::clients::{ClientRecord, GrantType};
use crate::oauth::codes::{CodeGrant, CodeStore, Redemption};
use crate::oauth::grants::{AccessTokenId, GrantRecord, GrantStore, Rotation};
use crate::oauth::users::UserStore;
use crate::oauth::{self, pkce, random_token, SECRET_BYTES};
use crate::store::names::KeyNames;

/// Why no token was issued. What the client is told is fixed per variant; the detail is logged here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The code or refresh token is unknown, expired, used, revoked, issued to another client, or does not match
    /// the redirect URI or PKCE verifier.
    #[error("invalid_grant")]
    InvalidGrant,
    /// A requested scope is not allowed.
    #[error("invalid_scope")]
    InvalidScope,
    /// A requested resource is not allowed, or none is left (RFC 8707).
    #[error("invalid_target")]
    InvalidTarget,
    /// Redis or the active signing key is not available right now.
    #[error("temporarily_unavailable")]
    Unavailable,
    /// The token could not be signed.
    #[error("server_error")]
    ServerError,
}

/// What the client asked for, besides the grant itself.
#[derive(Debug, Clone, Copy)]
pub struct Requested<'a> {
    /// `scope`, if given.
    pub scope: Option<&'a str>,
    /// `resource` values (RFC 8707), in request order.
    pub resources: &'a [String],
}

/// The parameters of an authorization code redemption.
#[derive(Debug, Clone, Copy)]
pub struct CodeRedemption<'a> {
    /// `code`.
    pub code: &'a str,
    /// `redirect_uri`, if given.
    pub redirect_uri: Option<&'a str>,
    /// `code_verifier`, if given (already checked to be well formed).
    pub code_verifier: Option<&'a str>,
}

/// Tokens issued by one grant. No `Debug`: it holds bearer secrets.
pub struct Issued {
    /// The access token.
    pub access: IssuedToken,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// A new refresh token, if one was issued.
    pub refresh_token: Option<String>,
}

/// Issues tokens at one instant, with the settings of the configuration and the active signing key.
#[derive(Debug, Clone)]
pub struct TokenIssuer<'a> {
    issuer: &'a str,
    token_ttl_secs: u64,
    refresh_token_ttl_secs: u64,
    key: Option<SigningKey>,
    names: &'a KeyNames,
    now: u64,
}

/// Maps a Redis failure to [`IssueError::Unavailable`], logged.
fn unavailable(error: impl std::fmt::Display) -> IssueError {
    tracing::warn!(%error, "redis operation failed");
    IssueError::Unavailable
}

impl<'a> TokenIssuer<'a> {
    /// An issuer with `config`'s issuer and lifetimes, signing with `key` (`None` when no key is usable yet), at
    /// `now`.
    pub fn new(config: &'a Config, key: Option<SigningKey>, names: &'a KeyNames, now: u64) -> Self {
        Self {
            issuer: &config.issuer,
            token_ttl_secs: config.token_ttl_secs,
            refresh_token_ttl_secs: config.refresh_token_ttl_secs,
            key,
            names,
            now,
        }
    }

    /// Signs an access token for `grant` with the active key.
    fn sign(&self, grant: Grant<'_>) -> Result<IssuedToken, IssueError> {
        let key = self.key.as_ref().ok_or(IssueError::Unavailable)?;
        let issued = access_token::issue(key, self.issuer, self.token_ttl_secs, self.now, grant)
            .map_err(|error| {
                tracing::error!(%error, "cannot sign access token");
                IssueError::ServerError
            })?;
        tracing::info!(client_id = %grant.client_id, sub = %grant.subject, jti = %issued.jti, kid = %key.kid(),
            aud = ?grant.audience, scope = %grant.scopes.join(" "), "issued access token");
        Ok(issued)
    }

    /// The client credentials grant: a token about the client itself.
    pub fn client_credentials(
        &self,
        client: &ClientRecord,
        requested: Requested<'_>,
    ) -> Result<Issued, IssueError> {
        let audience =
            oauth::select_resources(&client.resources, requested.resources).ok_or_else(|| {
                tracing::info!(client_id = %client.client_id, "no acceptable audience");
                IssueError::InvalidTarget
            })?;
        let scopes = oauth::select_scopes(&client.scopes, requested.scope)
            .ok_or(IssueError::InvalidScope)?;
        let access = self.sign(Grant {
            client_id: &client.client_id,
            subject: &client.client_id,
            audience: &audience,
            scopes: &scopes,
            tier: client.tier.as_deref(),
        })?;
        Ok(Issued {
            access,
            scopes,
            refresh_token: None,
        })
    }

    /// The authorization code grant.
    pub async fn authorization_code<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        client: &ClientRecord,
        requested: Requested<'_>,
        redemption: CodeRedemption<'_>,
    ) -> Result<Issued, IssueError> {
        let now = self.now;
        let grants = GrantStore::new(self.names.clone());
        let grant = match CodeStore::new(self.names.clone())
            .redeem(conn, redemption.code, &client.client_id)
            .await
            .map_err(unavailable)?
        {
            Redemption::Unknown => {
                tracing::info!(client_id = %client.client_id, "unknown authorization code");
                return Err(IssueError::InvalidGrant);
            }
            Redemption::OtherClient => {
                tracing::warn!(client_id = %client.client_id, "authorization code of another client presented");
                return Err(IssueError::InvalidGrant);
            }
            Redemption::Replay(grant) => {
                let revoked = grants
                    .revoke(conn, &grant.grant_id, now)
                    .await
                    .map_err(unavailable)?;
                tracing::warn!(client_id = %client.client_id, grant_id = %grant.grant_id, revoked,
                    "authorization code redeemed twice: grant revoked");
                return Err(IssueError::InvalidGrant);
            }
            Redemption::First(grant) => grant,
        };
        check_bindings(&grant, client, redemption, now)?;
        let audience = oauth::select_resources(&grant.resources, requested.resources)
            .ok_or(IssueError::InvalidTarget)?;
        let access = self.sign(Grant {
            client_id: &client.client_id,
            subject: &grant.subject,
            audience: &audience,
            scopes: &grant.scopes,
            tier: client.tier.as_deref(),
        })?;
        let refresh_token = client
            .allows(GrantType::RefreshToken)
            .then(|| random_token(SECRET_BYTES));
        let lifetime = if refresh_token.is_some() {
            self.refresh_token_ttl_secs
        } else {
            self.token_ttl_secs
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
        let access_id = AccessTokenId {
            jti: &access.jti,
            exp: access.expires_at,
        };
        let created = grants
            .create(conn, &record, refresh_token.as_deref(), access_id, now)
            .await
            .map_err(unavailable)?;
        if !created {
            tracing::warn!(grant_id = %grant.grant_id, "grant revoked while its code was redeemed");
            return Err(IssueError::InvalidGrant);
        }
        tracing::info!(client_id = %client.client_id, sub = %grant.subject, grant_id = %grant.grant_id,
            refresh = refresh_token.is_some(), "authorization code redeemed");
        Ok(Issued {
            access,
            scopes: grant.scopes,
            refresh_token,
        })
    }

    /// The refresh token grant: rotates `presented` and issues a new access token under its grant.
    pub async fn refresh_token<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        client: &ClientRecord,
        requested: Requested<'_>,
        presented: &str,
    ) -> Result<Issued, IssueError> {
        let now = self.now;
        let grants = GrantStore::new(self.names.clone());
        let found = grants
            .find_refresh(conn, presented)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                tracing::info!(client_id = %client.client_id, "unknown refresh token");
                IssueError::InvalidGrant
            })?;
        let grant_id = found.record.grant_id.clone();
        let refuse = |why: &str| {
            tracing::info!(client_id = %client.client_id, %grant_id, why, "refresh token refused");
            IssueError::InvalidGrant
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
                .revoke(conn, &grant_id, now)
                .await
                .map_err(unavailable)?;
            tracing::warn!(client_id = %client.client_id, %grant_id, revoked,
                "rotated refresh token reused: grant revoked");
            return Err(IssueError::InvalidGrant);
        }
        if now >= grant.expires_at {
            return Err(refuse("grant expired"));
        }
        match UserStore::new(self.names.clone())
            .get(conn, &grant.subject)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => return Err(refuse("user deleted")),
            Err(error) => return Err(unavailable(error)),
        }
        let scopes =
            oauth::select_scopes(&grant.scopes, requested.scope).ok_or(IssueError::InvalidScope)?;
        let audience = oauth::select_resources(&grant.resources, requested.resources)
            .ok_or(IssueError::InvalidTarget)?;
        let access = self.sign(Grant {
            client_id: &client.client_id,
            subject: &grant.subject,
            audience: &audience,
            scopes: &scopes,
            tier: client.tier.as_deref(),
        })?;
        let next = random_token(SECRET_BYTES);
        let access_id = AccessTokenId {
            jti: &access.jti,
            exp: access.expires_at,
        };
        match grants
            .rotate(
                conn,
                &grant_id,
                &client.client_id,
                (presented, &next),
                access_id,
                now,
            )
            .await
            .map_err(unavailable)?
        {
            Rotation::Rotated => Ok(Issued {
                access,
                scopes,
                refresh_token: Some(next),
            }),
            Rotation::Reused => {
                tracing::warn!(client_id = %client.client_id, %grant_id, "refresh token reused concurrently: grant revoked");
                Err(IssueError::InvalidGrant)
            }
            Rotation::Revoked => Err(refuse("grant revoked")),
        }
    }
}

/// The checks of RFC 6749 §4.1.3 and RFC 7636 §4.6 on a first redemption.
fn check_bindings(
    grant: &CodeGrant,
    client: &ClientRecord,
    redemption: CodeRedemption<'_>,
    now: u64,
) -> Result<(), IssueError> {
    let refuse = |why: &str| {
        tracing::info!(client_id = %client.client_id, grant_id = %grant.grant_id, why, "authorization code refused");
        IssueError::InvalidGrant
    };
    if grant.client_id != client.client_id {
        return Err(refuse("issued to another client"));
    }
    if now >= grant.expires_at {
        return Err(refuse("expired"));
    }
    let redirect_ok = match redemption.redirect_uri {
        Some(uri) => uri == grant.redirect_uri,
        None => !grant.redirect_uri_given,
    };
    if !redirect_ok {
        return Err(refuse("redirect_uri differs"));
    }
    match (grant.code_challenge.as_deref(), redemption.code_verifier) {
        (Some(challenge), Some(verifier)) if pkce::verify(verifier, challenge) => Ok(()),
        (Some(_), Some(_)) => Err(refuse("code_verifier does not match")),
        (Some(_), None) => Err(refuse("code_verifier missing")),
        // RFC 9700 §2.1.1: a verifier for a code issued without a challenge means a code injection attempt.
        (None, Some(_)) => Err(refuse("code_verifier for a code without challenge")),
        (None, None) if client.public => Err(refuse("public client without PKCE")),
        (None, None) => Ok(()),
    }
}
