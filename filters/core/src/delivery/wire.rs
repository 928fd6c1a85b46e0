//! The key bundle: everything the filters need from the sidecar, as one versioned JSON document.
//!
//! The sidecar serves it at `GET /v1/bundle` with `ETag: "<version>"`; a filter that already holds that version
//! sends `If-None-Match: "<version>"` and gets `304 Not Modified`. The DTO here is the wire format shared by both
//! sides; [`crate::keyset::KeySet`] is the validated form the filter verifies against.
//!
//! **Pages.** A filter that adds `page=0` to its poll gets, where a full bundle would be due, the first *page* of
//! it instead: a full bundle document with a [`PageDto`] under `page`, holding a bounded run of the API keys
//! (sorted by hash bytes, so by bucket), with the issuers and the revoked tokens on the first page only. It asks
//! for the rest with `page=<next>&version=<version>`: every page of one resync describes that one version, which
//! the sidecar keeps for the purpose ([`PAGE_QUERY`], [`VERSION_QUERY`]). A filter that does not ask gets the
//! whole bundle in one answer.

use serde::{Deserialize, Serialize};

/// Wire form of a bundle. Unknown fields are ignored so that a newer sidecar can add sections.
///
/// A response is either **full** (`since` absent: the complete state at `version`) or a **delta** (`since: S`:
/// the changes that turn version `S` into `version`). A filter asks with `If-None-Match: "S"`; the sidecar answers
/// 304 when nothing changed, a delta while its change log still reaches back to `S`, and a full bundle otherwise.
/// `issuers` is small and always complete, in both forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleDto {
    /// Monotonic version of the key material in Redis; equal versions mean equal content.
    pub version: u64,
    /// For a delta: the version it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Trusted issuers, each with the public keys that may sign its tokens.
    #[serde(default)]
    pub issuers: Vec<IssuerKeysDto>,
    /// API keys: all of them (full) or the ones changed since `since` (delta).
    #[serde(default)]
    pub api_keys: ApiKeyChangesDto,
    /// Revoked access tokens that have not expired yet: all of them (full) or those revoked since `since`.
    #[serde(default)]
    pub revoked_tokens: Vec<RevokedTokenDto>,
}

/// Query parameter naming the first key of the page asked for (`0`: the first page).
pub const PAGE_QUERY: &str = "page";
/// Query parameter naming the version the pages after the first belong to.
pub const VERSION_QUERY: &str = "version";

/// Where one page of a paged full bundle sits in the whole key list of its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageDto {
    /// Position of this page's first API key in the version's list.
    pub from: u64,
    /// Position of the next page's first key; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// How many API keys the whole list holds.
    pub keys: u64,
}

/// A revoked access token, by `jti`, kept until its `exp` (after which the token fails on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedTokenDto {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`, seconds since the epoch.
    pub exp: i64,
}

/// API key entries in a bundle. In a full bundle `put` is the whole set and `delete` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyChangesDto {
    /// Keys created or changed (regenerated keys appear here under their new hash).
    #[serde(default)]
    pub put: Vec<ApiKeyDto>,
    /// Hashes of keys revoked, regenerated away from, or deleted.
    #[serde(default)]
    pub delete: Vec<String>,
}

/// One API key as the filters see it: never the key, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyDto {
    /// base64url (unpadded) SHA-256 of the whole presented key string (`km_…`); see [`crate::apikey::hash_key`].
    pub hash: String,
    /// Public key id (`ak_…`), forwarded upstream as the client id.
    pub id: String,
    /// The subject the key acts for.
    pub owner: String,
    /// Resource URIs (audiences) the key is valid for.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Expiry, seconds since the epoch; `None` never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The operator-set rate tier (such as `free` or `pro`), forwarded upstream as `x-keymesh-tier` so that
    /// Envoy's own rate limiting can pick a limit per tier; `None` forwards no tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

/// One trusted issuer and its JSON Web Key Set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerKeysDto {
    /// The exact `iss` value of tokens signed by these keys.
    pub issuer: String,
    /// The issuer's public keys (RFC 7517 JWK Set).
    pub jwks: JwksDto,
    /// The APIs (audiences) this issuer's tokens may be used at; absent means every API. An operator lists them
    /// for an external identity provider, so that its tokens are only good where it is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
    /// An external identity provider whose keys the sidecar fetches: a token naming a `kid` none of the bundle's
    /// keys has may be signed by a key it has just rolled out, so the filter asks the sidecar to look again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// `typ` values accepted besides `at+jwt` (RFC 9068 §4), for a provider known to mint access tokens with
    /// another `typ` (often `JWT`). Compared as media types; see [`crate::token_type`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_typ: Vec<String>,
    /// Whether this issuer's tokens may carry no `typ` at all (a provider that never sets one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_missing_typ: bool,
}

/// A JWK Set (RFC 7517 §5), kept as raw JSON objects: each key is validated when the key set is built, so one
/// malformed key is reported by `kid` instead of failing deserialisation of the whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksDto {
    /// The keys.
    pub keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Formats a bundle version as the quoted entity tag used in `ETag` and `If-None-Match`.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Parses an entity tag produced by [`etag`] (weak tags `W/"…"` are accepted too).
pub fn parse_etag(value: &str) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_round_trips_and_rejects_garbage() {
        assert_eq!(parse_etag(&etag(42)), Some(42));
        assert_eq!(parse_etag("W/\"7\""), Some(7));
        assert_eq!(parse_etag("7"), None);
        assert_eq!(parse_etag("\"x\""), None);
        assert_eq!(parse_etag("\"-1\""), None);
    }
}
