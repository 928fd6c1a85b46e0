//! The OAuth2 authorization server's domain: clients and users, PKCE and redirect URI rules, authorization codes,
//! grants and their refresh tokens, the login sessions of the authorization page, the throttling of failed
//! authentications, access tokens and their revocation, and token exchange.
//!
//! Every secret handed out here (codes, refresh tokens, session cookies) is 256 random bits, and Redis keeps only
//! its SHA-256, so a copy of Redis cannot be replayed.

pub mod access_token;
pub mod clients;
pub mod codes;
pub mod exchange;
pub mod grants;
pub mod issuing;
pub mod login;
pub mod pkce;
pub mod redirect_uri;
pub mod registration;
pub mod registration_record;
pub mod revocation;
pub mod sessions;
pub mod throttle;
pub mod users;

use base64ct::{Base64UrlUnpadded, Encoding};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new opaque secret: `bytes` from the operating system's random source, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    Base64UrlUnpadded::encode_string(&buf)
}

/// The form of a secret that Redis keys are named after: base64url of its SHA-256.
pub fn digest(secret: &str) -> String {
    Base64UrlUnpadded::encode_string(&Sha256::digest(secret.as_bytes()))
}

/// Random bytes in codes, refresh tokens, session ids and CSRF tokens.
pub(crate) const SECRET_BYTES: usize = 32;

/// The scopes to grant from `allowed`: all of them when `requested` is absent, else each requested scope (space
/// separated, repeats folded), provided every one is allowed. `None` if one is not, or the list is only spaces.
pub fn select_scopes(allowed: &[String], requested: Option<&str>) -> Option<Vec<String>> {
    let Some(requested) = requested else {
        return Some(allowed.to_vec());
    };
    let mut granted: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !crate::support::syntax::is_scope_token(scope) || !allowed.iter().any(|a| a == scope) {
            tracing::info!(%scope, "scope refused");
            return None;
        }
        if !granted.iter().any(|g| g == scope) {
            granted.push(scope.to_owned());
        }
    }
    (!granted.is_empty()).then_some(granted)
}

/// The resources (audiences) to grant from `allowed`: all of them when none is requested, else each requested one
/// (repeats folded), provided every one is an absolute URI in `allowed`. `None` if one is not, or if nothing
/// would be granted (a token must have an audience).
pub fn select_resources(allowed: &[String], requested: &[String]) -> Option<Vec<String>> {
    if requested.is_empty() {
        return (!allowed.is_empty()).then(|| allowed.to_vec());
    }
    let mut granted: Vec<String> = Vec::with_capacity(requested.len());
    for resource in requested {
        if !crate::support::syntax::is_absolute_uri_without_fragment(resource)
            || !allowed.contains(resource)
        {
            tracing::info!(%resource, "resource refused");
            return None;
        }
        if !granted.contains(resource) {
            granted.push(resource.clone());
        }
    }
    Some(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn scopes_can_be_narrowed_never_widened() {
        let allowed = strings(&["read", "write"]);
        assert_eq!(select_scopes(&allowed, None), Some(allowed.clone()));
        assert_eq!(
            select_scopes(&allowed, Some("write")),
            Some(strings(&["write"]))
        );
        assert_eq!(
            select_scopes(&allowed, Some("write read write")),
            Some(strings(&["write", "read"]))
        );
        assert_eq!(select_scopes(&allowed, Some("read admin")), None);
        assert_eq!(select_scopes(&allowed, Some("  ")), None);
        assert_eq!(select_scopes(&[], Some("read")), None);
        assert_eq!(select_scopes(&[], None), Some(vec![]));
    }

    #[test]
    fn resources_can_be_narrowed_never_widened() {
        let allowed = strings(&["https://a.example", "https://b.example"]);
        assert_eq!(select_resources(&allowed, &[]), Some(allowed.clone()));
        assert_eq!(
            select_resources(
                &allowed,
                &strings(&["https://b.example", "https://b.example"])
            ),
            Some(strings(&["https://b.example"]))
        );
        assert_eq!(
            select_resources(&allowed, &strings(&["https://c.example"])),
            None
        );
        assert_eq!(
            select_resources(&allowed, &strings(&["https://a.example#x"])),
            None
        );
        assert_eq!(select_resources(&[], &[]), None, "no audience");
    }

    #[test]
    fn tokens_are_random_and_digests_fixed() {
        let a = random_token(SECRET_BYTES);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(SECRET_BYTES));
        assert_eq!(digest("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }
}
