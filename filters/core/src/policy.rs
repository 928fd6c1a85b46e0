//! The per-request decision: extract the credential, verify it, check it against the route's rule, and decide.

use crate::claims::AccessClaims;
use crate::config::{header_safe, CredentialMode, FilterConfig, Route, WhenStale};
use crate::delivery::wire::ApiKeyDto;
use crate::error::CredentialError;
use crate::extract::{credential, Credential, RequestParts};
use crate::jws;
use crate::keyset::KeySet;
use crate::tier::is_tier;
use crate::token_cache::{Cached, TokenCache};
use crate::verdict::{Denial, Identity, Verdict};
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
    let Some(route) = config.route_for(req.path) else {
        return Verdict::Deny(Denial::no_route());
    };
    let verdict = authorize_route(config, route, req, material, now);
    let metadata_url = config
        .resource_metadata
        .as_ref()
        .and_then(|m| m.url_for(&route.audience));
    match (verdict, metadata_url) {
        (Verdict::Deny(denial), Some(url)) => Verdict::Deny(denial.with_resource_metadata(url)),
        (verdict, _) => verdict,
    }
}

fn authorize_route(
    config: &FilterConfig,
    route: &Route,
    req: &RequestParts<'_>,
    material: &KeyMaterial<'_>,
    now: i64,
) -> Verdict {
    let Some(keys) = material.keys else {
        return Verdict::Deny(Denial::no_key_material());
    };
    if material.age_secs > config.sidecar.max_age_secs && route.when_stale == WhenStale::Deny {
        return Verdict::Deny(Denial::stale_key_material(material.age_secs));
    }
    let directory = material.directory;
    let realm = &config.realm;
    let presented = match credential(
        req,
        config.token_query_param.as_deref(),
        config.max_token_bytes,
    ) {
        Ok(c) => c,
        Err(e @ CredentialError::Missing) => {
            return Verdict::Deny(Denial::unauthenticated(e, route.credential, realm))
        }
        Err(e @ CredentialError::ApiKeyMalformed) if route.credential.accepts_api_key() => {
            return Verdict::Deny(Denial::api_key(e, realm))
        }
        Err(e) => return Verdict::Deny(Denial::token(e, realm)),
    };
    let not_accepted = |mode: CredentialMode| {
        Verdict::Deny(Denial::unauthenticated(
            CredentialError::CredentialNotAccepted,
            mode,
            realm,
        ))
    };
    match presented {
        Credential::Bearer(_) if !route.credential.accepts_jwt() => not_accepted(route.credential),
        Credential::ApiKey(_) if !route.credential.accepts_api_key() => {
            not_accepted(route.credential)
        }
        Credential::Bearer(token) => authorize_token(config, route, token, keys, material, now),
        Credential::ApiKey(key) => authorize_api_key(route, key, directory, realm, now),
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

fn authorize_token(
    config: &FilterConfig,
    route: &Route,
    token: &str,
    keys: &KeySet,
    material: &KeyMaterial<'_>,
    now: i64,
) -> Verdict {
    let realm = &config.realm;
    let trusted = config.trusted_issuers.as_deref();
    let verified = match material.cache {
        Some(cache) => verify_jwt_cached(token, keys, trusted, config.leeway_secs, now, cache),
        None => verify_jwt(token, keys, trusted, config.leeway_secs, now).map(Rc::new),
    };
    let claims = match verified {
        Ok(claims) => claims,
        Err(e) => return Verdict::Deny(Denial::token(e, realm)),
    };
    if claims
        .token_id
        .as_deref()
        .is_some_and(|jti| material.directory.is_revoked(jti))
    {
        return Verdict::Deny(Denial::token(CredentialError::Revoked, realm));
    }
    if !claims.has_audience(&route.audience) {
        return Verdict::Deny(Denial::token(CredentialError::WrongAudience, realm));
    }
    // The token names this API, but its issuer may only be trusted at others.
    if !keys.issuer_allows(&claims.issuer, &route.audience) {
        return Verdict::Deny(Denial::token(CredentialError::IssuerNotAllowed, realm));
    }
    let missing = claims.missing_scopes(&route.scopes);
    if !missing.is_empty() {
        let missing = missing.into_iter().map(str::to_owned).collect();
        return Verdict::Deny(Denial::insufficient_scope(
            "Bearer",
            &route.scopes,
            missing,
            realm,
        ));
    }
    Verdict::Allow(Identity {
        subject: claims.subject.clone(),
        client_id: claims.client_id.clone(),
        actor: claims.actor().map(str::to_owned),
        scopes: claims.scopes.clone(),
        issuer: Some(claims.issuer.clone()),
        credential: "jwt",
        tier: claims.tier.clone(),
        forward: route.identity_headers,
    })
}

fn authorize_api_key(
    route: &Route,
    key: &str,
    directory: &dyn Directory,
    realm: &str,
    now: i64,
) -> Verdict {
    let Some(entry) = directory.api_key(&crate::apikey::hash_key(key)) else {
        return Verdict::Deny(Denial::api_key(CredentialError::ApiKeyUnknown, realm));
    };
    if entry.expires_at.is_some_and(|exp| now >= exp) {
        return Verdict::Deny(Denial::api_key(CredentialError::ApiKeyExpired, realm));
    }
    if !entry.resources.contains(&route.audience) {
        return Verdict::Deny(Denial::api_key_wrong_api(realm));
    }
    let missing: Vec<String> = route
        .scopes
        .iter()
        .filter(|s| !entry.scopes.contains(s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Verdict::Deny(Denial::insufficient_scope(
            "apikey",
            &route.scopes,
            missing,
            realm,
        ));
    }
    if !header_safe(&entry.owner) || !header_safe(&entry.id) {
        return Verdict::Deny(Denial::api_key(
            CredentialError::UnforwardableClaim("owner"),
            realm,
        ));
    }
    // The sidecar only stores valid tiers; anything else in the bundle is refused rather than forwarded.
    if entry.tier.as_deref().is_some_and(|tier| !is_tier(tier)) {
        return Verdict::Deny(Denial::api_key(
            CredentialError::UnforwardableClaim("tier"),
            realm,
        ));
    }
    Verdict::Allow(Identity {
        subject: entry.owner,
        client_id: Some(entry.id),
        actor: None,
        scopes: entry.scopes,
        issuer: None,
        credential: "api_key",
        tier: entry.tier,
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

/// [`verify_jwt`] through a cache of signature verdicts: the time-independent part is cached per key set
/// version, `exp`/`nbf` are checked on every call.
pub fn verify_jwt_cached(
    token: &str,
    keys: &KeySet,
    trusted_issuers: Option<&[String]>,
    leeway_secs: i64,
    now: i64,
    cache: &TokenCache,
) -> Result<Rc<AccessClaims>, CredentialError> {
    let claims = match cache.get(token, keys.version()) {
        Some(Cached::Valid(claims)) => claims,
        Some(Cached::Invalid(e)) => return Err(e),
        None => match verify_signed_claims(token, keys, trusted_issuers) {
            Ok(claims) => {
                let claims = Rc::new(claims);
                cache.insert(token, keys.version(), Cached::Valid(claims.clone()));
                claims
            }
            Err(e) => {
                cache.insert(token, keys.version(), Cached::Invalid(e.clone()));
                return Err(e);
            }
        },
    };
    claims.check_time(now, leeway_secs)?;
    Ok(claims)
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
