//! The stored form of a signing key (a value of the `{prefix}signing:keys` hash), with its private half sealed
//! under the key-encryption key.
//!
//! ```json
//! {"kid": "<thumbprint>", "alg": "ES256", "created_at": 1700000000,
//!  "jwk": {<public JWK>},
//!  "sealed": {"aead": "XChaCha20-Poly1305", "kek": "<KEK id>", "nonce": "<b64url>", "ciphertext": "<b64url>"}}
//! ```
//!
//! The public JWK is stored in clear so that publishing a key, listing keys and reporting on them never needs the
//! KEK; only signing does. Records written before encryption at rest (`{"kid", "alg": "EdDSA", "seed",
//! "created_at"}`) are still read, and [`super::ensure_active`] seals them in place.

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};

use super::material::{Alg, MaterialError, PublishedKey, SigningKey};
use crate::support::kek::{Kek, SealError, Sealed, AEAD};

/// The stored form. No `Debug`: a legacy record holds a seed in clear.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    kid: String,
    alg: String,
    created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwk: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<SealedDto>,
    /// The Ed25519 seed in clear, base64url: only in records written before encryption at rest. Never written.
    #[serde(default, skip_serializing)]
    seed: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedDto {
    aead: String,
    kek: String,
    nonce: String,
    ciphertext: String,
}

/// Why a stored key record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyRecordError {
    /// The record is not the expected JSON.
    #[error("malformed key record: {0}")]
    Json(#[from] serde_json::Error),
    /// The record names an algorithm this sidecar cannot sign with.
    #[error("unsupported key algorithm {0:?}")]
    UnsupportedAlg(String),
    /// The record has neither a sealed private key nor a public key, or an unusable one.
    #[error("key record lacks a usable public key")]
    BadPublicKey,
    /// The private key is not a key of the record's algorithm.
    #[error(transparent)]
    BadPrivateKey(#[from] MaterialError),
    /// The record's kid differs from the hash field it is stored under, or from the thumbprint of its key.
    #[error("key record kid does not match its hash field or its key")]
    KidMismatch,
    /// The record's private key is sealed with an AEAD this sidecar does not know.
    #[error("unsupported sealing {0:?}")]
    UnsupportedAead(String),
    /// The record has no private key.
    #[error("key record has no private key")]
    NoPrivateKey,
    /// The sealed private key could not be opened.
    #[error("cannot unseal the private key of {kid}: {source}")]
    Unseal {
        /// The key.
        kid: String,
        /// Why.
        source: SealError,
    },
    /// Base64 fields are not base64url.
    #[error("malformed base64 in key record")]
    Base64,
}

impl KeyRecordError {
    /// Whether the record is fine but sealed under another KEK than the one given.
    pub fn is_other_kek(&self) -> bool {
        matches!(
            self,
            Self::Unseal {
                source: SealError::OtherKek { .. },
                ..
            }
        )
    }
}

/// Serialises a key for storage in Redis, its private half sealed under `kek`.
pub fn encode_record(key: &SigningKey, kek: &Kek) -> Result<String, KeyRecordError> {
    let private = key.private_bytes()?;
    let sealed = kek
        .seal(key.kid(), &private)
        .map_err(|source| KeyRecordError::Unseal {
            kid: key.kid().to_owned(),
            source,
        })?;
    Ok(serde_json::to_string(&StoredKey {
        kid: key.kid().to_owned(),
        alg: key.alg().as_str().to_owned(),
        created_at: key.created_at(),
        jwk: Some(key.public_jwk()),
        sealed: Some(SealedDto {
            aead: AEAD.to_owned(),
            kek: sealed.kek_id,
            nonce: Base64UrlUnpadded::encode_string(&sealed.nonce),
            ciphertext: Base64UrlUnpadded::encode_string(&sealed.ciphertext),
        }),
        seed: None,
    })?)
}

/// What a record says about itself without its private key.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordInfo {
    /// The public key as published.
    pub public: PublishedKey,
    /// Id of the KEK the private key is sealed under; `None` for a legacy record holding it in clear.
    pub sealed_with: Option<String>,
}

/// The public half of the key stored under hash field `kid` (no KEK needed).
pub fn decode_public(kid: &str, record: &str) -> Result<RecordInfo, KeyRecordError> {
    let stored = parse(kid, record)?;
    let alg = alg_of(&stored)?;
    let public = match (&stored.jwk, &stored.seed) {
        (Some(jwk), _) => PublishedKey::from_jwk(kid, alg, stored.created_at, jwk)
            .ok_or(KeyRecordError::BadPublicKey)?,
        (None, Some(_)) => legacy(&stored, alg)?.published(),
        (None, None) => return Err(KeyRecordError::BadPublicKey),
    };
    if public.kid() != kid {
        return Err(KeyRecordError::KidMismatch);
    }
    Ok(RecordInfo {
        public,
        sealed_with: stored.sealed.map(|sealed| sealed.kek),
    })
}

/// Parses the key stored under hash field `kid`, unsealing its private half with `kek`.
pub fn decode_record(kid: &str, record: &str, kek: &Kek) -> Result<SigningKey, KeyRecordError> {
    let stored = parse(kid, record)?;
    let alg = alg_of(&stored)?;
    let key = match &stored.sealed {
        Some(sealed) => {
            if sealed.aead != AEAD {
                return Err(KeyRecordError::UnsupportedAead(sealed.aead.clone()));
            }
            let sealed = Sealed {
                kek_id: sealed.kek.clone(),
                nonce: decode_b64(&sealed.nonce)?,
                ciphertext: decode_b64(&sealed.ciphertext)?,
            };
            let private = kek
                .open(kid, &sealed)
                .map_err(|source| KeyRecordError::Unseal {
                    kid: kid.to_owned(),
                    source,
                })?;
            SigningKey::from_private_bytes(alg, &private, stored.created_at)?
        }
        None if stored.seed.is_some() => legacy(&stored, alg)?,
        None => return Err(KeyRecordError::NoPrivateKey),
    };
    if key.kid() != kid {
        return Err(KeyRecordError::KidMismatch);
    }
    if let Some(jwk) = &stored.jwk {
        if PublishedKey::from_jwk(kid, alg, stored.created_at, jwk).as_ref()
            != Some(&key.published())
        {
            return Err(KeyRecordError::KidMismatch);
        }
    }
    Ok(key)
}

/// Whether the record holds its private key in clear (written before encryption at rest).
pub fn is_plaintext(record: &str) -> bool {
    serde_json::from_str::<StoredKey>(record)
        .is_ok_and(|stored| stored.sealed.is_none() && stored.seed.is_some())
}

fn parse(kid: &str, record: &str) -> Result<StoredKey, KeyRecordError> {
    let stored: StoredKey = serde_json::from_str(record)?;
    if stored.kid != kid {
        return Err(KeyRecordError::KidMismatch);
    }
    Ok(stored)
}

fn alg_of(stored: &StoredKey) -> Result<Alg, KeyRecordError> {
    stored
        .alg
        .parse::<Alg>()
        .ok()
        // Exact names only: the record is machine-written.
        .filter(|alg| alg.as_str() == stored.alg)
        .ok_or_else(|| KeyRecordError::UnsupportedAlg(stored.alg.clone()))
}

/// The key of a legacy record (an Ed25519 seed in clear).
fn legacy(stored: &StoredKey, alg: Alg) -> Result<SigningKey, KeyRecordError> {
    if alg != Alg::EdDsa {
        return Err(KeyRecordError::UnsupportedAlg(stored.alg.clone()));
    }
    let seed = stored.seed.as_deref().ok_or(KeyRecordError::NoPrivateKey)?;
    let seed = zeroize::Zeroizing::new(decode_b64(seed)?);
    Ok(SigningKey::from_private_bytes(
        Alg::EdDsa,
        &seed,
        stored.created_at,
    )?)
}

fn decode_b64(text: &str) -> Result<Vec<u8>, KeyRecordError> {
    Base64UrlUnpadded::decode_vec(text).map_err(|_| KeyRecordError::Base64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn legacy_record(key: &SigningKey, seed: &[u8; 32]) -> String {
        serde_json::json!({
            "kid": key.kid(), "alg": "EdDSA", "created_at": 3,
            "seed": Base64UrlUnpadded::encode_string(seed),
        })
        .to_string()
    }

    #[test]
    fn records_hold_no_private_material_in_clear() {
        let kek = Kek::generate();
        for alg in Alg::ALL {
            let key = SigningKey::generate_with(alg, 1_700_000_000).unwrap();
            let record = encode_record(&key, &kek).unwrap();
            let private = key.private_bytes().unwrap();
            // Neither the raw bytes nor any base64 form of them appear in the record.
            assert!(
                !record.contains(&Base64UrlUnpadded::encode_string(&private)),
                "{alg}"
            );
            assert!(
                !record.contains(&base64ct::Base64::encode_string(&private)),
                "{alg}"
            );
            assert!(!record
                .as_bytes()
                .windows(16)
                .any(|w| private.windows(16).any(|p| p == w)));
            let back = decode_record(key.kid(), &record, &kek).unwrap();
            assert_eq!(
                (back.kid(), back.alg(), back.created_at()),
                (key.kid(), alg, 1_700_000_000)
            );
            let info = decode_public(key.kid(), &record).unwrap();
            assert_eq!(info.public, key.published());
            assert_eq!(info.sealed_with.as_deref(), Some(kek.id()));
            assert!(!is_plaintext(&record));
        }
    }

    #[test]
    fn another_kek_is_a_clear_error_and_the_public_half_still_reads() {
        let key = SigningKey::generate(0);
        let record = encode_record(&key, &Kek::generate()).unwrap();
        let err = decode_record(key.kid(), &record, &Kek::generate()).unwrap_err();
        assert!(err.is_other_kek(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(key.kid()) && message.contains("KEYMESH_KEK"),
            "{message}"
        );
        assert_eq!(
            decode_public(key.kid(), &record).unwrap().public,
            key.published()
        );
    }

    #[test]
    fn legacy_plaintext_records_are_read() {
        let seed = [4u8; 32];
        let key = SigningKey::from_seed(&seed, 3);
        let record = legacy_record(&key, &seed);
        assert!(is_plaintext(&record));
        let back = decode_record(key.kid(), &record, &Kek::generate()).unwrap();
        assert_eq!(back.kid(), key.kid());
        assert_eq!(decode_public(key.kid(), &record).unwrap().sealed_with, None);
    }

    #[test]
    fn bad_records_are_rejected() {
        let kek = Kek::generate();
        let key = SigningKey::from_seed(&[1; 32], 0);
        let record = encode_record(&key, &kek).unwrap();
        assert!(matches!(
            decode_record("other", &record, &kek),
            Err(KeyRecordError::KidMismatch)
        ));
        assert!(matches!(
            decode_public("other", &record),
            Err(KeyRecordError::KidMismatch)
        ));
        assert!(matches!(
            decode_record(key.kid(), "{", &kek),
            Err(KeyRecordError::Json(_))
        ));
        let rsa = record.replace("\"alg\":\"EdDSA\"", "\"alg\":\"RS256\"");
        assert!(decode_record(key.kid(), &rsa, &kek).is_err());
        let hs = record.replace("\"alg\":\"EdDSA\"", "\"alg\":\"HS256\"");
        assert!(matches!(
            decode_record(key.kid(), &hs, &kek),
            Err(KeyRecordError::UnsupportedAlg(_))
        ));
        // A sealed key moved under another key's public half and kid does not open.
        let other = SigningKey::from_seed(&[2; 32], 0);
        let moved = record.replace(key.kid(), other.kid());
        assert!(decode_record(other.kid(), &moved, &kek).is_err());
        let short =
            serde_json::json!({"kid": key.kid(), "alg": "EdDSA", "seed": "AAAA", "created_at": 0});
        assert!(matches!(
            decode_record(key.kid(), &short.to_string(), &kek),
            Err(KeyRecordError::BadPrivateKey(_))
        ));
        let bare = serde_json::json!({"kid": key.kid(), "alg": "EdDSA", "created_at": 0});
        assert!(matches!(
            decode_record(key.kid(), &bare.to_string(), &kek),
            Err(KeyRecordError::NoPrivateKey)
        ));
        assert!(matches!(
            decode_public(key.kid(), &bare.to_string()),
            Err(KeyRecordError::BadPublicKey)
        ));
    }
}
