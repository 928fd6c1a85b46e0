//! The delivery protocol, filter side, against an in-memory shared data: several `SharedKeyMaterial`s over one
//! store are several workers of one host. `apply`: what a bundle does to shared data and what workers then see;
//! `fetch`: the fetching root (lease, requests, answers, freshness).

use super::apply::{merge_revoked, REVOKED_KEEP_SECS};
use super::*;
use crate::config::SidecarConfig;
use crate::delivery::wire::RevokedTokenDto;
use crate::error::{DeliveryError, KeyError};
use crate::policy::Directory;
use serde_json::{json, Value};
use std::cell::Cell;

const NOW_MS: u64 = 1_800_000_000_000;
const RECORD_KEY: &str = "keymesh.authn.v3/sidecar/v1/bundle/state";

type Worker = SharedKeyMaterial<InMemorySharedData>;

fn worker(shared: &InMemorySharedData) -> Worker {
    SharedKeyMaterial::new(shared.clone(), "sidecar", "/v1/bundle")
}

/// The wire hash of the test key named `label` (the tests name keys; buckets hold real SHA-256 hashes).
fn hash_of(label: &str) -> String {
    crate::apikey::hash_key(label)
}

fn api_key(label: &str) -> Value {
    json!({"hash": hash_of(label), "id": format!("ak_{label}"), "owner": "alice", "scopes": ["orders:read"]})
}

fn revoked(jti: &str, exp_secs: i64) -> Value {
    json!({"jti": jti, "exp": exp_secs})
}

fn now_secs() -> i64 {
    i64::try_from(NOW_MS / 1000).unwrap()
}

fn full(version: u64, keys: &[&str], revoked_tokens: &[Value]) -> Vec<u8> {
    let keys: Vec<Value> = keys.iter().map(|label| api_key(label)).collect();
    serde_json::to_vec(&json!({
        "version": version,
        "issuers": [],
        "api_keys": {"put": keys},
        "revoked_tokens": revoked_tokens,
    }))
    .unwrap()
}

fn delta(
    since: u64,
    version: u64,
    put: &[&str],
    delete: &[&str],
    revoked_tokens: &[Value],
) -> Vec<u8> {
    let put: Vec<Value> = put.iter().map(|label| api_key(label)).collect();
    let delete: Vec<String> = delete.iter().map(|label| hash_of(label)).collect();
    serde_json::to_vec(&json!({
        "version": version,
        "since": since,
        "issuers": [],
        "api_keys": {"put": put, "delete": delete},
        "revoked_tokens": revoked_tokens,
    }))
    .unwrap()
}

fn apply<S: SharedData>(worker: &SharedKeyMaterial<S>, body: &[u8], now_ms: u64) -> Applied {
    worker.apply(ReceivedBundle::parse(body).unwrap(), now_ms)
}

fn stored() -> Applied {
    Applied::Stored
}

fn has_key<S: SharedData>(worker: &SharedKeyMaterial<S>, label: &str) -> bool {
    worker.snapshot().api_key(&hash_of(label)).is_some()
}

fn sidecar() -> SidecarConfig {
    SidecarConfig {
        cluster: "sidecar".into(),
        authority: "keymesh-sidecar".into(),
        path: "/v1/bundle".into(),
        refresh_interval_ms: 1000,
        timeout_ms: 2000,
        long_poll_secs: 25,
        max_age_secs: 600,
        refetch_path: "/v1/issuers/refetch".into(),
        usage_path: "/v1/usage".into(),
        usage_report_ms: 10_000,
    }
}

/// Shared data where another writer touches the delivery record right before each of our next `conflicts`
/// compare-and-swap writes to it, so each of them fails.
struct ContendedRecord {
    inner: InMemorySharedData,
    conflicts: Cell<usize>,
}

impl SharedData for ContendedRecord {
    fn get(&self, key: &str) -> Option<SharedValue> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        if key == RECORD_KEY && cas.is_some() && self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            let current = self.inner.get(key).unwrap();
            self.inner.set(key, &current.bytes, None).unwrap();
        }
        self.inner.set(key, value, cas)
    }

    fn change_count(&self) -> Option<u64> {
        self.inner.change_count()
    }

    fn count_change(&self) {
        self.inner.count_change();
    }
}

mod apply;
mod buckets;
mod change_count;
mod fetch;
mod paging;
