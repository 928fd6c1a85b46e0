//! Public signature keys from JWKs (RFC 7517/7518), each bound to exactly one algorithm.
//!
//! The algorithm a token is verified with is the algorithm of the key its `kid` names; the token's own `alg` header
//! only has to agree with it. Symmetric (`oct`) keys are never accepted: a key set holds public keys only, which is
//! what makes HS256-with-the-public-key confusion impossible.

use crate::ed25519_verify::Ed25519Verifier;
use crate::error::KeyError;
use crate::es256_verify::Es256Verifier;
use crate::rsa_verify::RsaVerifier;
use jwt_compact::jwk::JsonWebKey;
use serde_json::{Map, Value};
use std::fmt;

/// A signature algorithm keymesh verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037), the default for keymesh's own tokens.
    EdDsa,
    /// ECDSA P-256 with SHA-256, raw `r‖s` signatures.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, moduli of 2048, 3072 or 4096 bits.
    Rs256,
}

impl Algorithm {
    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated public key; the variant fixes the algorithm.
#[derive(Clone)]
pub enum PublicKey {
    /// An Ed25519 public key, prepared for verification.
    EdDsa(Ed25519Verifier),
    /// A P-256 public key, prepared for verification.
    Es256(Es256Verifier),
    /// An RSA public key of an accepted size, prepared for verification.
    Rs256(RsaVerifier),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.algorithm())
    }
}

impl PublicKey {
    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::EdDsa(_) => Algorithm::EdDsa,
            Self::Es256(_) => Algorithm::Es256,
            Self::Rs256(_) => Algorithm::Rs256,
        }
    }

    /// Verifies `signature` over `message` with this key's algorithm. Malformed signatures are simply invalid.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::EdDsa(key) => key.verify(message, signature),
            Self::Es256(key) => key.verify(message, signature),
            Self::Rs256(key) => key.verify_pkcs1v15_sha256(message, signature),
        }
    }
}

/// A key parsed from a JWK together with its `kid`.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The key id.
    pub kid: String,
    /// The key.
    pub key: PublicKey,
}

/// Members that only private or symmetric keys have; a public key set carrying them is misconfigured.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Parses one JWK object into a public key, refusing anything but EdDSA, ES256 and RS256 signature keys.
pub fn parse_jwk(jwk: &Map<String, Value>) -> Result<KeyEntry, KeyError> {
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
    // Private material is checked before anything else, whatever the key's use, type or kid: a provider that
    // publishes it is leaking secrets. A symmetric key's `k` is left to the `oct` refusal below.
    if kty != "oct" {
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("(no kid)");
            return Err(KeyError::PrivateMaterial {
                kid: kid.to_owned(),
                member,
            });
        }
    }
    let kid = match jwk.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        _ => return Err(KeyError::MissingKid),
    };
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let crv = text("crv");
    let alg = text("alg");
    let unsupported = || KeyError::Unsupported {
        kid: kid.clone(),
        detail: format!(
            "kty={kty} crv={} alg={}",
            crv.unwrap_or("-"),
            alg.unwrap_or("-")
        ),
    };

    if let Some(use_) = jwk.get("use") {
        if use_.as_str() != Some("sig") {
            return Err(KeyError::NotForSignatures(kid));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err(KeyError::NotForSignatures(kid));
        }
    }
    if kty == "oct" {
        return Err(unsupported());
    }

    let algorithm = match (kty, crv, alg) {
        ("OKP", Some("Ed25519"), None | Some("EdDSA") | Some("Ed25519")) => Algorithm::EdDsa,
        ("EC", Some("P-256"), None | Some("ES256")) => Algorithm::Es256,
        // RSA JWKs often omit `alg`; RS256 is the only RSA algorithm keymesh verifies.
        ("RSA", None, None | Some("RS256")) => Algorithm::Rs256,
        _ => return Err(unsupported()),
    };
    let invalid = |detail: String| KeyError::Invalid {
        kid: kid.clone(),
        detail,
    };
    let parsed: JsonWebKey<'_> = serde_json::from_value(Value::Object(jwk.clone()))
        .map_err(|e| invalid(format!("malformed JWK: {e}")))?;
    let key = match algorithm {
        Algorithm::EdDsa => {
            let key = ed25519_dalek::VerifyingKey::try_from(&parsed)
                .map_err(|e| invalid(e.to_string()))?;
            PublicKey::EdDsa(
                Ed25519Verifier::from_bytes(key.as_bytes())
                    .ok_or_else(|| invalid("not a point of Ed25519".into()))?,
            )
        }
        Algorithm::Es256 => PublicKey::Es256(Es256Verifier::new(
            &p256::ecdsa::VerifyingKey::try_from(&parsed).map_err(|e| invalid(e.to_string()))?,
        )),
        Algorithm::Rs256 => {
            let key = rsa::RsaPublicKey::try_from(&parsed).map_err(|e| invalid(e.to_string()))?;
            let strong = jwt_compact::alg::StrongKey::try_from(key)
                .map_err(|_| invalid("RSA modulus must be 2048, 3072 or 4096 bits".into()))?;
            PublicKey::Rs256(
                RsaVerifier::new(&strong.into_inner()).map_err(|e| invalid(e.to_string()))?,
            )
        }
    };
    Ok(KeyEntry { kid, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn ed25519_key_is_eddsa() {
        let e = parse_jwk(&obj(
            json!({"kty":"OKP","crv":"Ed25519","x":ED_X,"kid":"a"}),
        ))
        .unwrap();
        assert_eq!(e.key.algorithm(), Algorithm::EdDsa);
        assert_eq!(e.kid, "a");
    }

    #[test]
    fn refuses_symmetric_private_and_foreign_keys() {
        let cases = [
            json!({"kty":"oct","k":"AAAA","kid":"h","alg":"HS256"}),
            json!({"kty":"OKP","crv":"Ed25519","x":ED_X,"d":ED_X,"kid":"p"}),
            json!({"kty":"OKP","crv":"Ed25519","x":ED_X,"kid":"u","use":"enc"}),
            json!({"kty":"OKP","crv":"Ed25519","x":ED_X,"kid":"o","key_ops":["sign"]}),
            json!({"kty":"OKP","crv":"Ed25519","x":ED_X,"kid":"w","alg":"ES256"}),
            json!({"kty":"OKP","crv":"X25519","x":ED_X,"kid":"x"}),
            json!({"kty":"OKP","crv":"Ed25519","x":ED_X}),
            json!({"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"short"}),
        ];
        for case in cases {
            assert!(parse_jwk(&obj(case.clone())).is_err(), "accepted {case}");
        }
    }

    #[test]
    fn private_material_is_named_whatever_the_use_or_kid() {
        for case in [
            json!({"kty":"OKP","crv":"Ed25519","x":ED_X,"d":ED_X,"kid":"p"}),
            json!({"kty":"RSA","n":"AQAB","e":"AQAB","p":"AQAB","kid":"r","use":"enc"}),
            json!({"kty":"EC","crv":"P-256","x":ED_X,"y":ED_X,"d":ED_X}),
        ] {
            assert!(
                matches!(
                    parse_jwk(&obj(case.clone())),
                    Err(KeyError::PrivateMaterial { .. })
                ),
                "{case}"
            );
        }
        assert!(matches!(
            parse_jwk(&obj(json!({"kty":"oct","k":"AAAA","kid":"h"}))),
            Err(KeyError::Unsupported { .. })
        ));
    }
}
