//! The per-request decision: extract, verify, check claims against the route's rule, and decide.

use crate::claims::AccessClaims;
use crate::config::{header_safe, FilterConfig};
use crate::error::TokenError;
use crate::extract::{bearer_token, RequestParts};
use crate::jws;
use crate::keyset::KeySet;
use crate::verdict::{Denial, Identity, Verdict};

/// Decides one request. `keys` is `None` until the first bundle arrives; `now` is seconds since the epoch.
pub fn authorize(
    config: &FilterConfig,
    req: &RequestParts<'_>,
    keys: Option<&KeySet>,
    now: i64,
) -> Verdict {
    let Some(route) = config.route_for(req.path) else {
        return Verdict::Deny(Denial::no_route());
    };
    let Some(keys) = keys else {
        return Verdict::Deny(Denial::no_key_material());
    };
    let claims = match verify_token(config, req, keys, now) {
        Ok(claims) => claims,
        Err(e) => return Verdict::Deny(Denial::token(e, &config.realm)),
    };
    if !claims.has_audience(&route.audience) {
        return Verdict::Deny(Denial::token(TokenError::WrongAudience, &config.realm));
    }
    let missing = claims.missing_scopes(&route.scopes);
    if !missing.is_empty() {
        let missing = missing.into_iter().map(str::to_owned).collect();
        return Verdict::Deny(Denial::insufficient_scope(
            &route.scopes,
            missing,
            &config.realm,
        ));
    }
    Verdict::Allow(Identity {
        subject: claims.subject,
        client_id: claims.client_id,
        scopes: claims.scopes,
        issuer: claims.issuer,
        credential: "jwt",
    })
}

/// Verifies the request's bearer token: signature, issuer binding, time window and forwardability.
pub fn verify_token(
    config: &FilterConfig,
    req: &RequestParts<'_>,
    keys: &KeySet,
    now: i64,
) -> Result<AccessClaims, TokenError> {
    let token = bearer_token(
        req,
        config.token_query_param.as_deref(),
        config.max_token_bytes,
    )?;
    verify_jwt(
        token,
        keys,
        config.trusted_issuers.as_deref(),
        config.leeway_secs,
        now,
    )
}

/// Verifies a compact JWT access token against `keys`: the signature by the key its `kid` names, `iss` equal to
/// that key's issuer (and among `trusted_issuers` when given), `exp`/`nbf` against `now`.
pub fn verify_jwt(
    token: &str,
    keys: &KeySet,
    trusted_issuers: Option<&[String]>,
    leeway_secs: i64,
    now: i64,
) -> Result<AccessClaims, TokenError> {
    let verified = jws::verify(token, keys)?;
    let claims = AccessClaims::parse(&verified.payload)?;
    if claims.issuer != verified.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if let Some(trusted) = trusted_issuers {
        if !trusted.contains(&claims.issuer) {
            return Err(TokenError::WrongIssuer);
        }
    }
    claims.check_time(now, leeway_secs)?;
    if !header_safe(&claims.subject) {
        return Err(TokenError::UnforwardableClaim("sub"));
    }
    if claims.client_id.as_deref().is_some_and(|c| !header_safe(c)) {
        return Err(TokenError::UnforwardableClaim("client_id"));
    }
    if !claims
        .scopes
        .iter()
        .all(|s| crate::config::is_scope_token(s))
    {
        return Err(TokenError::UnforwardableClaim("scope"));
    }
    Ok(claims)
}
