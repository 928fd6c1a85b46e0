//! Key material: the algorithms keymesh signs with, key generation, public JWKs, thumbprints and signing.

use std::fmt;
use std::sync::Arc;

use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::alg::{Ed25519, Es256, Rsa};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{AlgorithmExt, Claims, CreationError, Header, Token, UntrustedToken};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

pub use crate::support::alg::Alg;

/// Modulus size of generated RSA keys.
const RSA_BITS: usize = 2048;

/// Why key material could not be generated or rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// RSA key generation failed.
    #[error("cannot generate an RSA key: {0}")]
    RsaGenerate(#[source] rsa::Error),
    /// The private key bytes are not a key of the record's algorithm.
    #[error("malformed {0} private key")]
    Malformed(Alg),
    /// The private key could not be serialised.
    #[error("cannot encode the private key")]
    Encode,
}

/// The private half of a signing key.
enum Private {
    Ed25519(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
    Rs256(Box<rsa::RsaPrivateKey>),
}

/// A signing key with its key id; cheap to clone. `Debug` never shows private material.
#[derive(Clone)]
pub struct SigningKey {
    private: Arc<Private>,
    public: PublishedKey,
}

impl SigningKey {
    /// Generates a fresh Ed25519 key from the operating system's random source.
    pub fn generate(created_at: u64) -> Self {
        Self::from_private(
            Private::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng)),
            created_at,
        )
    }

    /// Generates a fresh key of `alg`. RSA takes a moment: async callers use a blocking thread.
    pub fn generate_with(alg: Alg, created_at: u64) -> Result<Self, MaterialError> {
        let private = match alg {
            Alg::EdDsa => {
                Private::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
            }
            Alg::Es256 => Private::Es256(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)),
            Alg::Rs256 => Private::Rs256(Box::new(
                rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)
                    .map_err(MaterialError::RsaGenerate)?,
            )),
        };
        Ok(Self::from_private(private, created_at))
    }

    /// Rebuilds an Ed25519 key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32], created_at: u64) -> Self {
        Self::from_private(
            Private::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed)),
            created_at,
        )
    }

    /// Rebuilds a key from the bytes [`SigningKey::private_bytes`] produced.
    pub fn from_private_bytes(
        alg: Alg,
        bytes: &[u8],
        created_at: u64,
    ) -> Result<Self, MaterialError> {
        let malformed = || MaterialError::Malformed(alg);
        let private = match alg {
            Alg::EdDsa => {
                let seed: &[u8; 32] = bytes.try_into().map_err(|_| malformed())?;
                Private::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed))
            }
            Alg::Es256 => {
                Private::Es256(p256::ecdsa::SigningKey::from_slice(bytes).map_err(|_| malformed())?)
            }
            Alg::Rs256 => {
                let key = rsa::RsaPrivateKey::from_pkcs8_der(bytes).map_err(|_| malformed())?;
                Private::Rs256(Box::new(key))
            }
        };
        Ok(Self::from_private(private, created_at))
    }

    fn from_private(private: Private, created_at: u64) -> Self {
        let verifying = match &private {
            Private::Ed25519(key) => VerifyingKey::EdDsa(key.verifying_key()),
            Private::Es256(key) => VerifyingKey::Es256(*key.verifying_key()),
            Private::Rs256(key) => VerifyingKey::Rs256(key.to_public_key()),
        };
        let (kid, public_jwk) = verifying.jwk();
        Self {
            private: Arc::new(private),
            public: PublishedKey {
                kid,
                alg: verifying.alg(),
                created_at,
                jwk: Arc::new(public_jwk),
                verifying: Arc::new(verifying),
            },
        }
    }

    /// The key id: the RFC 7638 JWK thumbprint of the public key, so every replica derives the same id.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        self.public.alg
    }

    /// When the key was created (seconds since the Unix epoch).
    pub fn created_at(&self) -> u64 {
        self.public.created_at
    }

    /// The public key as a JWK (`kid`, `alg`, `use: sig`): no private member is ever included.
    pub fn public_jwk(&self) -> serde_json::Map<String, serde_json::Value> {
        self.public.public_jwk()
    }

    /// The public half, as published.
    pub fn published(&self) -> PublishedKey {
        self.public.clone()
    }

    /// The private key in its storage form: the Ed25519 seed, the P-256 scalar, or PKCS#8 DER for RSA.
    pub fn private_bytes(&self) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
        Ok(match &*self.private {
            Private::Ed25519(key) => Zeroizing::new(key.to_bytes().to_vec()),
            Private::Es256(key) => Zeroizing::new(key.to_bytes().to_vec()),
            Private::Rs256(key) => Zeroizing::new(
                key.to_pkcs8_der()
                    .map_err(|_| MaterialError::Encode)?
                    .as_bytes()
                    .to_vec(),
            ),
        })
    }

    /// Signs `claims` as a compact JWS with this key's algorithm (`alg` is set from the key).
    pub fn sign<T: Serialize>(
        &self,
        header: &Header,
        claims: &Claims<T>,
    ) -> Result<String, CreationError> {
        match &*self.private {
            Private::Ed25519(key) => Ed25519.token(header, claims, key),
            Private::Es256(key) => Es256.token(header, claims, key),
            Private::Rs256(key) => Rsa::rs256().token(header, claims, key),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private material.
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("alg", &self.public.alg)
            .field("created_at", &self.public.created_at)
            .finish()
    }
}

/// The public half of a signing key, as published in the JWK Set and the bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedKey {
    kid: String,
    alg: Alg,
    created_at: u64,
    jwk: Arc<serde_json::Map<String, serde_json::Value>>,
    verifying: Arc<VerifyingKey>,
}

impl PublishedKey {
    /// Rebuilds the published form from a stored public JWK, which must be a key of `alg` whose thumbprint is
    /// `kid`. The JWK is re-derived from the parsed key, so nothing but the key's own members is published.
    pub fn from_jwk(
        kid: &str,
        alg: Alg,
        created_at: u64,
        jwk: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Self> {
        let parsed: JsonWebKey<'_> =
            serde_json::from_value(serde_json::Value::Object(jwk.clone())).ok()?;
        let verifying = match alg {
            Alg::EdDsa => VerifyingKey::EdDsa(ed25519_dalek::VerifyingKey::try_from(&parsed).ok()?),
            Alg::Es256 => VerifyingKey::Es256(p256::ecdsa::VerifyingKey::try_from(&parsed).ok()?),
            Alg::Rs256 => VerifyingKey::Rs256(rsa::RsaPublicKey::try_from(&parsed).ok()?),
        };
        let (derived_kid, jwk) = verifying.jwk();
        (derived_kid == kid).then(|| Self {
            kid: derived_kid,
            alg,
            created_at,
            jwk: Arc::new(jwk),
            verifying: Arc::new(verifying),
        })
    }

    /// The public key, to verify tokens it signed.
    pub fn verifying_key(&self) -> VerifyingKey {
        (*self.verifying).clone()
    }

    /// The key id (the JWK thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// When the key was created (seconds since the Unix epoch).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// The public JWK (`kid`, `alg`, `use: sig`).
    pub fn public_jwk(&self) -> serde_json::Map<String, serde_json::Value> {
        (*self.jwk).clone()
    }
}

/// The public half of a signing key, to verify what it signed.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyingKey {
    /// Ed25519.
    EdDsa(ed25519_dalek::VerifyingKey),
    /// P-256.
    Es256(p256::ecdsa::VerifyingKey),
    /// RSA.
    Rs256(rsa::RsaPublicKey),
}

impl VerifyingKey {
    /// The algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        match self {
            Self::EdDsa(_) => Alg::EdDsa,
            Self::Es256(_) => Alg::Es256,
            Self::Rs256(_) => Alg::Rs256,
        }
    }

    /// Verifies the signature of `token`, whose `alg` must be this key's, and parses its claims. Times are the
    /// caller's to check.
    pub fn validate<T: DeserializeOwned>(&self, token: &UntrustedToken<'_>) -> Option<Token<T>> {
        if token.algorithm() != self.alg().as_str() {
            return None;
        }
        match self {
            Self::EdDsa(key) => Ed25519.validator::<T>(key).validate(token).ok(),
            Self::Es256(key) => Es256.validator::<T>(key).validate(token).ok(),
            Self::Rs256(key) => Rsa::rs256().validator::<T>(key).validate(token).ok(),
        }
    }

    /// The thumbprint and the public JWK (`kid`, `alg`, `use: sig`).
    fn jwk(&self) -> (String, serde_json::Map<String, serde_json::Value>) {
        let base = match self {
            Self::EdDsa(key) => public_jwk_base(key),
            Self::Es256(key) => public_jwk_base(key),
            Self::Rs256(key) => public_jwk_base(key),
        };
        finish_jwk(base, self.alg())
    }
}

/// The key members of a public JWK with their RFC 7638 thumbprint input.
struct JwkBase {
    members: serde_json::Map<String, serde_json::Value>,
    thumbprint: String,
}

fn public_jwk_base<'a, K>(key: &'a K) -> JwkBase
where
    JsonWebKey<'a>: From<&'a K>,
{
    let jwk = JsonWebKey::from(key);
    let thumbprint = Base64UrlUnpadded::encode_string(&jwk.thumbprint::<Sha256>());
    let members = match serde_json::to_value(&jwk) {
        Ok(serde_json::Value::Object(members)) => members,
        // A public JWK always serialises to an object; an empty one would fail every verifier visibly.
        _ => serde_json::Map::new(),
    };
    JwkBase {
        members,
        thumbprint,
    }
}

fn finish_jwk(base: JwkBase, alg: Alg) -> (String, serde_json::Map<String, serde_json::Value>) {
    let JwkBase {
        mut members,
        thumbprint,
    } = base;
    members.insert("kid".into(), thumbprint.clone().into());
    members.insert("alg".into(), alg.as_str().into());
    members.insert("use".into(), "sig".into());
    (thumbprint, members)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc8037_thumbprint_vector() {
        // RFC 8037 Appendix A: the A.1 private key; A.3 gives the thumbprint of its public key.
        let seed =
            Base64UrlUnpadded::decode_vec("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
        let key = SigningKey::from_seed(&seed.try_into().unwrap(), 0);
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(
            key.public_jwk()["x"],
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
    }

    #[test]
    fn every_algorithm_round_trips_and_publishes_a_public_jwk_only() {
        for alg in Alg::ALL {
            let key = SigningKey::generate_with(alg, 5).unwrap();
            assert_eq!(key.alg(), alg);
            let bytes = key.private_bytes().unwrap();
            let back = SigningKey::from_private_bytes(alg, &bytes, 5).unwrap();
            assert_eq!(back.kid(), key.kid(), "{alg}");
            let jwk = key.public_jwk();
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(!jwk.contains_key(private), "{alg}: {private}");
            }
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["kid"], key.kid());
            // The filters accept it.
            keymesh_core::jwk::parse_jwk(&jwk).unwrap();
            let published = PublishedKey::from_jwk(key.kid(), alg, 5, &jwk).unwrap();
            assert_eq!(published, key.published());
            assert!(PublishedKey::from_jwk("other", alg, 5, &jwk).is_none());
        }
        assert!(SigningKey::from_private_bytes(Alg::Es256, &[0; 32], 0).is_err());
        assert!(SigningKey::from_private_bytes(Alg::Rs256, b"junk", 0).is_err());
        assert!(SigningKey::from_private_bytes(Alg::EdDsa, &[1; 31], 0).is_err());
    }

    #[test]
    fn algorithm_names() {
        assert_eq!("es256".parse::<Alg>(), Ok(Alg::Es256));
        assert_eq!("EdDSA".parse::<Alg>(), Ok(Alg::EdDsa));
        assert!("HS256".parse::<Alg>().is_err());
        assert_eq!(Alg::default(), Alg::EdDsa);
    }
}
