//! Fetching a provider's keys: discovery (when registered so), then the JWK Set, with a timeout on each request,
//! a size limit on each response, no redirects, and the keys validated exactly as the filters will.
//!
//! The HTTP client is blocking (ureq, with rustls and the Mozilla roots); the fetch task runs it on a blocking
//! thread. A handful of requests per provider per refresh interval does not need more.

use std::time::Duration;

use keymesh_core::bundle::{BundleDto, IssuerKeysDto, JwksDto};
use keymesh_core::jwk::parse_jwk;
use keymesh_core::{KeyError, KeySet};
use serde_json::Value;

use super::{check_fetch_url, ExternalIssuer, KeySource};

/// Largest discovery document or JWK Set accepted.
pub const MAX_DOCUMENT_BYTES: u64 = 512 * 1024;

/// What a successful fetch brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The usable signature keys (keys of other types or uses are left out).
    pub jwks: JwksDto,
    /// The URL the keys came from.
    pub jwks_uri: String,
    /// Keys not meant for keymesh (another type or use), left out, and why.
    pub skipped: Vec<String>,
    /// Keys meant for signatures that cannot be used (no `kid`, not a curve point, a weak modulus…), refused one
    /// by one: the provider's other keys are kept.
    pub refused: Vec<RefusedKey>,
}

/// A key of a provider's set that keymesh refused, and why; reported by `issuer list`, `/v1/status` and
/// `keymesh_issuer_refused_keys`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusedKey {
    /// The key's `kid` (`(no kid)` when it has none).
    pub kid: String,
    /// Why it was refused.
    pub reason: String,
}

/// Why a fetch failed. Messages name URLs without credentials (registration refuses URLs with them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// A URL is not acceptable (a discovery document may name any `jwks_uri`).
    #[error("{0}")]
    Url(String),
    /// The request failed: connection refused, timeout, TLS, a redirect, or a body over the limit.
    #[error("GET {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The provider answered with something other than 200.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The document is not the JSON expected.
    #[error("GET {url}: {reason}")]
    Document {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The discovery document names another issuer (OIDC Discovery §4.3, RFC 8414 §3.3).
    #[error("discovery document at {url} is for issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The registered issuer.
        expected: String,
        /// The `issuer` the document names.
        found: String,
    },
    /// The JWK Set has no key the filters can verify with, or is unsafe to use as a whole.
    #[error("JWK Set at {url} is not usable: {reason}")]
    Unusable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Fetches providers' keys.
#[derive(Debug, Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Fetcher {
    /// A fetcher whose requests each give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("keymesh/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent }
    }

    /// Fetches the keys of `record` (blocking).
    pub fn fetch(&self, record: &ExternalIssuer) -> Result<Fetched, FetchError> {
        let jwks_uri = match &record.source {
            KeySource::JwksUri(url) => url.clone(),
            KeySource::Discovery(url) => self.discover(url, &record.issuer)?,
        };
        check_fetch_url(&jwks_uri).map_err(FetchError::Url)?;
        let document = self.get_json(&jwks_uri)?;
        let usable =
            usable_keys(&record.issuer, &document).map_err(|reason| FetchError::Unusable {
                url: jwks_uri.clone(),
                reason,
            })?;
        Ok(Fetched {
            jwks: usable.jwks,
            jwks_uri,
            skipped: usable.skipped,
            refused: usable.refused,
        })
    }

    /// Reads the metadata document at `url` and returns its `jwks_uri`, after checking it is `issuer`'s.
    fn discover(&self, url: &str, issuer: &str) -> Result<String, FetchError> {
        let document = self.get_json(url)?;
        discovered_jwks_uri(url, issuer, &document)
    }

    fn get_json(&self, url: &str) -> Result<Value, FetchError> {
        let transport = |error: ureq::Error| FetchError::Transport {
            url: url.to_owned(),
            reason: error.to_string(),
        };
        let mut response = self
            .agent
            .get(url)
            .header("accept", "application/json")
            .call()
            .map_err(transport)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_BYTES)
            .read_to_vec()
            .map_err(transport)?;
        parse_document(url, &body)
    }
}

/// A fetched document (discovery metadata or a JWK Set) read from `url`: a JSON object.
pub fn parse_document(url: &str, body: &[u8]) -> Result<Value, FetchError> {
    let document: Value = serde_json::from_slice(body).map_err(|e| FetchError::Document {
        url: url.to_owned(),
        reason: format!("not JSON: {e}"),
    })?;
    if !document.is_object() {
        return Err(FetchError::Document {
            url: url.to_owned(),
            reason: "not a JSON object".into(),
        });
    }
    Ok(document)
}

/// The `jwks_uri` of the metadata `document` read from `url`, once its `issuer` is the registered `issuer`
/// (OIDC Discovery §4.3, RFC 8414 §3.3). The URI itself is checked by the caller, like a registered one.
pub fn discovered_jwks_uri(
    url: &str,
    issuer: &str,
    document: &Value,
) -> Result<String, FetchError> {
    let field = |name: &str| document.get(name).and_then(Value::as_str);
    let found = field("issuer").ok_or_else(|| FetchError::Document {
        url: url.to_owned(),
        reason: "no `issuer` in the discovery document".into(),
    })?;
    if found != issuer {
        return Err(FetchError::IssuerMismatch {
            url: url.to_owned(),
            expected: issuer.to_owned(),
            found: found.to_owned(),
        });
    }
    field("jwks_uri")
        .map(str::to_owned)
        .ok_or_else(|| FetchError::Document {
            url: url.to_owned(),
            reason: "no `jwks_uri` in the discovery document".into(),
        })
}

/// The keys of a fetched JWK Set, sorted out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsableKeys {
    /// The keys the filters can verify with.
    pub jwks: JwksDto,
    /// Keys not meant for keymesh, and why.
    pub skipped: Vec<String>,
    /// Signature keys that cannot be used, and why.
    pub refused: Vec<RefusedKey>,
}

/// The keys of a fetched JWK Set the filters can verify with, validated as the filters validate them. Keys of
/// other types or uses are left out; a signature key that cannot be used (no `kid`, malformed or weak material)
/// is refused alone, so one sloppy key does not take down the provider's others. A set with no usable key, or one
/// that is unsafe as a whole (private key material, a repeated `kid`), is an error, so a broken fetch never
/// replaces good keys.
pub fn usable_keys(issuer: &str, document: &Value) -> Result<UsableKeys, String> {
    let jwks: JwksDto =
        serde_json::from_value(document.clone()).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut skipped = Vec::new();
    let mut refused = Vec::new();
    let mut usable = Vec::new();
    for key in jwks.keys {
        // An empty `kid` names nothing either: reports show it as missing, never as an empty label.
        let kid = key
            .get("kid")
            .and_then(Value::as_str)
            .filter(|kid| !kid.is_empty())
            .unwrap_or("(no kid)")
            .to_owned();
        match parse_jwk(&key) {
            Ok(_) => usable.push(key),
            // Not for keymesh (another type or use): left out.
            Err(e @ (KeyError::Unsupported { .. } | KeyError::NotForSignatures(_))) => {
                skipped.push(format!("{kid}: {e}"))
            }
            // The provider publishes secrets: keep the keys held.
            Err(e @ KeyError::PrivateMaterial { .. }) => return Err(e.to_string()),
            Err(KeyError::MissingKid) => refused.push(RefusedKey {
                kid,
                reason: "no kid: tokens cannot name it".into(),
            }),
            Err(KeyError::Invalid { detail, .. }) => refused.push(RefusedKey {
                kid,
                reason: detail,
            }),
            Err(e) => refused.push(RefusedKey {
                kid,
                reason: e.to_string(),
            }),
        }
    }
    let jwks = JwksDto { keys: usable };
    // The filters' own check, over the whole set: a repeated kid refuses it.
    let bundle = BundleDto {
        version: 0,
        since: None,
        issuers: vec![IssuerKeysDto {
            issuer: issuer.to_owned(),
            jwks: jwks.clone(),
            audiences: None,
            external: true,
            accept_typ: Vec::new(),
            accept_missing_typ: false,
        }],
        api_keys: Default::default(),
        revoked_tokens: vec![],
    };
    let (set, dropped) = KeySet::from_bundle(&bundle).map_err(|e| e.to_string())?;
    if set.is_empty() {
        let mut reasons: Vec<String> = dropped.iter().map(ToString::to_string).collect();
        reasons.extend(refused.iter().map(|r| format!("{}: {}", r.kid, r.reason)));
        reasons.extend(skipped);
        return Err(if reasons.is_empty() {
            "no keys".to_owned()
        } else {
            format!("no usable signature key ({})", reasons.join("; "))
        });
    }
    Ok(UsableKeys {
        jwks,
        skipped,
        refused,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn only_signature_keys_the_filters_accept_are_kept() {
        let document = json!({"keys": [
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"ed"},
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"enc","use":"enc"},
            {"kty":"OKP","crv":"Ed25519","x":X},
        ]});
        let usable = usable_keys("https://idp", &document).unwrap();
        assert_eq!(usable.jwks.keys.len(), 1);
        assert_eq!(usable.jwks.keys[0]["kid"], "ed");
        assert_eq!(usable.skipped.len(), 2, "{usable:?}");
        assert_eq!(usable.refused.len(), 1, "the key without kid: {usable:?}");
    }

    #[test]
    fn one_invalid_key_is_refused_alone_and_named() {
        let document = json!({"keys": [
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"good"},
            // y = 2 is not on the curve.
            {"kty":"OKP","crv":"Ed25519","x":"AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","kid":"sloppy"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"weak"},
        ]});
        let usable = usable_keys("https://idp", &document).unwrap();
        assert_eq!(super::super::jwks_kids(&usable.jwks), ["good"]);
        let refused: Vec<&str> = usable.refused.iter().map(|r| r.kid.as_str()).collect();
        assert_eq!(refused, ["sloppy", "weak"]);
        assert!(usable.refused[0].reason.contains("point"), "{usable:?}");
        assert!(usable.refused[1].reason.contains("modulus"), "{usable:?}");
    }

    /// Found by the `issuer_jwks` fuzz target: a refused key with `"kid": ""` was reported under an empty name.
    #[test]
    fn a_refused_key_with_an_empty_kid_is_reported_as_having_none() {
        let document = json!({"keys": [
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"good"},
            {"kty":"OKP","crv":"Ed25519","x":"6kpsY-KcUgq-9VB7Ey7F-AAAAAAAAAAAAAAAAAA,AAA","kid":""},
        ]});
        let usable = usable_keys("https://idp", &document).unwrap();
        assert_eq!(super::super::jwks_kids(&usable.jwks), ["good"]);
        assert_eq!(usable.refused.len(), 1, "{usable:?}");
        assert_eq!(usable.refused[0].kid, "(no kid)");
        assert!(!usable.refused[0].reason.is_empty());
    }

    #[test]
    fn unusable_sets_are_refused_whole() {
        let private = json!({"keys": [{"kty":"OKP","crv":"Ed25519","x":X,"d":X,"kid":"ed"}]});
        assert!(usable_keys("https://idp", &private).is_err());
        // One leaked private key refuses the set, even next to good keys and even if marked for encryption.
        let leaked = json!({"keys": [
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"good"},
            {"kty":"OKP","crv":"Ed25519","x":X,"d":X,"kid":"enc","use":"enc"},
        ]});
        assert!(usable_keys("https://idp", &leaked)
            .unwrap_err()
            .contains("private"));
        let only_invalid = json!({"keys": [{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"weak"}]});
        assert!(usable_keys("https://idp", &only_invalid)
            .unwrap_err()
            .contains("weak"));
        let duplicate = json!({"keys": [
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"ed"},
            {"kty":"OKP","crv":"Ed25519","x":X,"kid":"ed"},
        ]});
        assert!(usable_keys("https://idp", &duplicate).is_err());
        assert!(usable_keys("https://idp", &json!({"keys": []})).is_err());
        assert!(usable_keys(
            "https://idp",
            &json!({"keys": [{"kty":"oct","k":"c2VjcmV0"}]})
        )
        .is_err());
        assert!(usable_keys("https://idp", &json!({"issuer": "x"})).is_err());
    }
}
