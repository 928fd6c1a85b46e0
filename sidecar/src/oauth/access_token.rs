//! RFC 9068 JWT access tokens, signed with the active key (EdDSA, ES256 or RS256), and their verification for
//! introspection and revocation, by the same verifier the filters run
//! ([`keymesh_core::policy::verify_signed_claims`]; the caller checks the time).

use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::{Claims, CreationError, Header};
use keymesh_core::KeySet;
use rand::RngCore;
use serde::Serialize;

use crate::keys::SigningKey;

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
    /// The client's rate tier, carried as the `keymesh_tier` claim ([`keymesh_core::tier::TIER_CLAIM`]);
    /// left out when `None`.
    pub tier: Option<&'a str>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    keymesh_tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<Actor<'a>>,
}

/// RFC 8693 §4.1 `act`: the current actor, and the one before it, if any.
#[derive(Serialize)]
struct Actor<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<Box<Actor<'a>>>,
}

impl<'a> Actor<'a> {
    /// The nested `act` claim of a chain whose first element is the current actor.
    fn chain(actors: &'a [String]) -> Option<Self> {
        let (current, earlier) = actors.split_first()?;
        Some(Self {
            sub: current,
            act: Self::chain(earlier).map(Box::new),
        })
    }
}

/// Signs an access token for `grant`, issued by `issuer` at `now` and valid for `ttl_secs`.
pub fn issue(
    key: &SigningKey,
    issuer: &str,
    ttl_secs: u64,
    now: u64,
    grant: Grant<'_>,
) -> Result<IssuedToken, CreationError> {
    sign(key, issuer, now, now.saturating_add(ttl_secs), grant, &[])
}

/// Signs a delegated access token (RFC 8693): `grant.client_id` acts for `grant.subject`, after the earlier actors
/// `earlier_actors` (current first); valid until `expires_at`.
pub fn issue_delegated(
    key: &SigningKey,
    issuer: &str,
    now: u64,
    expires_at: u64,
    grant: Grant<'_>,
    earlier_actors: &[String],
) -> Result<IssuedToken, CreationError> {
    let mut actors = Vec::with_capacity(earlier_actors.len() + 1);
    actors.push(grant.client_id.to_owned());
    actors.extend_from_slice(earlier_actors);
    sign(key, issuer, now, expires_at, grant, &actors)
}

fn sign(
    key: &SigningKey,
    issuer: &str,
    now: u64,
    expires_at: u64,
    grant: Grant<'_>,
    actors: &[String],
) -> Result<IssuedToken, CreationError> {
    let mut jti = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut jti);
    let jti = Base64UrlUnpadded::encode_string(&jti);
    let claims = Claims::new(AccessTokenClaims {
        iss: issuer,
        sub: grant.subject,
        aud: grant.audience,
        exp: expires_at,
        iat: now,
        jti: &jti,
        client_id: grant.client_id,
        scope: (!grant.scopes.is_empty()).then(|| grant.scopes.join(" ")),
        keymesh_tier: grant.tier,
        act: Actor::chain(actors),
    });
    let header = Header::empty()
        .with_key_id(key.kid())
        .with_token_type(TOKEN_TYPE);
    let token = key.sign(&header, &claims)?;
    Ok(IssuedToken {
        token,
        jti,
        expires_in: expires_at.saturating_sub(now),
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

/// Verifies `token` as an access token of `issuer` signed by one of `keys` (the sidecar's published keys), with
/// the filters' verifier: signature by the key the `kid` names, the RFC 9068 `typ`, `iss`, and well-formed,
/// forwardable claims. Beyond what a filter requires, the token must carry the `jti`, `client_id` and `iat` every
/// token of this sidecar has. Expiry and revocation are the caller's to check: revocation must still find a token that
/// expired a moment ago, while filters may accept it within their leeway. `None` for anything else.
pub fn verify(token: &str, issuer: &str, keys: &KeySet) -> Option<VerifiedToken> {
    // The time check is left to the caller.
    let claims =
        keymesh_core::policy::verify_signed_claims(token, keys, Some(&[issuer.to_owned()])).ok()?;
    Some(VerifiedToken {
        subject: claims.subject,
        client_id: claims.client_id?,
        audience: claims.audience,
        scope: (!claims.scopes.is_empty()).then(|| claims.scopes.join(" ")),
        jti: claims.token_id?,
        expires_at: u64::try_from(claims.expires_at).ok()?,
        issued_at: u64::try_from(claims.issued_at?).ok()?,
    })
}

/// Whether the token's header says `typ: at+jwt` (RFC 9068 §4); the signature is checked separately.
pub(crate) fn has_access_token_type(token: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct TypedHeader {
        typ: Option<String>,
    }
    token
        .split('.')
        .next()
        .and_then(|header| Base64UrlUnpadded::decode_vec(header).ok())
        .and_then(|bytes| serde_json::from_slice::<TypedHeader>(&bytes).ok())
        .is_some_and(|header| header.typ.as_deref() == Some(TOKEN_TYPE))
}
