//! RFC 9068 JWT access tokens, signed with the active key (EdDSA, ES256 or RS256), and their verification for introspection and
//! revocation.

use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::{Claims, CreationError, Header, UntrustedToken};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::keys::SigningKey;
use crate::mirror::snapshot::Snapshot;

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";

/// What a token grants: who it was issued to, for which audiences and scopes.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    /// The authenticated client.
    pub client_id: &'a str,
    /// Whom the token is about: the user for the authorization code grant, the client itself for client
    /// credentials.
    pub subject: &'a str,
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
    /// The `exp` claim (seconds since the Unix epoch).
    pub expires_at: u64,
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
    let expires_at = now.saturating_add(ttl_secs);
    let claims = Claims::new(AccessTokenClaims {
        iss: issuer,
        sub: grant.subject,
        aud: grant.audience,
        exp: expires_at,
        iat: now,
        jti: &jti,
        client_id: grant.client_id,
        scope: (!grant.scopes.is_empty()).then(|| grant.scopes.join(" ")),
    });
    let header = Header::empty()
        .with_key_id(key.kid())
        .with_token_type(TOKEN_TYPE);
    let token = key.sign(&header, &claims)?;
    Ok(IssuedToken {
        token,
        jti,
        expires_in: ttl_secs,
        expires_at,
    })
}

/// The claims of an access token this sidecar issued, after its signature was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`.
    pub subject: String,
    /// `client_id`.
    pub client_id: String,
    /// `aud`.
    pub audience: Vec<String>,
    /// `scope`, if any.
    pub scope: Option<String>,
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub expires_at: u64,
    /// `iat`.
    pub issued_at: u64,
}

/// The claims [`verify`] reads besides `exp` and `iat` (which jwt-compact's [`Claims`] holds).
#[derive(Deserialize)]
struct ReadClaims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    jti: String,
    client_id: String,
    #[serde(default)]
    scope: Option<String>,
}

/// Verifies `token` as an access token of `issuer`, signed by a key the snapshot publishes. Expiry and revocation
/// are the caller's to check. `None` for anything else: malformed, another type or algorithm, an unknown key, a
/// bad signature, another issuer, or claims of the wrong shape.
pub fn verify(token: &str, issuer: &str, keys: &Snapshot) -> Option<VerifiedToken> {
    let untrusted = UntrustedToken::new(token).ok()?;
    if untrusted.header().token_type.as_deref() != Some(TOKEN_TYPE) {
        return None;
    }
    let key = keys.verifying_key(untrusted.header().key_id.as_deref()?)?;
    // The key's algorithm must be the token's (checked by `validate`).
    let verified = key.validate::<ReadClaims>(&untrusted)?;
    let claims = verified.claims();
    if claims.custom.iss != issuer {
        return None;
    }
    // jwt-compact reads `exp` and `iat` into its own time fields.
    let expires_at = claims.expiration.map(|time| time.timestamp())?;
    let issued_at = claims.issued_at.map(|time| time.timestamp())?;
    Some(VerifiedToken {
        subject: claims.custom.sub.clone(),
        client_id: claims.custom.client_id.clone(),
        audience: claims.custom.aud.clone(),
        scope: claims.custom.scope.clone(),
        jti: claims.custom.jti.clone(),
        expires_at: u64::try_from(expires_at).ok()?,
        issued_at: u64::try_from(issued_at).ok()?,
    })
}
