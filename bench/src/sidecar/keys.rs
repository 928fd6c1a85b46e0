//! N API keys written into Redis the way the sidecar stores them, fast: one JSON record per key under
//! `{prefix}apikey:{id}` and the owner index `{prefix}apikeys:owner:{owner}`, as `keymesh apikey create` writes
//! them, but with pipelined `SET`/`SADD` instead of one Lua script per key.
//!
//! Keys are SHA-256-hashed ([`keymesh_core::apikey::hash_key`]), so nothing slow is computed per key. No change-log
//! entry is written and the version is not bumped: a sidecar started afterwards finds the records with its full
//! load (`SCAN`), which is what is measured.

use super::resp::Redis;
use crate::prepare::{SplitMix64, BENCH_AUDIENCE};
use anyhow::{bail, Result};
use keymesh_core::apikey::{format_key, hash_key, public_prefix, ID_PREFIX};
use serde::Serialize;

/// The sidecar's default `key_prefix`.
pub(crate) const KEY_PREFIX: &str = "keymesh:";
/// Keys per owner: a few keys per subject, as in a deployment where services hold one key per environment.
pub(crate) const KEYS_PER_OWNER: usize = 10;
/// The scope every bench key grants.
pub(crate) const BENCH_SCOPE: &str = "bench:read";
/// Keys written per round trip (two commands each).
const BATCH: usize = 5_000;

/// The stored record of one key: the fields of the sidecar's `ApiKeyRecord` (`keymesh::api_keys`), as its
/// `serde` derive writes them for an active key without tier or previous secret. A test decodes it with the
/// sidecar's own type.
#[derive(Debug, Serialize)]
pub(crate) struct StoredRecord {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) label: &'static str,
    pub(crate) hash: String,
    pub(crate) prefix: String,
    pub(crate) resources: [&'static str; 1],
    pub(crate) scopes: [&'static str; 1],
    pub(crate) created_at: u64,
    pub(crate) expires_at: Option<u64>,
}

impl StoredRecord {
    /// The record of the `index`-th key of the set.
    pub(crate) fn new(index: usize, key: &str, created_at: u64) -> Self {
        Self {
            id: format!("{ID_PREFIX}bench{index:010}"),
            owner: owner_of(index),
            label: "bench",
            hash: hash_key(key),
            prefix: public_prefix(key),
            resources: [BENCH_AUDIENCE],
            scopes: [BENCH_SCOPE],
            created_at,
            expires_at: None,
        }
    }
}

/// The owner of the `index`-th key.
pub(crate) fn owner_of(index: usize) -> String {
    format!("bench-owner-{}", index / KEYS_PER_OWNER)
}

/// The `count` keys of `seed`, in order: the same as [`crate::prepare::generate_keys`], without holding them all.
pub(crate) fn seeded_keys(count: usize, seed: u64) -> impl Iterator<Item = String> {
    let mut rng = SplitMix64::new(seed);
    (0..count).map(move |_| format_key(&rng.secret()))
}

/// Writes the records of `count` seeded keys under `prefix`, [`BATCH`] keys per round trip.
pub(crate) fn load(
    redis: &mut Redis,
    prefix: &str,
    count: usize,
    seed: u64,
    created_at: u64,
) -> Result<()> {
    let mut queued = 0;
    for (index, key) in seeded_keys(count, seed).enumerate() {
        let record = StoredRecord::new(index, &key, created_at);
        let json = serde_json::to_vec(&record)?;
        let record_key = format!("{prefix}apikey:{}", record.id);
        let owner_index = format!("{prefix}apikeys:owner:{}", record.owner);
        redis.queue(&[b"SET", record_key.as_bytes(), &json, b"NX"])?;
        redis.queue(&[b"SADD", owner_index.as_bytes(), record.id.as_bytes()])?;
        queued += 1;
        if queued == BATCH {
            check_written(&redis.replies(2 * queued)?)?;
            queued = 0;
        }
    }
    check_written(&redis.replies(2 * queued)?)
}

/// Every `SET … NX` wrote (a nil reply means the id was taken: the Redis was not empty).
fn check_written(replies: &[super::resp::Reply]) -> Result<()> {
    use super::resp::Reply;
    for reply in replies {
        match reply {
            Reply::Status(_) | Reply::Integer(1) => {}
            other => bail!("a key record was not written as new ({other:?}): is this Redis empty?"),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seeded_keys_are_the_prepared_keys() {
        let streamed: Vec<String> = seeded_keys(5, 7).collect();
        assert_eq!(streamed, crate::prepare::generate_keys(5, 7));
    }

    #[test]
    fn a_record_holds_the_hash_and_prefix_of_its_key_never_the_key() {
        let key = seeded_keys(1, 3).next().unwrap();
        let record = StoredRecord::new(12, &key, 1_700_000_000);
        assert_eq!(record.hash, hash_key(&key));
        assert_eq!(record.owner, "bench-owner-1");
        assert_eq!(record.id, "ak_bench0000000012");
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains(&key), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["resources"], serde_json::json!([BENCH_AUDIENCE]));
        assert_eq!(value["expires_at"], serde_json::Value::Null);
    }

    /// The loader's records, read by the sidecar's own code: its mirror serves each key's entry (by the hash of
    /// the key) in the snapshot and the full bundle, and its store lists them by owner.
    #[test]
    fn a_loaded_key_is_served_by_the_sidecar_as_an_api_key() {
        use keymesh::api_keys::ApiKeyStore;
        use keymesh::config::SigningConfig;
        use keymesh::store::names::KeyNames;
        use keymesh::support::kek::{Kek, KekSource};
        use keymesh::{AppState, Clock, Config};
        use keymesh_core::bundle::BundleDto;

        const PREFIX: &str = "bench-test:";
        let redis = keymesh_test_support::RedisServer::start();
        let count = KEYS_PER_OWNER + 2;
        let created_at = 1_700_000_000;
        let mut conn = Redis::connect(redis.port()).unwrap();
        load(&mut conn, PREFIX, count, 11, created_at).unwrap();
        let again = load(&mut conn, PREFIX, 1, 11, created_at).unwrap_err();
        assert!(again.to_string().contains("empty"), "{again}");

        let keys: Vec<String> = seeded_keys(count, 11).collect();
        let config = Config {
            redis_url: redis.url(),
            issuer: "https://issuer.bench.test".to_owned(),
            key_prefix: PREFIX.to_owned(),
            signing: SigningConfig {
                kek: Some(KekSource::Inline(
                    Kek::from_base64(super::super::BENCH_KEK).unwrap(),
                )),
                ..SigningConfig::default()
            },
            ..Config::default()
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let state = AppState::start(config, Clock::fixed(created_at + 60)).unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(20), state.ready())
                .await
                .unwrap();
            let snapshot = state.mirror().snapshot().unwrap();
            assert_eq!(snapshot.api_key_count(), count);
            for (index, key) in keys.iter().enumerate() {
                let entry = snapshot.api_key(&hash_key(key)).unwrap();
                assert_eq!(entry.id, format!("ak_bench{index:010}"));
                assert_eq!(entry.owner, owner_of(index));
                assert_eq!(entry.resources, [BENCH_AUDIENCE]);
                assert_eq!(entry.scopes, [BENCH_SCOPE]);
                assert_eq!(entry.expires_at, None);
            }
            let unknown = seeded_keys(1, 12).next().unwrap();
            assert!(snapshot.api_key(&hash_key(&unknown)).is_none());

            let full: BundleDto = serde_json::from_slice(&snapshot.full_bundle().unwrap()).unwrap();
            assert_eq!(full.api_keys.put.len(), count);
            assert!(full
                .api_keys
                .put
                .iter()
                .any(|e| e.hash == hash_key(&keys[0])));

            let mut conn = redis::Client::open(redis.url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let store = ApiKeyStore::new(KeyNames::new(PREFIX));
            let listed = store.list(&mut conn, &owner_of(0)).await.unwrap();
            assert_eq!(listed.len(), KEYS_PER_OWNER);
            assert_eq!(listed[0].label, "bench");
            assert_eq!(listed[0].prefix, public_prefix(&keys[0]));
            assert_eq!(listed[0].created_at, created_at);
        });
    }

    #[test]
    fn a_nil_or_error_reply_fails_the_load() {
        use super::super::resp::Reply;
        assert!(check_written(&[Reply::Status("OK".into()), Reply::Integer(1)]).is_ok());
        assert!(
            check_written(&[Reply::Bulk(None)]).is_err(),
            "SET NX on a taken id"
        );
        assert!(
            check_written(&[Reply::Integer(0)]).is_err(),
            "already in the owner index"
        );
    }
}
