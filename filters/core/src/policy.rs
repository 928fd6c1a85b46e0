//! The per-request decision: extract the credential, verify it, check it against the route's rule, and decide.

use crate::claims::AccessClaims;
use crate::config::{header_safe, FilterConfig, Route, WhenStale};
use crate::delivery::wire::ApiKeyDto;
use crate::error::CredentialError;
use crate::extract::{credential, credential_known, is_b64token, Credential, RequestParts};
use crate::jws;
use crate::keyset::KeySet;
use crate::tier::is_tier;
use crate::token_cache::{Cached, TokenCache, VerifiedToken};
use crate::verdict::{Denial, Identity, Principal, Verdict};
use std::cell::RefCell;
use std::rc::Rc;

/// What the adapter looks up per request, from wherever it keeps key material (Envoy shared data in the filter).
pub trait Directory {
    /// The API key whose [`crate::apikey::hash_key`] is `hash`, if it exists.
    fn api_key(&self, hash: &str) -> Option<ApiKeyDto>;
    /// Whether the access token with this `jti` has been revoked.
    fn is_revoked(&self, jti: &str) -> bool;
}

/// A directory with no API keys and no revocations.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyDirectory;

impl Directory for EmptyDirectory {
    fn api_key(&self, _: &str) -> Option<ApiKeyDto> {
        None
    }
    fn is_revoked(&self, _: &str) -> bool {
        false
    }
}

/// The key material a decision is made with.
#[derive(Clone, Copy)]
pub struct KeyMaterial<'a> {
    /// Signing keys; `None` until the first bundle arrives.
    pub keys: Option<&'a KeySet>,
    /// Seconds since the sidecar last answered (how old `keys` and `directory` may be).
    pub age_secs: u64,
    /// API keys and revocations.
    pub directory: &'a dyn Directory,
    /// This worker's cache of signature verdicts, if caching is on.
    pub cache: Option<&'a TokenCache>,
}

/// Decides one request; `now` is seconds since the epoch. With protected-resource metadata configured, every
/// bearer challenge names the route audience's metadata URL.
pub fn authorize(
    config: &FilterConfig,
    req: &RequestParts<'_>,
    material: &KeyMaterial<'_>,
    now: i64,
) -> Verdict {
    let Some((index, route)) = config
        .route_index_for(req.path)
        .and_then(|index| Some((index, config.routes.get(index)?)))
    else {
        return Verdict::Deny(config.denials.no_route());
    };
    authorize_route(config, index, route, req, material, now)
}

/// [`authorize`] for route `route`, at `index` in the configuration. Denials come rendered from the
/// configuration's table (with the route's resource-metadata URL in bearer challenges, when configured).
fn authorize_route(
    config: &FilterConfig,
    index: usize,
    route: &Route,
    req: &RequestParts<'_>,
    material: &KeyMaterial<'_>,
    now: i64,
) -> Verdict {
    let denials = &config.denials;
    let Some(keys) = material.keys else {
        return Verdict::Deny(denials.no_key_material());
    };
    if material.age_secs > config.sidecar.max_age_secs && route.when_stale == WhenStale::Deny {
        return Verdict::Deny(Denial::stale_key_material(material.age_secs));
    }
    let directory = material.directory;
    let cached = CacheLookup {
        cache: material.cache,
        version: keys.version(),
        last: RefCell::new(None),
    };
    let max_len = config.max_token_bytes;
    let presented = match credential_known(
        req,
        config.token_query_param.as_deref(),
        max_len,
        // A token the cache holds passed these checks before (see `verify_jwt_cached`).
        |token| token.len() <= max_len && cached.get(token).is_some(),
    ) {
        Ok(c) => c,
        Err(e @ CredentialError::Missing) => {
            return Verdict::Deny(denials.unauthenticated(index, e))
        }
        Err(e @ CredentialError::ApiKeyMalformed) if route.credential.accepts_api_key() => {
            return Verdict::Deny(denials.api_key(e))
        }
        Err(e) => return Verdict::Deny(denials.token(index, e)),
    };
    let not_accepted =
        || Verdict::Deny(denials.unauthenticated(index, CredentialError::CredentialNotAccepted));
    match presented {
        Credential::Bearer(_) if !route.credential.accepts_jwt() => not_accepted(),
        Credential::ApiKey(_) if !route.credential.accepts_api_key() => not_accepted(),
        Credential::Bearer(token) => {
            authorize_token(config, index, route, token, keys, material, &cached, now)
        }
        Credential::ApiKey(key) => authorize_api_key(config, index, route, key, directory, now),
    }
}

/// The longest `kid` passed on as a refetch hint; real ones are far shorter.
pub const MAX_HINT_KID_LEN: usize = 128;

/// Whether `kid` may be passed on as a refetch hint: 1 to [`MAX_HINT_KID_LEN`] printable ASCII characters, so it
/// can be sent as a form value and logged safely. The filter sends only such kids; the sidecar accepts only them.
pub fn is_kid_hint(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_HINT_KID_LEN && kid.bytes().all(|b| b.is_ascii_graphic())
}

/// The `kid` of the request's bearer token when no key in `keys` has it and `keys` has external issuers: the
/// identity provider may have rolled out a key the bundle does not have yet, so the adapter asks the sidecar to
/// fetch again (the sidecar throttles that). `None` for anything else, including a `kid` too long or with
/// characters that could not be sent on as a form value safely.
pub fn unknown_external_kid(
    config: &FilterConfig,
    req: &RequestParts<'_>,
    keys: &KeySet,
) -> Option<String> {
    if !keys.has_external_issuers() {
        return None;
    }
    let Ok(Credential::Bearer(token)) = credential(
        req,
        config.token_query_param.as_deref(),
        config.max_token_bytes,
    ) else {
        return None;
    };
    let kid = jws::unverified_kid(token)?;
    (is_kid_hint(&kid) && keys.candidates(&kid).is_empty()).then_some(kid)
}

/// What the verdict cache holds for the request's bearer token, looked up once: while the credential is extracted
/// (a cached token skips the syntax checks it passed before) and again to decide.
struct CacheLookup<'c> {
    cache: Option<&'c TokenCache>,
    version: u64,
    /// The token looked up last and the cache's answer.
    last: RefCell<Option<(TokenSlice, Option<Cached>)>>,
}

/// A token by its address and length in the request: the same slice, never just an equal string.
type TokenSlice = (usize, usize);

impl CacheLookup<'_> {
    fn get(&self, token: &str) -> Option<Cached> {
        let slice = (token.as_ptr() as usize, token.len());
        if let Some((seen, answer)) = self.last.borrow().as_ref() {
            if *seen == slice {
                return answer.clone();
            }
        }
        let answer = self.cache?.get(token, self.version);
        *self.last.borrow_mut() = Some((slice, answer.clone()));
        answer
    }
}

#[allow(clippy::too_many_arguments)] // one request's context, passed down once
fn authorize_token(
    config: &FilterConfig,
    index: usize,
    route: &Route,
    token: &str,
    keys: &KeySet,
    material: &KeyMaterial<'_>,
    cached: &CacheLookup<'_>,
    now: i64,
) -> Verdict {
    let denials = &config.denials;
    let deny = |e: CredentialError| Verdict::Deny(denials.token(index, e));
    let trusted = config.trusted_issuers.as_deref();
    let verified = match material.cache {
        Some(cache) => verify_with_cache(
            token,
            keys,
            trusted,
            config.leeway_secs,
            now,
            cache,
            cached.get(token),
        ),
        None => verify_jwt(token, keys, trusted, config.leeway_secs, now)
            .map(|claims| Rc::new(VerifiedToken::new(claims))),
    };
    let verified = match verified {
        Ok(verified) => verified,
        Err(e) => return deny(e),
    };
    let claims = &verified.claims;
    if claims
        .token_id
        .as_deref()
        .is_some_and(|jti| material.directory.is_revoked(jti))
    {
        return deny(CredentialError::Revoked);
    }
    if !claims.has_audience(&route.audience) {
        return deny(CredentialError::WrongAudience);
    }
    // The token names this API, but its issuer may only be trusted at others.
    if !keys.issuer_allows(&claims.issuer, &route.audience) {
        return deny(CredentialError::IssuerNotAllowed);
    }
    let missing = claims.missing_scopes(&route.scopes);
    if !missing.is_empty() {
        let missing = missing.into_iter().map(str::to_owned).collect();
        return Verdict::Deny(denials.insufficient_scope(index, true, missing));
    }
    Verdict::Allow(Identity {
        principal: Rc::clone(&verified.principal),
        forward: route.identity_headers,
    })
}

fn authorize_api_key(
    config: &FilterConfig,
    index: usize,
    route: &Route,
    key: &str,
    directory: &dyn Directory,
    now: i64,
) -> Verdict {
    let denials = &config.denials;
    let deny = |e: CredentialError| Verdict::Deny(denials.api_key(e));
    let Some(entry) = directory.api_key(&crate::apikey::hash_key(key)) else {
        return deny(CredentialError::ApiKeyUnknown);
    };
    if entry.expires_at.is_some_and(|exp| now >= exp) {
        return deny(CredentialError::ApiKeyExpired);
    }
    if !entry.resources.contains(&route.audience) {
        return Verdict::Deny(denials.wrong_api());
    }
    let missing: Vec<String> = route
        .scopes
        .iter()
        .filter(|s| !entry.scopes.contains(s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Verdict::Deny(denials.insufficient_scope(index, false, missing));
    }
    if !header_safe(&entry.owner) || !header_safe(&entry.id) {
        return deny(CredentialError::UnforwardableClaim("owner"));
    }
    // The sidecar only stores valid tiers; anything else in the bundle is refused rather than forwarded.
    if entry.tier.as_deref().is_some_and(|tier| !is_tier(tier)) {
        return deny(CredentialError::UnforwardableClaim("tier"));
    }
    Verdict::Allow(Identity {
        principal: Rc::new(Principal::new(
            entry.owner,
            Some(entry.id),
            None,
            entry.scopes,
            None,
            "api_key",
            entry.tier,
        )),
        forward: route.identity_headers,
    })
}

/// Verifies a compact JWT access token against `keys`: the signature by the key its `kid` names, `typ` an access
/// token's (`at+jwt`, or a type the key's issuer accepts), `iss` equal to that key's issuer (and among
/// `trusted_issuers` when given), `exp`/`nbf` against `now`.
pub fn verify_jwt(
    token: &str,
    keys: &KeySet,
    trusted_issuers: Option<&[String]>,
    leeway_secs: i64,
    now: i64,
) -> Result<AccessClaims, CredentialError> {
    let claims = verify_signed_claims(token, keys, trusted_issuers)?;
    claims.check_time(now, leeway_secs)?;
    Ok(claims)
}

/// [`verify_jwt`] through a cache of signature verdicts: the time-independent part (with the identity rendered
/// from the claims) is cached per key set version, `exp`/`nbf` are checked on every call.
pub fn verify_jwt_cached(
    token: &str,
    keys: &KeySet,
    trusted_issuers: Option<&[String]>,
    leeway_secs: i64,
    now: i64,
    cache: &TokenCache,
) -> Result<Rc<VerifiedToken>, CredentialError> {
    let held = cache.get(token, keys.version());
    verify_with_cache(token, keys, trusted_issuers, leeway_secs, now, cache, held)
}

/// [`verify_jwt_cached`] given what the cache holds for `token`. Only a `b64token` is ever put in the cache, so
/// that extraction may skip that check for a cached token (`credential_known`).
fn verify_with_cache(
    token: &str,
    keys: &KeySet,
    trusted_issuers: Option<&[String]>,
    leeway_secs: i64,
    now: i64,
    cache: &TokenCache,
    held: Option<Cached>,
) -> Result<Rc<VerifiedToken>, CredentialError> {
    let verified = match held {
        Some(Cached::Valid(verified)) => verified,
        Some(Cached::Invalid(e)) => return Err(e),
        None => match verify_signed_claims(token, keys, trusted_issuers) {
            Ok(claims) => {
                let verified = Rc::new(VerifiedToken::new(claims));
                if is_b64token(token) {
                    cache.insert(token, keys.version(), Cached::Valid(Rc::clone(&verified)));
                }
                verified
            }
            Err(e) => {
                if is_b64token(token) {
                    cache.insert(token, keys.version(), Cached::Invalid(e.clone()));
                }
                return Err(e);
            }
        },
    };
    verified.claims.check_time(now, leeway_secs)?;
    Ok(verified)
}

/// Everything about a token that does not depend on the time: signature by the key its `kid` names, `typ`, `iss`
/// equal to that key's issuer (and trusted), claims well formed and forwardable. `exp` and `nbf` are the caller's
/// to check (the sidecar's revocation endpoint, for one, must accept a token that expired moments ago).
pub fn verify_signed_claims(
    token: &str,
    keys: &KeySet,
    trusted_issuers: Option<&[String]>,
) -> Result<AccessClaims, CredentialError> {
    let verified = jws::verify(token, keys)?;
    if !keys.accepts_type(verified.key, verified.typ.as_deref()) {
        return Err(CredentialError::WrongTokenType);
    }
    let claims = AccessClaims::parse(&verified.payload)?;
    if claims.issuer != verified.issuer {
        return Err(CredentialError::WrongIssuer);
    }
    if let Some(trusted) = trusted_issuers {
        if !trusted.contains(&claims.issuer) {
            return Err(CredentialError::WrongIssuer);
        }
    }
    if !header_safe(&claims.subject) {
        return Err(CredentialError::UnforwardableClaim("sub"));
    }
    if claims.client_id.as_deref().is_some_and(|c| !header_safe(c)) {
        return Err(CredentialError::UnforwardableClaim("client_id"));
    }
    if claims.actor().is_some_and(|a| !header_safe(a)) {
        return Err(CredentialError::UnforwardableClaim("act"));
    }
    if !claims
        .scopes
        .iter()
        .all(|s| crate::config::is_scope_token(s))
    {
        return Err(CredentialError::UnforwardableClaim("scope"));
    }
    if claims.tier.as_deref().is_some_and(|tier| !is_tier(tier)) {
        return Err(CredentialError::UnforwardableClaim("keymesh_tier"));
    }
    Ok(claims)
}
