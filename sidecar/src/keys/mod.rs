//! Signing keys: their material, the stored record, and the Redis operations on the key set.
//!
//! This is the only module that reads or writes private key material in Redis. Private halves are sealed under
//! the key-encryption key ([`crate::support::kek`]) before they are written ([`encode_record`]) and opened only to sign
//! ([`decode_record`]); the public halves are stored beside them in clear, so publishing, listing and reporting on
//! keys never needs the KEK. How keys come and go over time is [`crate::keys::lifecycle`].

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use redis::aio::ConnectionLike;

use crate::store::commit;
use crate::store::names::KeyNames;
use crate::support::kek::Kek;

pub mod lifecycle;
mod material;
mod record;

pub use material::{Alg, MaterialError, PublishedKey, SigningKey, VerifyingKey};
pub use record::{
    decode_public, decode_record, encode_record, is_plaintext, KeyRecordError, RecordInfo,
};

/// Why a key-set operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A key record could not be written or read.
    #[error(transparent)]
    Record(#[from] KeyRecordError),
    /// A key could not be generated.
    #[error(transparent)]
    Material(#[from] MaterialError),
    /// The key generation task failed.
    #[error("key generation task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The key set as read from Redis in one atomic step.
#[derive(Debug, Clone)]
pub struct StoredKeySet {
    /// The bundle version the keys belong to (0 if never set).
    pub version: u64,
    /// The kid that signs new tokens, if any.
    pub active_kid: Option<String>,
    /// The public half of every published key, oldest first. Unusable records are logged and left out.
    pub keys: Vec<PublishedKey>,
    /// The active key with its private half, if it could be unsealed (the reason it could not is logged).
    pub active: Option<SigningKey>,
}

/// Unseals active keys with the KEK, remembering the last record it opened (or failed to), so that the mirror,
/// which rebuilds the key set on every change, neither decrypts nor reports the same record again and again.
#[derive(Debug)]
pub struct Unsealer {
    kek: Kek,
    last: Mutex<Option<LastUnsealed>>,
}

#[derive(Debug)]
struct LastUnsealed {
    kid: String,
    record: String,
    key: Option<SigningKey>,
}

impl Unsealer {
    /// An unsealer with `kek`.
    pub fn new(kek: Kek) -> Self {
        Self {
            kek,
            last: Mutex::new(None),
        }
    }

    /// The KEK.
    pub fn kek(&self) -> &Kek {
        &self.kek
    }

    /// The key stored as `record` under `kid`, unsealed; `None` (logged once per record) if it cannot be.
    pub fn unseal(&self, kid: &str, record: &str) -> Option<SigningKey> {
        // A poisoned memo only costs a decryption.
        let mut last = self.last.lock().ok();
        if let Some(Some(seen)) = last.as_deref() {
            if seen.kid == kid && seen.record == record {
                return seen.key.clone();
            }
        }
        let key = match decode_record(kid, record, &self.kek) {
            Ok(key) => Some(key),
            Err(error) => {
                tracing::error!(kid = %kid, %error, "cannot use the active signing key: token requests will fail");
                None
            }
        };
        if let Some(last) = last.as_deref_mut() {
            *last = Some(LastUnsealed {
                kid: kid.to_owned(),
                record: record.to_owned(),
                key: key.clone(),
            });
        }
        key
    }
}

/// Builds the key set from what Redis holds: the version, the active kid and the `signing:keys` hash. Only the
/// active key is unsealed: the others are only published.
pub fn key_set(
    version: u64,
    active_kid: Option<String>,
    records: &HashMap<String, String>,
    unsealer: &Unsealer,
) -> StoredKeySet {
    let mut keys: Vec<PublishedKey> = records
        .iter()
        .filter_map(|(kid, record)| match decode_public(kid, record) {
            Ok(info) => Some(info.public),
            Err(error) => {
                tracing::warn!(kid = %kid, %error, "ignoring unusable signing key record");
                None
            }
        })
        .collect();
    keys.sort_by(|a, b| (a.created_at(), a.kid()).cmp(&(b.created_at(), b.kid())));
    let active = active_kid
        .as_deref()
        .and_then(|kid| records.get(kid).map(|record| (kid, record)))
        .and_then(|(kid, record)| unsealer.unseal(kid, record));
    StoredKeySet {
        version,
        active_kid,
        keys,
        active,
    }
}

/// Stores a key and activates it, unless a key is already active.
///
/// `KEYS[3]` = the key hash, `KEYS[4]` = the active kid, `KEYS[5]` = the lifecycle states; `ARGV[3]` = kid,
/// `ARGV[4]` = record, `ARGV[5]` = now. Returns `{active kid, version}`; the version is 0 when nothing was written.
const ACTIVATE_FIRST_KEY: &str = r"
local active = redis.call('GET', KEYS[4])
if active then return {active, 0} end
local version = begin_change()
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('SET', KEYS[4], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[3], 'active ' .. ARGV[5])
log_change(version, 'kind', 'keys', 'kid', ARGV[3])
return {ARGV[3], version}
";

/// Stores a key without activating it. `KEYS[3]` = the key hash; `ARGV[3]` = kid, `ARGV[4]` = record.
const ADD_KEY: &str = r"
local version = begin_change()
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
log_change(version, 'kind', 'keys', 'kid', ARGV[3])
return version
";

/// Replaces a record holding its private key in clear by its sealed form, if it is still the same record. Not a
/// bundle change: the published key is the same. `KEYS[1]` = the key hash; `ARGV` = kid, old record, new record.
const SEAL_IN_PLACE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

static ACTIVATE_FIRST_KEY_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| commit::script(ACTIVATE_FIRST_KEY));
static ADD_KEY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| commit::script(ADD_KEY));
static SEAL_IN_PLACE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(SEAL_IN_PLACE));

/// What [`ensure_active`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The active kid.
    pub active_kid: String,
    /// Whether this call generated and activated it.
    pub generated: bool,
    /// How many records holding a private key in clear were sealed.
    pub sealed: usize,
}

/// Makes the key set usable: seals any record still holding its private key in clear, and generates and activates
/// a key of `alg` if none is active.
///
/// Activation is one Lua script that stores the key material, activates it, bumps the version, logs a `keys`
/// change and publishes the version atomically (see [`crate::store::commit`]), so replicas starting together on an empty
/// Redis all end up with the first one's key, and no reader ever sees an active kid without its key.
pub async fn ensure_active<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    kek: &Kek,
    alg: Alg,
    now: u64,
) -> Result<Ensured, KeyStoreError> {
    let sealed = seal_plaintext_records(conn, names, kek).await?;
    let active: Option<String> = redis::cmd("GET")
        .arg(names.signing_active())
        .query_async(conn)
        .await?;
    if let Some(active_kid) = active {
        return Ok(Ensured {
            active_kid,
            generated: false,
            sealed,
        });
    }
    let candidate = generate(alg, now).await?;
    let record = encode_record(&candidate, kek)?;
    let mut invocation = commit::invocation(&ACTIVATE_FIRST_KEY_SCRIPT, names);
    invocation
        .key(names.signing_keys())
        .key(names.signing_active())
        .key(names.signing_states())
        .arg(candidate.kid())
        .arg(record)
        .arg(now);
    let (active_kid, _version): (String, u64) = invocation.invoke_async(conn).await?;
    Ok(Ensured {
        generated: active_kid == candidate.kid(),
        active_kid,
        sealed,
    })
}

/// Generates a key of `alg` on a blocking thread (RSA generation takes a while).
pub async fn generate(alg: Alg, now: u64) -> Result<SigningKey, KeyStoreError> {
    Ok(tokio::task::spawn_blocking(move || SigningKey::generate_with(alg, now)).await??)
}

/// Adds a key to the published set without activating it or giving it a lifecycle state (the lifecycle then
/// treats it as retiring); returns the new version. Rotations use [`crate::keys::lifecycle::rotate`].
pub async fn add<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    kek: &Kek,
    key: &SigningKey,
) -> Result<u64, KeyStoreError> {
    let record = encode_record(key, kek)?;
    let mut invocation = commit::invocation(&ADD_KEY_SCRIPT, names);
    invocation
        .key(names.signing_keys())
        .arg(key.kid())
        .arg(record);
    Ok(invocation.invoke_async(conn).await?)
}

/// Seals every record that still holds its private key in clear (written before encryption at rest); returns how
/// many it sealed.
pub async fn seal_plaintext_records<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    kek: &Kek,
) -> Result<usize, KeyStoreError> {
    let records: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(names.signing_keys())
        .query_async(conn)
        .await?;
    let mut sealed = 0;
    for (kid, record) in records.iter().filter(|(_, record)| is_plaintext(record)) {
        let key = decode_record(kid, record, kek)?;
        let replacement = encode_record(&key, kek)?;
        let replaced: u32 = SEAL_IN_PLACE_SCRIPT
            .key(names.signing_keys())
            .arg(kid)
            .arg(record)
            .arg(replacement)
            .invoke_async(conn)
            .await?;
        if replaced == 1 {
            tracing::info!(kid = %kid, "sealed a signing key that was stored in clear");
            sealed += 1;
        }
    }
    Ok(sealed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_set_publishes_every_key_and_unseals_only_the_active_one() {
        let kek = Kek::generate();
        let old = SigningKey::from_seed(&[1; 32], 1);
        let active = SigningKey::from_seed(&[2; 32], 2);
        let records: HashMap<String, String> = [&old, &active]
            .into_iter()
            .map(|key| (key.kid().to_owned(), encode_record(key, &kek).unwrap()))
            .chain([("broken".to_owned(), "{".to_owned())])
            .collect();
        let set = key_set(
            7,
            Some(active.kid().to_owned()),
            &records,
            &Unsealer::new(kek),
        );
        let kids: Vec<&str> = set.keys.iter().map(PublishedKey::kid).collect();
        assert_eq!(
            kids,
            [old.kid(), active.kid()],
            "oldest first, the broken record left out"
        );
        assert_eq!(set.active.as_ref().map(SigningKey::kid), Some(active.kid()));

        // Under another KEK the keys are still published, but nothing can sign.
        let other = key_set(
            7,
            Some(active.kid().to_owned()),
            &records,
            &Unsealer::new(Kek::generate()),
        );
        assert_eq!(other.keys.len(), 2);
        assert!(other.active.is_none());
    }
}
