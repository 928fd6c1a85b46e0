//! The key lifecycle beyond create and revoke: disabling and enabling a key without deleting it, and giving it a
//! new secret while the old one keeps working for a grace period.
//!
//! Each is a compare-and-swap of the record plus one `apikey_update` change (see [`crate::store::commit`]) that
//! deletes and puts bundle entries: a disabled key has none, so every proxy refuses it as soon as the change
//! reaches it; enabling puts its entries back. During a grace period the old secret is a second entry with the
//! same id and rights whose `expires_at` is the end of the grace period, so every proxy refuses it from then on
//! without any further write. Disabling, revoking or regenerating again ends a grace period at once.

use std::sync::LazyLock;

use keymesh_core::apikey;
use keymesh_core::bundle::ApiKeyDto;
use redis::aio::ConnectionLike;

use super::{
    encode, generate_key, ApiKeyError, ApiKeyRecord, ApiKeyStore, IssuedApiKey, PreviousSecret,
    CAS_ATTEMPTS,
};
use crate::store::commit;

/// The longest grace period: 7 days.
pub const MAX_GRACE_SECS: u64 = 7 * 86_400;

/// How long a replaced secret keeps working after [`ApiKeyStore::regenerate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grace {
    secs: u64,
}

impl Grace {
    /// No grace: the old secret stops working the moment the new one starts.
    pub const NONE: Self = Self { secs: 0 };

    /// A grace period of `secs` seconds (0 for none); at most [`MAX_GRACE_SECS`].
    pub fn from_secs(secs: u64) -> Result<Self, ApiKeyError> {
        if secs > MAX_GRACE_SECS {
            return Err(ApiKeyError::InvalidGrace);
        }
        Ok(Self { secs })
    }

    /// Its length in seconds.
    pub fn secs(self) -> u64 {
        self.secs
    }
}

/// `KEYS[3]` = record; `ARGV[3]` = the record as read, `ARGV[4]` = the new record, `ARGV[5]` = the JSON array of
/// hashes to delete, `ARGV[6]` = the JSON array of entries to put. Returns the version, or 0 if the record is no
/// longer the one read.
const UPDATE: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return 0 end
local version = begin_change()
redis.call('SET', KEYS[3], ARGV[4])
log_change(version, 'kind', 'apikey_update', 'delete', ARGV[5], 'put', ARGV[6])
return version
";

static UPDATE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| commit::script(UPDATE));

/// What an update does to a record and to the filters' entries.
struct Update {
    record: ApiKeyRecord,
    delete: Vec<String>,
    put: Vec<ApiKeyDto>,
}

impl ApiKeyStore {
    /// Disables a key: it stays stored and listed, and every proxy refuses it (and any old secret still in
    /// grace, whose grace ends here) until [`ApiKeyStore::enable`]. Returns the record, or `None` if there is no
    /// key with this id. Disabling a disabled key changes nothing.
    pub async fn disable<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        self.update(conn, id, |old| {
            if old.disabled {
                return Ok(None);
            }
            Ok(Some(Update {
                delete: old.hashes(),
                put: vec![],
                record: ApiKeyRecord {
                    disabled: true,
                    previous: None,
                    ..old.clone()
                },
            }))
        })
        .await
    }

    /// Enables a disabled key: every proxy accepts it again (unless it has expired meanwhile). Returns the
    /// record, or `None` if there is no key with this id. Enabling an enabled key changes nothing.
    pub async fn enable<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
        now: u64,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        self.update(conn, id, |old| {
            if !old.disabled {
                return Ok(None);
            }
            let record = ApiKeyRecord {
                disabled: false,
                ..old.clone()
            };
            Ok(Some(Update {
                delete: vec![],
                put: record.bundle_entries(now),
                record,
            }))
        })
        .await
    }

    /// Gives a key a new secret, keeping its id, owner, label, rights, tier, state and expiry. With a grace
    /// period the old secret keeps working until `now + grace` (or the key's own expiry, if sooner); without
    /// one it stops at the moment the new one starts. A secret still in grace from an earlier regeneration stops
    /// now. Returns the new key, or `None` if there is no key with this id.
    pub async fn regenerate<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
        grace: Grace,
        now: u64,
    ) -> Result<Option<IssuedApiKey>, ApiKeyError> {
        let key = generate_key();
        let record = self
            .update(conn, id, |old| {
                let until = now
                    .saturating_add(grace.secs())
                    .min(old.expires_at.unwrap_or(u64::MAX));
                let previous = (grace.secs() > 0 && until > now).then(|| PreviousSecret {
                    hash: old.hash.clone(),
                    prefix: old.prefix.clone(),
                    until,
                });
                let record = ApiKeyRecord {
                    hash: apikey::hash_key(&key),
                    prefix: apikey::public_prefix(&key),
                    previous,
                    ..old.clone()
                };
                // Every entry the key had goes, and what it has now is put (the old secret again, re-dated).
                Ok(Some(Update {
                    delete: old.hashes(),
                    put: record.bundle_entries(now),
                    record,
                }))
            })
            .await?;
        Ok(record.map(|record| IssuedApiKey::new(key, record)))
    }

    /// Compare-and-swap of one record: `change` decides from the record as read what to write (`None`: nothing
    /// to do). Returns the record as it is afterwards, or `None` if there is no key with this id.
    async fn update<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: &str,
        change: impl Fn(&ApiKeyRecord) -> Result<Option<Update>, ApiKeyError>,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((raw, old)) = self.get_raw(conn, id).await? else {
                return Ok(None);
            };
            let Some(update) = change(&old)? else {
                return Ok(Some(old));
            };
            let mut invocation = commit::invocation(&UPDATE_SCRIPT, &self.names);
            invocation
                .key(self.names.api_key(id))
                .arg(raw)
                .arg(encode(&update.record)?)
                .arg(encode(&update.delete)?)
                .arg(encode(&update.put)?);
            let version: u64 = invocation.invoke_async(conn).await?;
            if version != 0 {
                return Ok(Some(update.record));
            }
        }
        Err(ApiKeyError::Conflict(id.to_owned()))
    }
}
