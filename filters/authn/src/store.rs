//! Key material in Envoy shared data, and each worker's parsed copy of the signing keys.
//!
//! Shared data is per `vm_id` and shared by all worker VMs, so everything is stored once per Envoy:
//! - the issuers part of the bundle (small) under `…/bundle`, with its version under `…/version`; a worker
//!   re-reads and parses it only when the version moves;
//! - every API key as its own entry `…/ak/<hash>`, so a lookup is one small read whatever the number of keys, and
//!   a revocation rewrites one entry instead of the whole set;
//! - every revoked access token as `…/jti/<jti>` (holding its `exp`), checked after a token verifies.
//!
//! ABI 0.2.1 cannot list or remove shared-data keys, so an entry carries the generation (bundle version) that
//! wrote it, and a full resync at version F raises a floor to F: entries older than the floor — keys deleted while
//! this Envoy was out of the sidecar's change-log window — are dead. A revoked key is overwritten with an empty
//! value.

use crate::host;
use keymesh_core::bundle::{ApiKeyChangesDto, ApiKeyDto, BundleDto};
use keymesh_core::{Directory, KeySet};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;

/// Shared-data keys of one sidecar endpoint (two filters pointing at the same sidecar share everything).
#[derive(Debug)]
pub(crate) struct BundleStore {
    bundle_key: String,
    version_key: String,
    lease_key: String,
    /// When this Envoy last asked the sidecar to refetch external keys (ms since the epoch).
    refetch_key: String,
    fresh_key: String,
    floor_key: String,
    sequence_key: String,
    entry_prefix: String,
    revoked_prefix: String,
    cached: RefCell<Option<Rc<KeySet>>>,
}

/// An API key entry as stored: the wire entry plus the generation that wrote it.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    g: u64,
    #[serde(flatten)]
    key: ApiKeyDto,
}

/// What became of a fetched bundle.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Now in shared data.
    Stored,
    /// Shared data already holds this version or a newer one.
    Stale,
    /// A delta for a version other than the one held: ask for a full bundle next time.
    Mismatch,
    /// Shared data refused a write.
    Failed,
}

impl BundleStore {
    pub(crate) fn new(cluster: &str, path: &str) -> Self {
        let base = format!("keymesh.authn.v1/{cluster}{path}");
        Self {
            bundle_key: format!("{base}/bundle"),
            version_key: format!("{base}/version"),
            lease_key: format!("{base}/lease"),
            refetch_key: format!("{base}/refetch_at"),
            fresh_key: format!("{base}/fresh_at"),
            floor_key: format!("{base}/ak_floor"),
            sequence_key: format!("{base}/roots"),
            entry_prefix: format!("{base}/ak/"),
            revoked_prefix: format!("{base}/jti/"),
            cached: RefCell::new(None),
        }
    }

    /// The version in shared data, if any bundle has been stored.
    pub(crate) fn shared_version(&self) -> Option<u64> {
        parse_u64(host::shared_get(&self.version_key).0)
    }

    /// This worker's signing keys, refreshed from shared data when a newer version is there.
    pub(crate) fn current(&self) -> Option<Rc<KeySet>> {
        let shared = self.shared_version();
        let cached = self.cached.borrow().clone();
        match (cached, shared) {
            (Some(keys), Some(v)) if keys.version() >= v => Some(keys),
            (cached, Some(_)) => self.reload().or(cached),
            (cached, None) => cached,
        }
    }

    fn reload(&self) -> Option<Rc<KeySet>> {
        let bytes = host::shared_get(&self.bundle_key).0?;
        match KeySet::parse_bundle(&bytes) {
            Ok((keys, _)) => {
                let keys = Rc::new(keys);
                *self.cached.borrow_mut() = Some(keys.clone());
                Some(keys)
            }
            Err(e) => {
                // Only validated bundles are stored, so this means shared data was changed by something else.
                log::error!("bundle in shared data does not parse: {e}");
                None
            }
        }
    }
}

impl Directory for BundleStore {
    /// The live API key entry with this hash, if any.
    fn api_key(&self, hash: &str) -> Option<ApiKeyDto> {
        let bytes = host::shared_get(&format!("{}{hash}", self.entry_prefix)).0?;
        if bytes.is_empty() {
            return None;
        }
        let stored: StoredKey = serde_json::from_slice(&bytes).ok()?;
        let floor = parse_u64(host::shared_get(&self.floor_key).0).unwrap_or(0);
        (stored.g >= floor && stored.key.hash == hash).then_some(stored.key)
    }

    fn is_revoked(&self, jti: &str) -> bool {
        host::shared_get(&format!("{}{jti}", self.revoked_prefix))
            .0
            .is_some_and(|v| !v.is_empty())
    }
}

impl BundleStore {
    /// Stores a validated bundle (full or delta) for every worker.
    pub(crate) fn apply(&self, dto: BundleDto, keys: KeySet) -> Applied {
        let (current, cas) = host::shared_get(&self.version_key);
        let current = parse_u64(current);
        let version = dto.version;
        if current.is_some_and(|v| v >= version) {
            return Applied::Stale;
        }
        if dto.since.is_some() && dto.since != current {
            return Applied::Mismatch;
        }
        let ApiKeyChangesDto { put, delete } = &dto.api_keys;
        for hash in delete {
            if !self.write(&format!("{}{hash}", self.entry_prefix), b"") {
                return Applied::Failed;
            }
        }
        for key in put {
            let stored = StoredKey {
                g: version,
                key: key.clone(),
            };
            let Ok(bytes) = serde_json::to_vec(&stored) else {
                return Applied::Failed;
            };
            if !self.write(&format!("{}{}", self.entry_prefix, key.hash), &bytes) {
                return Applied::Failed;
            }
        }
        // Revocations only ever accumulate (a revoked token never becomes valid again), so a full bundle needs no
        // floor for them; entries outlive their token's `exp` harmlessly.
        for revoked in &dto.revoked_tokens {
            if !self.write(
                &format!("{}{}", self.revoked_prefix, revoked.jti),
                revoked.exp.to_string().as_bytes(),
            ) {
                return Applied::Failed;
            }
        }
        if dto.since.is_none() && !self.write(&self.floor_key, version.to_string().as_bytes()) {
            return Applied::Failed;
        }
        let issuers = BundleDto {
            version,
            since: None,
            issuers: dto.issuers,
            api_keys: ApiKeyChangesDto::default(),
            revoked_tokens: Vec::new(),
        };
        let Ok(bytes) = serde_json::to_vec(&issuers) else {
            return Applied::Failed;
        };
        if !self.write(&self.bundle_key, &bytes) {
            return Applied::Failed;
        }
        if let Err(e) = host::shared_set(&self.version_key, version.to_string().as_bytes(), cas) {
            log::warn!("bundle version v{version} raced with another writer: {e:?}");
        }
        *self.cached.borrow_mut() = Some(Rc::new(keys));
        Applied::Stored
    }

    fn write(&self, key: &str, value: &[u8]) -> bool {
        match host::shared_set(key, value, None) {
            Ok(()) => true,
            Err(e) => {
                log::error!("cannot write shared data `{key}`: {e:?}");
                false
            }
        }
    }

    /// Records that the sidecar answered (200 or 304) at `now_ms`.
    pub(crate) fn mark_fresh(&self, now_ms: u64) {
        self.write(&self.fresh_key, now_ms.to_string().as_bytes());
    }

    /// Milliseconds since the sidecar last answered; 0 before any answer (there are no keys to be stale then).
    pub(crate) fn age_ms(&self, now_ms: u64) -> u64 {
        parse_u64(host::shared_get(&self.fresh_key).0).map_or(0, |at| now_ms.saturating_sub(at))
    }

    /// A number unique to this root context among all workers of this Envoy, for the fetch lease.
    pub(crate) fn register_root(&self) -> u64 {
        for _ in 0..64 {
            let (current, cas) = host::shared_get(&self.sequence_key);
            let next = parse_u64(current).unwrap_or(0) + 1;
            if host::shared_set(&self.sequence_key, next.to_string().as_bytes(), cas).is_ok() {
                return next;
            }
        }
        // Contention this heavy does not happen at configure time; a shared id only means two fetchers.
        0
    }

    /// Takes or renews the fetch lease until `until_ms`, unless another root holds it. One root per Envoy
    /// fetches (and long-polls) at a time.
    pub(crate) fn try_lease(&self, owner: u64, now_ms: u64, until_ms: u64) -> bool {
        let (holder, cas) = host::shared_get(&self.lease_key);
        let holder = holder
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        if let Some((until, who)) = holder.split_once(':') {
            let held = until.parse::<u64>().is_ok_and(|until| until > now_ms);
            if held && who.parse::<u64>().ok() != Some(owner) {
                return false;
            }
        }
        host::shared_set(
            &self.lease_key,
            format!("{until_ms}:{owner}").as_bytes(),
            cas,
        )
        .is_ok()
    }

    /// Claims the Envoy-wide right to ask the sidecar to refetch external keys now, if no worker of this Envoy
    /// has asked within the last `every_ms`.
    pub(crate) fn try_refetch_slot(&self, now_ms: u64, every_ms: u64) -> bool {
        let (last, cas) = host::shared_get(&self.refetch_key);
        if parse_u64(last).is_some_and(|last| now_ms < last.saturating_add(every_ms)) {
            return false;
        }
        host::shared_set(&self.refetch_key, now_ms.to_string().as_bytes(), cas).is_ok()
    }
}

fn parse_u64(bytes: Option<Vec<u8>>) -> Option<u64> {
    std::str::from_utf8(&bytes?).ok()?.parse().ok()
}
