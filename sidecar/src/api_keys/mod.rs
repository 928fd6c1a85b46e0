//! API keys: the stored record, the rules for creating one, and the Redis operations on API keys.
//!
//! A key is 32 random bytes formatted by [`keymesh_core::apikey::format_key`]. It is returned once, when it is
//! created or regenerated; Redis keeps only its hash ([`keymesh_core::apikey::hash_key`]) and its public prefix.
//! Records live under `{prefix}apikey:{id}`, and `{prefix}apikeys:owner:{owner}` indexes them by owner.
//!
//! Every write is one Lua script that also bumps the version, logs the change and publishes it (see
//! [`crate::store::commit`]), so the mirrors and the filters see it atomically. Revocation, disabling, enabling
//! and regeneration are compare-and-swap on the whole record: a concurrent change makes the script do nothing,
//! and the operation re-reads and tries again.
//!
//! The lifecycle ([`ApiKeyStore::disable`], [`ApiKeyStore::enable`], [`ApiKeyStore::regenerate`] with a grace
//! period) is in `lifecycle`; when keys were last used ([`ApiKeyStore::record_uses`], [`ApiKeyStore::last_used`],
//! [`ApiKeyStore::list_info`]) in `usage`.

use std::sync::LazyLock;

use base64ct::{Base64UrlUnpadded, Encoding};
use keymesh_core::apikey::{self, ID_PREFIX};
use rand::RngCore;
use redis::aio::ConnectionLike;
use serde::Serialize;

use crate::store::commit;
use crate::store::names::KeyNames;
use crate::support::dedup;
use crate::support::syntax;

mod lifecycle;
pub mod owned;
pub mod policy;
mod records;
mod usage;

pub use lifecycle::{Grace, MAX_GRACE_SECS};
pub use owned::{UserKeyError, UserKeyRequest, UserKeys};
pub use policy::{KeyPolicy, PolicyDenied, PolicySource, PolicyStore};
pub use records::{
    ApiKeyInfo, ApiKeyRecord, ApiKeyState, IssuedApiKey, NewApiKey, PreviousSecret,
    PreviousSecretInfo,
};
pub use usage::{minute_of, UsageMinutes};

/// Longest lifetime a key may be given: ten years.
pub const MAX_EXPIRES_IN_SECS: u64 = 3_650 * 86_400;
/// How often a compare-and-swap write re-reads a record that changed under it before giving up.
const CAS_ATTEMPTS: usize = 5;
/// Records fetched per `MGET`.
const MGET_BATCH: usize = 500;

/// Why an API key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The owner is empty, too long or contains characters outside visible ASCII.
    #[error("invalid owner {0:?}: use 1 to {max} visible ASCII characters", max = syntax::MAX_CLIENT_ID_LEN)]
    InvalidOwner(String),
    /// The label is empty, too long or contains control or invisible formatting characters.
    #[error("invalid label: use 1 to {max} printable characters", max = syntax::MAX_LABEL_CHARS)]
    InvalidLabel,
    /// No resource was given: the key would be valid for no API.
    #[error("at least one resource is required")]
    NoResources,
    /// A resource is not an absolute URI without fragment.
    #[error("invalid resource {0:?}: must be an absolute URI without fragment")]
    InvalidResource(String),
    /// A scope is not a valid RFC 6749 scope token.
    #[error("invalid scope {0:?}: scope tokens are printable ASCII without space, '\"' or '\\'")]
    InvalidScope(String),
    /// The lifetime is zero or longer than [`MAX_EXPIRES_IN_SECS`].
    #[error("invalid expiry: must be between 1 second and {MAX_EXPIRES_IN_SECS} seconds")]
    InvalidExpiry,
    /// The grace period is longer than [`MAX_GRACE_SECS`].
    #[error("invalid grace period: at most {MAX_GRACE_SECS} seconds (7 days)")]
    InvalidGrace,
    /// The tier is not a tier name ([`keymesh_core::tier::is_tier`]).
    #[error("invalid tier {0:?}: use 1 to {max} ASCII letters, digits, '-', '_' or '.'", max = keymesh_core::tier::MAX_TIER_LEN)]
    InvalidTier(String),
    /// Generated ids kept colliding with existing ones (a broken random source?).
    #[error("cannot allocate an unused api key id")]
    IdCollision,
    /// The owner already holds the most keys allowed (checked atomically with the write).
    #[error("owner already holds {0} api keys, the most allowed")]
    LimitReached(u32),
    /// The record kept changing while a revocation or regeneration tried to apply.
    #[error("api key {0:?} is being changed concurrently; try again")]
    Conflict(String),
    /// The stored record is not valid JSON of the expected shape.
    #[error("stored record of api key {id:?} is corrupt: {source}")]
    Corrupt {
        /// The key's id.
        id: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// A record could not be serialised.
    #[error("cannot encode api key record: {0}")]
    Encode(serde_json::Error),
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl ApiKeyError {
    /// Whether the error is about the request (the caller can fix it), as opposed to the server.
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            Self::InvalidOwner(_)
                | Self::InvalidLabel
                | Self::NoResources
                | Self::InvalidResource(_)
                | Self::InvalidScope(_)
                | Self::InvalidExpiry
                | Self::InvalidTier(_)
                | Self::InvalidGrace
        )
    }
}

/// `KEYS[3]` = record, `KEYS[4]` = owner index; `ARGV[3]` = record JSON, `ARGV[4]` = id, `ARGV[5]` = entry JSON,
/// `ARGV[6]` = the most keys the owner may hold, or empty. Returns the version, 0 if the id is taken, or -1 if the
/// owner holds the most keys allowed.
const CREATE: &str = r"
if ARGV[6] ~= '' and redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[6]) then return -1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local version = begin_change()
redis.call('SET', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4])
log_change(version, 'kind', 'apikey_put', 'data', ARGV[5])
return version
";

/// `KEYS[3]` = record, `KEYS[4]` = owner index, `KEYS[5]` = last-used hash; `ARGV[3]` = the record as read,
/// `ARGV[4]` = id, `ARGV[5]` = the JSON array of every hash the key has (its secret and one in grace).
/// Returns the version, or 0 if the record is no longer the one read.
const REVOKE: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return 0 end
local version = begin_change()
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[4], ARGV[4])
redis.call('HDEL', KEYS[5], ARGV[4])
log_change(version, 'kind', 'apikey_update', 'delete', ARGV[5], 'put', '[]')
return version
";

static CREATE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| commit::script(CREATE));
static REVOKE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| commit::script(REVOKE));

/// API key records in Redis under one key prefix.
#[derive(Debug, Clone)]
pub struct ApiKeyStore {
    names: KeyNames,
}

impl ApiKeyStore {
    /// A store using `names` for its keys.
    pub fn new(names: KeyNames) -> Self {
        Self { names }
    }

    /// Validates the request, generates a key and stores its record; returns it with the key.
    pub async fn create<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        new: NewApiKey,
        now: u64,
    ) -> Result<IssuedApiKey, ApiKeyError> {
        self.create_capped(conn, new, now, None).await
    }

    /// [`ApiKeyStore::create`], refused with [`ApiKeyError::LimitReached`] if the owner already holds `max_keys`
    /// keys: the count is checked in the same script as the write, so concurrent requests cannot exceed it.
    pub async fn create_capped<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        new: NewApiKey,
        now: u64,
        max_keys: Option<u32>,
    ) -> Result<IssuedApiKey, ApiKeyError> {
        if !syntax::is_client_id(&new.owner) {
            return Err(ApiKeyError::InvalidOwner(new.owner));
        }
        if !syntax::is_label(&new.label) {
            return Err(ApiKeyError::InvalidLabel);
        }
        let resources = dedup(new.resources);
        if resources.is_empty() {
            return Err(ApiKeyError::NoResources);
        }
        if let Some(bad) = resources
            .iter()
            .find(|r| !syntax::is_absolute_uri_without_fragment(r))
        {
            return Err(ApiKeyError::InvalidResource(bad.clone()));
        }
        let scopes = dedup(new.scopes);
        if let Some(bad) = scopes.iter().find(|s| !syntax::is_scope_token(s)) {
            return Err(ApiKeyError::InvalidScope(bad.clone()));
        }
        if let Some(bad) = new
            .tier
            .as_ref()
            .filter(|tier| !keymesh_core::tier::is_tier(tier))
        {
            return Err(ApiKeyError::InvalidTier(bad.clone()));
        }
        let expires_at = match new.expires_in_secs {
            None => None,
            Some(secs) if (1..=MAX_EXPIRES_IN_SECS).contains(&secs) => {
                Some(now.saturating_add(secs))
            }
            Some(_) => return Err(ApiKeyError::InvalidExpiry),
        };
        for _ in 0..CAS_ATTEMPTS {
            let key = generate_key();
            let record = ApiKeyRecord {
                id: generate_id(),
                owner: new.owner.clone(),
                label: new.label.clone(),
                hash: apikey::hash_key(&key),
                prefix: apikey::public_prefix(&key),
                resources: resources.clone(),
                scopes: scopes.clone(),
                created_at: now,
                expires_at,
                tier: new.tier.clone(),
                disabled: false,
                previous: None,
            };
            let mut invocation = commit::invocation(&CREATE_SCRIPT, &self.names);
            invocation
                .key(self.names.api_key(&record.id))
                .key(self.names.api_keys_of_owner(&record.owner))
                .arg(encode(&record)?)
                .arg(&record.id)
                .arg(encode(&record.to_dto())?)
                .arg(max_keys.map(|max| max.to_string()).unwrap_or_default());
            let version: i64 = invocation.invoke_async(conn).await?;
            match (version, max_keys) {
                (0, _) => {}
                (..0, Some(max)) => return Err(ApiKeyError::LimitReached(max)),
                _ => return Ok(IssuedApiKey::new(key, record)),
            }
        }
        Err(ApiKeyError::IdCollision)
    }

    /// The key with this id, if it exists.
    pub async fn get<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        Ok(self.get_raw(conn, id).await?.map(|(_, record)| record))
    }

    /// The owner's keys, oldest first. Corrupt records are logged and left out.
    pub async fn list<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        owner: &str,
    ) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
        if !syntax::is_client_id(owner) {
            return Err(ApiKeyError::InvalidOwner(owner.to_owned()));
        }
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.names.api_keys_of_owner(owner))
            .query_async(conn)
            .await?;
        let keys: Vec<String> = ids.iter().map(|id| self.names.api_key(id)).collect();
        let mut records = self.fetch(conn, &keys).await?;
        // The index and the records change together, so this only guards against a hand-edited Redis.
        records.retain(|record| record.owner == owner);
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(records)
    }

    /// Hands every stored key to `each`, in no particular order (a full `SCAN`: for the mirror's full reload, not
    /// the request path). Records are read one `SCAN` batch at a time, so the caller can keep what it needs of each
    /// without every record being held at once: with a million keys, the records alone take hundreds of MiB.
    /// Corrupt records are logged and left out.
    pub async fn scan_each<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        mut each: impl FnMut(ApiKeyRecord) + Send,
    ) -> Result<(), ApiKeyError> {
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.names.api_key_pattern())
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            for record in self.fetch(conn, &batch).await? {
                each(record);
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Revokes a key: the record is deleted and the key stops working everywhere, with its old secret if one is
    /// in a grace period. Returns whether it existed.
    pub async fn revoke<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
    ) -> Result<bool, ApiKeyError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((raw, record)) = self.get_raw(conn, id).await? else {
                return Ok(false);
            };
            let mut invocation = commit::invocation(&REVOKE_SCRIPT, &self.names);
            invocation
                .key(self.names.api_key(id))
                .key(self.names.api_keys_of_owner(&record.owner))
                .key(self.names.api_keys_last_used())
                .arg(raw)
                .arg(id)
                .arg(encode(&record.hashes())?);
            let version: u64 = invocation.invoke_async(conn).await?;
            if version != 0 {
                return Ok(true);
            }
        }
        Err(ApiKeyError::Conflict(id.to_owned()))
    }

    /// The record as stored (for compare-and-swap) and decoded. Ids that cannot be generated are never looked up.
    async fn get_raw<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
    ) -> Result<Option<(String, ApiKeyRecord)>, ApiKeyError> {
        if !syntax::is_api_key_id(id) {
            return Ok(None);
        }
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.names.api_key(id))
            .query_async(conn)
            .await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let record = decode(id, &raw)?;
        Ok(Some((raw, record)))
    }

    /// The records under `keys`, skipping missing and corrupt ones.
    async fn fetch<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        keys: &[String],
    ) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
        let mut records = Vec::with_capacity(keys.len());
        for batch in keys.chunks(MGET_BATCH) {
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(batch).query_async(conn).await?;
            for (key, value) in batch.iter().zip(values) {
                let (Some(id), Some(value)) = (self.names.api_key_id_of(key), value) else {
                    continue;
                };
                match decode(id, &value) {
                    Ok(record) if record.id == id => records.push(record),
                    Ok(_) => tracing::warn!(%id, "skipping api key record stored under another id"),
                    Err(error) => tracing::warn!(%id, %error, "skipping corrupt api key record"),
                }
            }
        }
        Ok(records)
    }
}

/// A new API key: 32 bytes from the operating system's random source.
fn generate_key() -> String {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    apikey::format_key(&secret)
}

/// A new public id: `ak_` and 96 random bits.
fn generate_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{ID_PREFIX}{}", Base64UrlUnpadded::encode_string(&bytes))
}

fn encode(value: &impl Serialize) -> Result<String, ApiKeyError> {
    serde_json::to_string(value).map_err(ApiKeyError::Encode)
}

fn decode(id: &str, json: &str) -> Result<ApiKeyRecord, ApiKeyError> {
    serde_json::from_str(json).map_err(|source| ApiKeyError::Corrupt {
        id: id.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_and_ids_have_their_formats() {
        let key = generate_key();
        assert!(apikey::is_well_formed(&key), "{key}");
        assert_ne!(key, generate_key());
        let id = generate_id();
        assert!(syntax::is_api_key_id(&id), "{id}");
        assert_eq!(id.len(), 3 + 16);
    }
}
