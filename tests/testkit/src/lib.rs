//! Test fixtures for keymesh: fixed signing keys of every supported algorithm, token minting (honest and
//! malicious), and the filter scenario table that runs both natively against `keymesh-core` and against the
//! compiled `.wasm` through the wasmtime host. Plain JSON and strings only, so it depends on no keymesh crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod scenarios;

pub use scenarios::{scenarios, Scenario, SCENARIO_CONFIG};

/// The `jti` of a revoked token in the fixture bundle.
pub const REVOKED_JTI: &str = "revoked-jti-1";

/// Fixture API keys (`km_` + 43 base64url chars). Valid for orders with `orders:read`, owned by alice.
pub const KEY_ORDERS: &str = "km_b3JkZXJzLWtleS1mb3ItYWxpY2UtMDEyMzQ1Njc4OTA";
/// Valid for payments only.
pub const KEY_PAYMENTS: &str = "km_cGF5bWVudHMta2V5LWZvci1ib2ItMDEyMzQ1Njc4OTA";
/// Valid for orders but without any scope.
pub const KEY_NO_SCOPE: &str = "km_bm8tc2NvcGUta2V5LWZvci1jYXJvbC0wMTIzNDU2Nzg";
/// Expired one second before [`NOW`].
pub const KEY_EXPIRED: &str = "km_ZXhwaXJlZC1rZXktZm9yLWRhdmUtMDEyMzQ1Njc4OTA";
/// Well formed, never issued (or revoked: the filter cannot tell the difference, nor should it).
pub const KEY_UNKNOWN: &str = "km_dW5rbm93bi1rZXktZm9yLWV2ZS0wMTIzNDU2Nzg5MDE";

/// base64url SHA-256 of an API key: computed here independently of keymesh-core, as a test oracle.
pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    b64(&sha2::Sha256::digest(key.as_bytes()))
}

/// The API key entries of the fixture bundle.
pub fn api_key_entries() -> Value {
    json!([
        {"hash": key_hash(KEY_ORDERS), "id": "ak_orders", "owner": "alice", "resources": ["https://orders.local"], "scopes": ["orders:read"]},
        {"hash": key_hash(KEY_PAYMENTS), "id": "ak_payments", "owner": "bob", "resources": ["https://payments.local"], "scopes": ["orders:read", "payments:read"]},
        {"hash": key_hash(KEY_NO_SCOPE), "id": "ak_noscope", "owner": "carol", "resources": ["https://orders.local"], "scopes": []},
        {"hash": key_hash(KEY_EXPIRED), "id": "ak_expired", "owner": "dave", "resources": ["https://orders.local"], "scopes": ["orders:read"], "expires_at": NOW - 1},
    ])
}

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::Signer as _;
use hmac::Mac;
use rand_chacha::rand_core::SeedableRng;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The issuer of fixture tokens.
pub const ISSUER: &str = "https://issuer.keymesh.test";
/// A second issuer, with its own Ed25519 key (`other-ed-1`). Its bundle entry accepts `typ: JWT` besides
/// `at+jwt`, as an operator would for a provider that mints such access tokens.
pub const OTHER_ISSUER: &str = "https://other-issuer.keymesh.test";
/// The fixed "now" of scenarios, seconds since the epoch.
pub const NOW: i64 = 1_800_000_000;

/// A signing algorithm of the fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EdDsa,
    Es256,
    Rs256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::EdDsa => "EdDSA",
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
    pub fn kid(self) -> &'static str {
        match self {
            Alg::EdDsa => "ed-1",
            Alg::Es256 => "es-1",
            Alg::Rs256 => "rs-1",
        }
    }
}

/// Fixed key pairs. RSA generation is slow, so the fixture is built once per process.
pub struct Fixture {
    ed: ed25519_dalek::SigningKey,
    other_ed: ed25519_dalek::SigningKey,
    attacker_ed: ed25519_dalek::SigningKey,
    es: p256::ecdsa::SigningKey,
    rs: rsa::RsaPrivateKey,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        Fixture {
            ed: ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
            other_ed: ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]),
            attacker_ed: ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]),
            es: p256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap(),
            rs: rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        }
    })
}

pub fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

impl Fixture {
    fn ed_jwk(key: &ed25519_dalek::SigningKey, kid: &str) -> Value {
        json!({"kty":"OKP","crv":"Ed25519","x":b64(key.verifying_key().as_bytes()),"kid":kid,"alg":"EdDSA","use":"sig"})
    }

    /// The public JWK of one fixture key.
    pub fn public_jwk(&self, alg: Alg) -> Value {
        match alg {
            Alg::EdDsa => Self::ed_jwk(&self.ed, "ed-1"),
            Alg::Es256 => {
                let point = self.es.verifying_key().to_encoded_point(false);
                json!({"kty":"EC","crv":"P-256","x":b64(point.x().unwrap()),"y":b64(point.y().unwrap()),
                       "kid":"es-1","alg":"ES256","use":"sig"})
            }
            Alg::Rs256 => {
                let public = self.rs.to_public_key();
                json!({"kty":"RSA","n":b64(&public.n().to_bytes_be()),"e":b64(&public.e().to_bytes_be()),
                       "kid":"rs-1","alg":"RS256","use":"sig"})
            }
        }
    }

    /// The issuer's JWK Set with all three keys.
    pub fn jwks(&self) -> Value {
        json!({"keys":[self.public_jwk(Alg::EdDsa), self.public_jwk(Alg::Es256), self.public_jwk(Alg::Rs256)]})
    }

    /// A bundle document (the sidecar's `/v1/bundle` body) trusting [`ISSUER`] and [`OTHER_ISSUER`].
    pub fn bundle(&self, version: u64) -> String {
        json!({"version": version, "issuers": [
            {"issuer": ISSUER, "jwks": self.jwks()},
            {"issuer": OTHER_ISSUER, "jwks": {"keys": [Self::ed_jwk(&self.other_ed, "other-ed-1")]},
             "accept_typ": ["JWT"]},
        ], "api_keys": {"put": api_key_entries(), "delete": []},
           "revoked_tokens": [{"jti": REVOKED_JTI, "exp": NOW + 3600}]})
        .to_string()
    }

    /// Signs `header` and raw `payload` bytes with a fixture key.
    pub fn sign_raw(&self, alg: Alg, header: &Value, payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
        let sig = self.signature(alg, input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    fn signature(&self, alg: Alg, input: &[u8]) -> Vec<u8> {
        match alg {
            Alg::EdDsa => self.ed.sign(input).to_bytes().to_vec(),
            Alg::Es256 => {
                let sig: p256::ecdsa::Signature = self.es.sign(input);
                sig.to_bytes().to_vec()
            }
            Alg::Rs256 => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(input);
                self.rs
                    .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                    .unwrap()
            }
        }
    }

    /// An honest RFC 9068 access token with `claims`.
    pub fn token(&self, alg: Alg, claims: &Value) -> String {
        let header = json!({"alg": alg.name(), "kid": alg.kid(), "typ": "at+jwt"});
        self.sign_raw(alg, &header, claims.to_string().as_bytes())
    }

    /// An access token with this `typ` header (`None`: no `typ`), signed with a fixture key.
    pub fn typed_token(&self, alg: Alg, typ: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": alg.name(), "kid": alg.kid()});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        self.sign_raw(alg, &header, claims.to_string().as_bytes())
    }

    /// A token signed by the second issuer's key.
    pub fn other_issuer_token(&self, claims: &Value) -> String {
        self.other_issuer_typed_token(Some("at+jwt"), claims)
    }

    /// A token signed by the second issuer's key with this `typ` header (`None`: no `typ`).
    pub fn other_issuer_typed_token(&self, typ: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": "EdDSA", "kid": "other-ed-1"});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        format!(
            "{input}.{}",
            b64(&self.other_ed.sign(input.as_bytes()).to_bytes())
        )
    }

    /// A token signed by an attacker's key that embeds that key in its `jwk` header, claiming `kid` ed-1.
    pub fn embedded_jwk_token(&self, claims: &Value) -> String {
        let header =
            json!({"alg":"EdDSA","kid":"ed-1","jwk": Self::ed_jwk(&self.attacker_ed, "ed-1")});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        format!(
            "{input}.{}",
            b64(&self.attacker_ed.sign(input.as_bytes()).to_bytes())
        )
    }

    /// HS256 "signed" with the Ed25519 public key bytes as the HMAC secret: the classic algorithm confusion.
    pub fn hs256_with_public_key(&self, claims: &Value) -> String {
        let header = json!({"alg":"HS256","kid":"ed-1","typ":"at+jwt"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(self.ed.verifying_key().as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    }
}

/// Valid claims for [`ISSUER`] at [`NOW`], for the given audiences and space-separated scope.
pub fn claims(aud: &[&str], scope: &str) -> Value {
    json!({
        "iss": ISSUER, "sub": "client-a", "aud": aud, "client_id": "client-a", "scope": scope,
        "iat": NOW - 10, "exp": NOW + 300, "jti": "jti-1"
    })
}

/// Replaces (or with `Value::Null`, removes) one claim.
pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    if let Some(map) = claims.as_object_mut() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.to_owned(), value);
        }
    }
    claims
}

/// Flips one character of the signature segment.
pub fn tamper_signature(token: &str) -> String {
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    sig[4] = if sig[4] == 'A' { 'B' } else { 'A' };
    format!("{rest}.{}", sig.into_iter().collect::<String>())
}
