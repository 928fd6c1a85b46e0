//! RFC 9068 JWT access tokens, signed with the active Ed25519 key.

use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::alg::Ed25519;
use jwt_compact::{AlgorithmExt, Claims, CreationError, Header};
use rand::RngCore;
use serde::Serialize;

use crate::signing_keys::SigningKey;

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";

/// What a token grants: who it was issued to, for which audiences and scopes.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    /// The authenticated client; also the subject of client-credentials tokens.
    pub client_id: &'a str,
    /// The resources the token is for (never empty); always serialised as a JSON array.
    pub audience: &'a [String],
    /// The granted scopes; the claim is left out when empty.
    pub scopes: &'a [String],
}

/// A signed token with the values the token response repeats.
#[derive(Clone)]
pub struct IssuedToken {
    /// The compact JWS.
    pub token: String,
    /// The token's unique id, safe to log.
    pub jti: String,
    /// Seconds until expiry.
    pub expires_in: u64,
}

/// RFC 9068 §2.2 claims. `exp` and `iat` are plain seconds from the injected clock (jwt-compact's own time
/// fields are left unset so they are not serialised twice).
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a [String],
    exp: u64,
    iat: u64,
    jti: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Signs an access token for `grant`, issued by `issuer` at `now` and valid for `ttl_secs`.
pub fn issue(
    key: &SigningKey,
    issuer: &str,
    ttl_secs: u64,
    now: u64,
    grant: Grant<'_>,
) -> Result<IssuedToken, CreationError> {
    let mut jti = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut jti);
    let jti = Base64UrlUnpadded::encode_string(&jti);
    let claims = Claims::new(AccessTokenClaims {
        iss: issuer,
        sub: grant.client_id,
        aud: grant.audience,
        exp: now.saturating_add(ttl_secs),
        iat: now,
        jti: &jti,
        client_id: grant.client_id,
        scope: (!grant.scopes.is_empty()).then(|| grant.scopes.join(" ")),
    });
    let header = Header::empty()
        .with_key_id(key.kid())
        .with_token_type(TOKEN_TYPE);
    let token = Ed25519.token(&header, &claims, key.signing_key())?;
    Ok(IssuedToken {
        token,
        jti,
        expires_in: ttl_secs,
    })
}
