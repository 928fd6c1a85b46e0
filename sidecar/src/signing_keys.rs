//! Signing keys: generation, the stored record, and the Redis operations on the key set.
//!
//! This is the only module that reads or writes private key material in Redis, so encrypting it at rest is a
//! change to [`encode_record`] and [`decode_record`] alone.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use base64ct::{Base64UrlUnpadded, Encoding};
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::changes;
use crate::names::KeyNames;

/// The JWS algorithm of every key this sidecar generates.
pub const ALG: &str = "EdDSA";

/// An Ed25519 signing key with its key id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
    created_at: u64,
}

impl SigningKey {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate(created_at: u64) -> Self {
        Self::from_key(
            ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
            created_at,
        )
    }

    /// Rebuilds a key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32], created_at: u64) -> Self {
        Self::from_key(ed25519_dalek::SigningKey::from_bytes(seed), created_at)
    }

    fn from_key(key: ed25519_dalek::SigningKey, created_at: u64) -> Self {
        let kid = thumbprint(&key.verifying_key());
        Self {
            kid,
            key,
            created_at,
        }
    }

    /// The key id: the RFC 7638 JWK thumbprint of the public key, so every replica derives the same id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When the key was created (seconds since the Unix epoch).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// The key in the form jwt-compact signs with.
    pub fn signing_key(&self) -> &ed25519_dalek::SigningKey {
        &self.key
    }

    /// The public half.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as a JWK (RFC 8037): no private member is ever included.
    pub fn public_jwk(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut jwk = serde_json::Map::new();
        jwk.insert("kty".into(), "OKP".into());
        jwk.insert("crv".into(), "Ed25519".into());
        jwk.insert(
            "x".into(),
            Base64UrlUnpadded::encode_string(self.verifying_key().as_bytes()).into(),
        );
        jwk.insert("kid".into(), self.kid.clone().into());
        jwk.insert("alg".into(), ALG.into());
        jwk.insert("use".into(), "sig".into());
        jwk
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over the canonical `{"crv","kty","x"}` JSON.
fn thumbprint(key: &ed25519_dalek::VerifyingKey) -> String {
    let x = Base64UrlUnpadded::encode_string(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    Base64UrlUnpadded::encode_string(&Sha256::digest(canonical.as_bytes()))
}

/// The stored form of a signing key (value of the `signing:keys` hash).
#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    alg: String,
    /// The 32-byte Ed25519 seed, base64url without padding.
    seed: String,
    created_at: u64,
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
    /// The seed is not 32 bytes of base64url.
    #[error("malformed key seed")]
    BadSeed,
    /// The record's kid differs from the hash field it is stored under.
    #[error("key record kid does not match its hash field")]
    KidMismatch,
}

/// Serialises a key for storage in Redis.
pub fn encode_record(key: &SigningKey) -> Result<String, serde_json::Error> {
    serde_json::to_string(&StoredKey {
        kid: key.kid.clone(),
        alg: ALG.to_owned(),
        seed: Base64UrlUnpadded::encode_string(key.key.as_bytes()),
        created_at: key.created_at,
    })
}

/// Parses a key stored under hash field `kid`.
pub fn decode_record(kid: &str, record: &str) -> Result<SigningKey, KeyRecordError> {
    let stored: StoredKey = serde_json::from_str(record)?;
    if stored.alg != ALG {
        return Err(KeyRecordError::UnsupportedAlg(stored.alg));
    }
    let seed: [u8; 32] = Base64UrlUnpadded::decode_vec(&stored.seed)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(KeyRecordError::BadSeed)?;
    let key = SigningKey::from_seed(&seed, stored.created_at);
    if stored.kid != kid || key.kid != kid {
        return Err(KeyRecordError::KidMismatch);
    }
    Ok(key)
}

/// Why a key-set operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The key could not be serialised.
    #[error("cannot encode key record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The key set as read from Redis in one atomic step.
#[derive(Debug)]
pub struct StoredKeySet {
    /// The bundle version the keys belong to (0 if never set).
    pub version: u64,
    /// The kid that signs new tokens, if any.
    pub active_kid: Option<String>,
    /// All usable keys, oldest first. Unusable records are logged and left out.
    pub keys: Vec<SigningKey>,
}

/// Reads the version, the active kid and every key in one `MULTI`, so the version matches the content.
pub async fn load<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
) -> Result<StoredKeySet, KeyStoreError> {
    let (version, active_kid, records): (Option<u64>, Option<String>, HashMap<String, String>) =
        redis::pipe()
            .atomic()
            .get(names.version())
            .get(names.signing_active())
            .hgetall(names.signing_keys())
            .query_async(conn)
            .await?;
    Ok(key_set(version.unwrap_or(0), active_kid, &records))
}

/// Builds the key set from what Redis holds: the version, the active kid and the `signing:keys` hash.
pub fn key_set(
    version: u64,
    active_kid: Option<String>,
    records: &HashMap<String, String>,
) -> StoredKeySet {
    let mut keys: Vec<SigningKey> = records
        .iter()
        .filter_map(|(kid, record)| match decode_record(kid, record) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::warn!(kid = %kid, %error, "ignoring unusable signing key record");
                None
            }
        })
        .collect();
    keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
    StoredKeySet {
        version,
        active_kid,
        keys,
    }
}

/// Stores a key, activating it if `ARGV[5]` is "1" and no key is active yet.
///
/// `KEYS[3]` = the key hash, `KEYS[4]` = the active kid; `ARGV[3]` = kid, `ARGV[4]` = record. Returns
/// `{active kid, version}`; the version is 0 when nothing was written because a key is already active.
const STORE_KEY: &str = r"
local active = redis.call('GET', KEYS[4])
if ARGV[5] == '1' and active then return {active, 0} end
local version = begin_change()
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
if ARGV[5] == '1' then
  redis.call('SET', KEYS[4], ARGV[3])
  active = ARGV[3]
end
log_change(version, 'kind', 'keys', 'kid', ARGV[3])
return {active or '', version}
";

static STORE_KEY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| changes::script(STORE_KEY));

/// Runs [`STORE_KEY`]; returns the active kid (empty if none) and the version of the change (0 if none).
async fn store_key<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    key: &SigningKey,
    activate_if_none: bool,
) -> Result<(String, u64), KeyStoreError> {
    let record = encode_record(key)?;
    let mut invocation = changes::invocation(&STORE_KEY_SCRIPT, names);
    invocation
        .key(names.signing_keys())
        .key(names.signing_active())
        .arg(key.kid())
        .arg(record)
        .arg(if activate_if_none { "1" } else { "0" });
    Ok(invocation.invoke_async(conn).await?)
}

/// Installs `candidate` as the active key unless one is already active; returns the active kid.
///
/// One Lua script stores the key material, activates it, bumps the version, logs a `keys` change and publishes
/// the version atomically (see [`crate::changes`]), so replicas starting together on an empty Redis all end up
/// with the first one's key, and no reader ever sees an active kid without its key or a version that does not
/// describe the content.
pub async fn ensure_active<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    candidate: &SigningKey,
) -> Result<String, KeyStoreError> {
    let (active, _) = store_key(conn, names, candidate, true).await?;
    Ok(active)
}

/// Adds a key to the published set without activating it (the first step of a rotation); returns the new version.
pub async fn add<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    key: &SigningKey,
) -> Result<u64, KeyStoreError> {
    let (_, version) = store_key(conn, names, key, false).await?;
    Ok(version)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_kid_is_thumbprint() {
        let key = SigningKey::from_seed(&[7; 32], 1_700_000_000);
        let record = encode_record(&key).unwrap();
        let back = decode_record(key.kid(), &record).unwrap();
        assert_eq!(back.kid(), key.kid());
        assert_eq!(back.verifying_key(), key.verifying_key());
        assert_eq!(back.created_at(), 1_700_000_000);
        assert_eq!(key.kid().len(), 43, "base64url of 32 bytes");
    }

    #[test]
    fn rfc8037_thumbprint_vector() {
        // RFC 8037 Appendix A.3: thumbprint of the A.2 public key.
        let x =
            Base64UrlUnpadded::decode_vec("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            thumbprint(&key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn bad_records_are_rejected() {
        let key = SigningKey::from_seed(&[1; 32], 0);
        let record = encode_record(&key).unwrap();
        assert!(matches!(
            decode_record("other", &record),
            Err(KeyRecordError::KidMismatch)
        ));
        assert!(matches!(
            decode_record(key.kid(), "{"),
            Err(KeyRecordError::Json(_))
        ));
        let rsa = record.replace("EdDSA", "RS256");
        assert!(matches!(
            decode_record(key.kid(), &rsa),
            Err(KeyRecordError::UnsupportedAlg(_))
        ));
        let short =
            serde_json::json!({"kid": key.kid(), "alg": "EdDSA", "seed": "AAAA", "created_at": 0});
        assert!(matches!(
            decode_record(key.kid(), &short.to_string()),
            Err(KeyRecordError::BadSeed)
        ));
    }

    #[test]
    fn public_jwk_has_no_private_member() {
        let jwk = SigningKey::from_seed(&[9; 32], 0).public_jwk();
        assert!(!jwk.contains_key("d"));
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
    }
}
