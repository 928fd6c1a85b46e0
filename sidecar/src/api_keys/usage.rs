//! When API keys were last used. The filters count uses per key id and report them in batches (see
//! [`keymesh_core::usage`]); the sidecar keeps one time per key, to the minute, in the hash
//! `{prefix}apikeys:last_used` (id → seconds since the Unix epoch, a multiple of 60).
//!
//! Writes are cheap by construction: a report is one Lua call for all its keys, a key already recorded for the
//! current minute by this sidecar is left out of it ([`UsageMinutes`]), and only keys that still exist are
//! written, so a report naming made-up ids costs nothing lasting.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use redis::aio::ConnectionLike;

use super::{ApiKeyError, ApiKeyInfo, ApiKeyStore};
use crate::support::syntax;

/// Distinct keys [`UsageMinutes`] remembers before it starts afresh.
const MINUTES_CAPACITY: usize = 100_000;
/// Ids per `HMGET` when reading last-used times.
const READ_BATCH: usize = 500;

/// `KEYS[1]` = the last-used hash, `KEYS[2..]` = the records of the ids in `ARGV[2..]`; `ARGV[1]` = the minute.
/// Sets the minute for every id whose record exists and whose stored time is older; returns how many it set.
const RECORD: &str = r"
local set = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local seen = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
    if seen < tonumber(ARGV[1]) then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
      set = set + 1
    end
  end
end
return set
";

static RECORD_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RECORD));

/// The minute each key was last recorded in by this sidecar, so that a key reported by many workers and proxies
/// costs Redis one write per minute. Bounded: past [`MINUTES_CAPACITY`] keys it forgets everything (the cost is
/// one redundant write per key).
#[derive(Debug, Default)]
pub struct UsageMinutes {
    seen: Mutex<HashMap<String, u64>>,
}

impl UsageMinutes {
    /// Of `ids`, those not yet recorded in `minute`; marks them recorded.
    fn claim<'a>(&self, ids: impl IntoIterator<Item = &'a str>, minute: u64) -> Vec<&'a str> {
        let Ok(mut seen) = self.seen.lock() else {
            // A poisoned lock only loses the de-duplication: write them all.
            return ids.into_iter().collect();
        };
        if seen.len() >= MINUTES_CAPACITY {
            seen.clear();
        }
        ids.into_iter()
            .filter(|id| match seen.get_mut(*id) {
                Some(at) if *at >= minute => false,
                Some(at) => {
                    *at = minute;
                    true
                }
                None => {
                    seen.insert((*id).to_owned(), minute);
                    true
                }
            })
            .collect()
    }
}

/// `now` rounded down to the minute.
pub fn minute_of(now: u64) -> u64 {
    now - now % 60
}

impl ApiKeyStore {
    /// Records that the keys `ids` were used at `now` (to the minute). Ids that are not API key ids, or whose key
    /// does not exist, are ignored. Returns how many last-used times moved.
    pub async fn record_uses<'a, C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        minutes: &UsageMinutes,
        ids: impl IntoIterator<Item = &'a str>,
        now: u64,
    ) -> Result<u64, ApiKeyError> {
        let minute = minute_of(now);
        let fresh = minutes.claim(
            ids.into_iter().filter(|id| syntax::is_api_key_id(id)),
            minute,
        );
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut invocation = RECORD_SCRIPT.prepare_invoke();
        invocation.key(self.names.api_keys_last_used()).arg(minute);
        for id in &fresh {
            invocation.key(self.names.api_key(id)).arg(*id);
        }
        Ok(invocation.invoke_async(conn).await?)
    }

    /// When each of `ids` was last used, to the minute; ids never seen are absent.
    pub async fn last_used<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        ids: &[&str],
    ) -> Result<HashMap<String, u64>, ApiKeyError> {
        let mut found = HashMap::new();
        for batch in ids.chunks(READ_BATCH) {
            let values: Vec<Option<u64>> = redis::cmd("HMGET")
                .arg(self.names.api_keys_last_used())
                .arg(batch)
                .query_async(conn)
                .await?;
            found.extend(
                batch
                    .iter()
                    .zip(values)
                    .filter_map(|(id, at)| Some(((*id).to_owned(), at?))),
            );
        }
        Ok(found)
    }

    /// The owner's keys as listings show them at `now` (state, last use, a secret in grace), oldest first.
    pub async fn list_info<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        owner: &str,
        now: u64,
    ) -> Result<Vec<ApiKeyInfo>, ApiKeyError> {
        let records = self.list(conn, owner).await?;
        let ids: Vec<&str> = records.iter().map(|record| record.id.as_str()).collect();
        let mut last_used = if ids.is_empty() {
            HashMap::new()
        } else {
            self.last_used(conn, &ids).await?
        };
        Ok(records
            .into_iter()
            .map(|record| {
                let used = last_used.remove(&record.id);
                ApiKeyInfo::new(record, now, used)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_claimed_once_per_minute() {
        let minutes = UsageMinutes::default();
        assert_eq!(minutes.claim(["ak_a", "ak_b"], 600), ["ak_a", "ak_b"]);
        assert!(minutes.claim(["ak_a", "ak_b"], 600).is_empty());
        assert_eq!(minutes.claim(["ak_a", "ak_c"], 600), ["ak_c"]);
        assert_eq!(minutes.claim(["ak_a"], 660), ["ak_a"]);
        assert!(minutes.claim(["ak_a"], 600).is_empty(), "never goes back");
        assert_eq!(minute_of(659), 600);
    }
}
