//! The JWS layer (RFC 7515 compact serialisation): structure, header rules, key selection and signature.
//!
//! Claims are not looked at here: this layer answers "did a trusted key sign exactly these bytes?" and returns the
//! payload and the issuer owning the key. Cheap checks come first so a flood of junk costs no signature work.

use crate::error::CredentialError;
use crate::keyset::{KeySet, TrustedKey};
use crate::strict_json;
use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::Value;

/// Header parameters that would let the token choose its own key or demand extensions keymesh does not
/// implement. RFC 7515 §4.1.11 requires rejecting unknown `crit` extensions; embedded or referenced keys are
/// never trusted, so their presence marks an attack or a misconfigured issuer.
const FORBIDDEN_HEADERS: [&str; 5] = ["jwk", "jku", "x5u", "x5c", "crit"];

/// A signature-verified JWS.
#[derive(Debug)]
pub struct VerifiedJws<'k> {
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The key that verified it.
    pub key: &'k TrustedKey,
    /// The issuer that owns the key.
    pub issuer: &'k str,
    /// The header `typ`, if any.
    pub typ: Option<String>,
}

/// The `kid` a compact JWS's header names, without verifying anything: a hint for fetching keys, never a
/// reason to trust the token.
pub fn unverified_kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = decode(header).ok()?;
    match strict_json::parse_object(&bytes).ok()?.get("kid") {
        Some(Value::String(kid)) => Some(kid.clone()),
        _ => None,
    }
}

/// Verifies a compact JWS against a key set.
pub fn verify<'k>(token: &str, keys: &'k KeySet) -> Result<VerifiedJws<'k>, CredentialError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CredentialError::Malformed("not three segments"));
    };
    if h.is_empty() || s.is_empty() {
        return Err(CredentialError::Malformed("empty segment"));
    }
    let header_bytes = decode(h)?;
    let header = strict_json::parse_object(&header_bytes)
        .map_err(|_| CredentialError::Malformed("header is not a JSON object"))?;
    if let Some(name) = FORBIDDEN_HEADERS.iter().find(|n| header.contains_key(**n)) {
        return Err(CredentialError::ForbiddenHeader(name));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        _ => return Err(CredentialError::Malformed("header has no alg")),
    };
    let kid = match header.get("kid") {
        Some(Value::String(kid)) => kid.as_str(),
        Some(_) => return Err(CredentialError::Malformed("kid is not a string")),
        None => return Err(CredentialError::MissingKid),
    };
    let typ = match header.get("typ") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(CredentialError::Malformed("typ is not a string")),
        None => None,
    };
    let candidates = keys.candidates(kid);
    if candidates.is_empty() {
        return Err(CredentialError::UnknownKid);
    }
    // The algorithm is the key's; the header only has to agree (this is what defeats `none` and HS256-with-the-
    // public-key confusion: no key in a key set has either algorithm).
    let matching = candidates
        .iter()
        .filter(|c| c.key().algorithm().name() == alg);
    let mut any = None;
    let payload = decode(p)?;
    let signature = decode(s)?;
    // Exactly three segments, so the signing input `h.p` is everything before the last dot.
    let Some((signing_input, _)) = token.rsplit_once('.') else {
        return Err(CredentialError::Malformed("not three segments"));
    };
    let signing_input = signing_input.as_bytes();
    for candidate in matching {
        any = Some(candidate);
        if candidate.key().verify(signing_input, &signature) {
            return Ok(VerifiedJws {
                payload,
                key: candidate,
                issuer: keys.issuer_of(candidate),
                typ,
            });
        }
    }
    match any {
        Some(_) => Err(CredentialError::BadSignature),
        None => Err(CredentialError::AlgorithmMismatch {
            expected: candidates
                .first()
                .map_or("none", |c| c.key().algorithm().name()),
            actual: sanitize_alg(alg),
        }),
    }
}

fn decode(segment: &str) -> Result<Vec<u8>, CredentialError> {
    Base64UrlUnpadded::decode_vec(segment).map_err(|_| CredentialError::Malformed("bad base64url"))
}

/// An attacker-chosen `alg` goes into logs only in a short, printable form.
fn sanitize_alg(alg: &str) -> String {
    alg.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect()
}
