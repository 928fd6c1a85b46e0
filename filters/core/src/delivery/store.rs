//! Key material in shared data, and one worker's parsed copy of it.
//!
//! Shared data is shared by all workers of one host, so everything is stored once. The material of a version sits
//! in one of two *slots* `…/s0/`, `…/s1/` (a full resync writes the slot not in force, and the record switches to
//! it: see [`crate::delivery::resync`]); each slot has:
//! - the issuers part of the bundle (small) under `…/bundle`; a worker re-reads and parses it only when the
//!   version in the record moves past the keys it holds;
//! - the API keys in [`BUCKETS`](crate::delivery::bucket::BUCKETS) buckets `…/ak/<bucket>`
//!   ([`crate::delivery::bucket`]), packed binary arrays chosen by the first bits of the key's hash, so a lookup is
//!   one read of a small value whatever the number of keys, and a revocation rewrites one bucket instead of the
//!   whole set;
//! - the revoked access tokens not yet expired, as one list under `…/revoked`; each worker keeps a parsed copy and
//!   re-reads it only when the list changes.
//!
//! Besides the slots:
//! - the rights keys grant, interned in an append-only table under `…/rights` ([`crate::delivery::rights`]); each
//!   worker keeps a parsed copy and re-reads it only when an entry names an index past its end;
//! - `…/state`: the [`DeliveryRecord`] (version, floor, freshness, revoked-list generation, slot) in one value. It
//!   is the commit point: a version counts as held only once the record names it, so an apply that failed
//!   half-way is simply applied again.

use crate::delivery::bucket::{BucketView, KeyHash};
use crate::delivery::record::DeliveryRecord;
use crate::delivery::rights::{parse_list, Rights};
use crate::delivery::shared_data::SharedData;
use crate::delivery::wire::{ApiKeyDto, RevokedTokenDto};
use crate::error::{DeliveryError, KeyError};
use crate::policy::{Directory, KeyMaterial};
use crate::token_cache::TokenCache;
use crate::KeySet;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

/// Attempts at a compare-and-swap update of the delivery record before giving up (only the fetching root writes
/// it, so a conflict is rare).
const RECORD_CAS_ATTEMPTS: usize = 8;

/// The shared-data keys of one sidecar endpoint (two filters pointing at the same sidecar share everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SharedKeys {
    pub(crate) record: String,
    pub(crate) lease: String,
    /// When this host last asked the sidecar to refetch external keys (ms since the epoch).
    pub(crate) refetch_at: String,
    /// The counter handing out fetch-lease owner ids.
    pub(crate) root_sequence: String,
    /// The interned rights table (append-only, so shared by both slots).
    pub(crate) rights: String,
    slots: [SlotKeys; 2],
}

/// The keys of one slot: the material of one version, switched in whole by the delivery record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotKeys {
    pub(crate) bundle: String,
    pub(crate) revoked: String,
    bucket_prefix: String,
}

impl SlotKeys {
    /// The shared-data key of an API key bucket: three hex digits.
    pub(crate) fn bucket(&self, bucket: u16) -> String {
        format!("{}{bucket:03x}", self.bucket_prefix)
    }
}

impl SharedKeys {
    fn new(cluster: &str, path: &str) -> Self {
        // v3: the material sits in two slots switched by the record (paged resync). Shared data is per `vm_id`,
        // so an older module shares it during a rollout: its own namespace keeps the two layouts apart.
        let base = format!("keymesh.authn.v3/{cluster}{path}");
        let slot = |n: u8| SlotKeys {
            bundle: format!("{base}/s{n}/bundle"),
            revoked: format!("{base}/s{n}/revoked"),
            bucket_prefix: format!("{base}/s{n}/ak/"),
        };
        Self {
            record: format!("{base}/state"),
            lease: format!("{base}/lease"),
            refetch_at: format!("{base}/refetch_at"),
            root_sequence: format!("{base}/roots"),
            rights: format!("{base}/rights"),
            slots: [slot(0), slot(1)],
        }
    }

    /// The keys of slot `slot` (0, or anything else for 1).
    pub(crate) fn slot(&self, slot: u8) -> &SlotKeys {
        let [zero, one] = &self.slots;
        if slot == 0 {
            zero
        } else {
            one
        }
    }
}

/// The slot a full resync writes while `slot` is the one in force.
pub(crate) fn other_slot(slot: u8) -> u8 {
    if slot == 0 {
        1
    } else {
        0
    }
}

/// A worker's copy of a revoked list: the slot and generation it was read at, and the `jti`s.
type RevokedCopy = ((u8, u64), Rc<HashSet<String>>);

/// The key material of one sidecar endpoint in shared data, as one worker sees it: the shared store, plus this
/// worker's parsed signing keys and revoked list (re-read only when shared data moves past them).
#[derive(Debug)]
pub struct SharedKeyMaterial<S> {
    pub(crate) shared: S,
    pub(crate) keys: SharedKeys,
    /// This worker's parsed signing keys.
    parsed_keys: RefCell<Option<Rc<KeySet>>>,
    /// This worker's copy of the revoked list, with the slot and generation it was read at.
    revoked_copy: RefCell<Option<RevokedCopy>>,
    /// This worker's copy of the rights table (append-only, so a longer copy is always a newer one).
    rights_copy: RefCell<Rc<Vec<Rights>>>,
    /// The delivery record as this worker last read it, with the change count it was read at
    /// ([`SharedData::change_count`]).
    record_copy: Cell<Option<(u64, Option<DeliveryRecord>)>>,
}

/// The key material as one request sees it: the delivery record read once, the worker's keys for that version.
pub struct MaterialSnapshot<'s, S> {
    material: &'s SharedKeyMaterial<S>,
    record: Option<DeliveryRecord>,
    keys: Option<Rc<KeySet>>,
    reload_error: Option<KeyError>,
}

impl<S: SharedData> MaterialSnapshot<'_, S> {
    /// The signing keys, if any bundle has arrived.
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_deref()
    }

    /// Milliseconds since the sidecar last answered; 0 before any bundle (there are no keys to be stale then).
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        DeliveryRecord::age_ms(self.record, now_ms)
    }

    /// What [`crate::authorize`] decides with, at `now_ms`.
    pub fn key_material<'a>(
        &'a self,
        now_ms: u64,
        cache: Option<&'a TokenCache>,
    ) -> KeyMaterial<'a> {
        KeyMaterial {
            keys: self.keys(),
            age_secs: self.age_ms(now_ms) / 1000,
            directory: self,
            cache,
        }
    }

    /// Why the bundle in shared data could not be parsed, if it could not (only validated bundles are stored, so
    /// this means something else wrote it); the last keys this worker parsed are used meanwhile.
    pub fn reload_error(&self) -> Option<&KeyError> {
        self.reload_error.as_ref()
    }
}

impl<S: SharedData> Directory for MaterialSnapshot<'_, S> {
    /// The live API key with this hash, if any: in its bucket, and the bucket written at or above the floor.
    /// Anything that does not decode (the hash, the bucket, the entry, its rights) is an unknown key.
    fn api_key(&self, hash: &str) -> Option<ApiKeyDto> {
        let key_hash = KeyHash::parse(hash)?;
        let record = self.record?;
        let stored = self.material.shared.get(
            &self
                .material
                .keys
                .slot(record.slot)
                .bucket(key_hash.bucket()),
        )?;
        let bucket = BucketView::new(&stored.bytes)?;
        if bucket.generation < record.floor {
            return None;
        }
        let entry = bucket.find(&key_hash)?;
        let rights = self.material.rights(entry.rights)?;
        Some(ApiKeyDto {
            hash: hash.to_owned(),
            id: entry.id,
            owner: entry.owner,
            resources: rights.resources,
            scopes: rights.scopes,
            expires_at: entry.expires_at,
            tier: rights.tier,
        })
    }

    fn is_revoked(&self, jti: &str) -> bool {
        let Some(record) = self.record else {
            return false;
        };
        self.material
            .revoked_set(record.slot, record.revoked_generation)
            .contains(jti)
    }
}

impl<S: SharedData> SharedKeyMaterial<S> {
    /// The key material of the sidecar reached through `cluster` at bundle path `path`, in `shared`.
    pub fn new(shared: S, cluster: &str, path: &str) -> Self {
        Self {
            shared,
            keys: SharedKeys::new(cluster, path),
            parsed_keys: RefCell::new(None),
            revoked_copy: RefCell::new(None),
            rights_copy: RefCell::default(),
            record_copy: Cell::new(None),
        }
    }

    /// The rights at `index` in the table, re-reading this worker's copy if it is too short; `None` if the table
    /// has no such entry (or does not parse).
    fn rights(&self, index: u32) -> Option<Rights> {
        let index = usize::try_from(index).ok()?;
        if let Some(rights) = self.rights_copy.borrow().get(index) {
            return Some(rights.clone());
        }
        let list = parse_list(&self.shared.get(&self.keys.rights)?.bytes)?;
        let rights = list.get(index).cloned();
        *self.rights_copy.borrow_mut() = Rc::new(list);
        rights
    }

    /// The bundle version in shared data (the record's), if any bundle has been stored.
    pub fn shared_version(&self) -> Option<u64> {
        self.record().0.map(|record| record.version)
    }

    /// The delivery record and its CAS token.
    pub fn record(&self) -> (Option<DeliveryRecord>, Option<u32>) {
        match self.shared.get(&self.keys.record) {
            Some(value) => (DeliveryRecord::parse(&value.bytes), Some(value.cas)),
            None => (None, None),
        }
    }

    /// The delivery record a request decides with: this worker's copy while the change count has not moved, else
    /// read again. Every record write moves the count before the writer returns, so a request never decides with
    /// a record older than the last write completed before it started: a revocation is still enforced on the
    /// next request after it is stored.
    fn current_record(&self) -> Option<DeliveryRecord> {
        let Some(count) = self.shared.change_count() else {
            return self.record().0;
        };
        if let Some((seen, record)) = self.record_copy.get() {
            if seen == count {
                return record;
            }
        }
        // The count is read before the record: a write landing in between leaves a newer record under an older
        // count, and the next request reads it again.
        let record = self.record().0;
        self.record_copy.set(Some((count, record)));
        record
    }

    /// The key material for one request: the delivery record (one shared-data read, or none while nothing has
    /// changed), plus a reload of the signing keys if a newer version has been stored since this worker last
    /// looked.
    pub fn snapshot(&self) -> MaterialSnapshot<'_, S> {
        let record = self.current_record();
        let parsed = self.parsed_keys.borrow().clone();
        let mut reload_error = None;
        let keys = match (parsed, record) {
            (Some(keys), Some(record)) if keys.version() >= record.version => Some(keys),
            (parsed, Some(record)) => match self.reload(record.slot) {
                Ok(Some(keys)) => Some(keys),
                Ok(None) => parsed,
                Err(e) => {
                    reload_error = Some(e);
                    parsed
                }
            },
            (parsed, None) => parsed,
        };
        MaterialSnapshot {
            material: self,
            record,
            keys,
            reload_error,
        }
    }

    fn reload(&self, slot: u8) -> Result<Option<Rc<KeySet>>, KeyError> {
        let Some(stored) = self.shared.get(&self.keys.slot(slot).bundle) else {
            return Ok(None);
        };
        let (keys, _) = KeySet::parse_bundle(&stored.bytes)?;
        let keys = Rc::new(keys);
        self.remember_keys(Rc::clone(&keys));
        Ok(Some(keys))
    }

    pub(crate) fn remember_keys(&self, keys: Rc<KeySet>) {
        *self.parsed_keys.borrow_mut() = Some(keys);
    }

    /// This worker's copy of the revoked list of `slot` at `generation`, re-read from shared data when it moved.
    fn revoked_set(&self, slot: u8, generation: u64) -> Rc<HashSet<String>> {
        if let Some((held, set)) = self.revoked_copy.borrow().as_ref() {
            if *held == (slot, generation) {
                return Rc::clone(set);
            }
        }
        let set: HashSet<String> = self
            .revoked_list(slot)
            .into_iter()
            .map(|token| token.jti)
            .collect();
        let set = Rc::new(set);
        *self.revoked_copy.borrow_mut() = Some(((slot, generation), Rc::clone(&set)));
        set
    }

    /// The revoked list of `slot` as stored (empty if absent or unreadable).
    pub(crate) fn revoked_list(&self, slot: u8) -> Vec<RevokedTokenDto> {
        self.shared
            .get(&self.keys.slot(slot).revoked)
            .and_then(|stored| serde_json::from_slice(&stored.bytes).ok())
            .unwrap_or_default()
    }

    /// Updates the delivery record with compare-and-swap (`change` returning `None` leaves it as it is).
    pub(crate) fn update_record(
        &self,
        change: impl Fn(Option<DeliveryRecord>) -> Option<DeliveryRecord>,
    ) -> Result<(), DeliveryError> {
        for _ in 0..RECORD_CAS_ATTEMPTS {
            let (current, cas) = self.record();
            let Some(next) = change(current) else {
                return Ok(());
            };
            if self
                .shared
                .set(&self.keys.record, next.encode().as_bytes(), cas)
                .is_ok()
            {
                self.shared.count_change();
                return Ok(());
            }
        }
        Err(DeliveryError::RecordContention)
    }

    /// Records that the sidecar confirmed at `now_ms` that what shared data holds is current. Before the first
    /// bundle there is nothing to be fresh: the first apply records the time.
    pub fn mark_fresh(&self, now_ms: u64) -> Result<(), DeliveryError> {
        self.update_record(|held| {
            held.map(|held| DeliveryRecord {
                fresh_at_ms: held.fresh_at_ms.max(now_ms),
                ..held
            })
        })
    }

    /// Milliseconds since the sidecar last answered; 0 before any bundle.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        DeliveryRecord::age_ms(self.record().0, now_ms)
    }

    /// Writes `value` under `key` unconditionally.
    pub(crate) fn write(&self, key: &str, value: &[u8]) -> Result<(), DeliveryError> {
        self.shared
            .set(key, value, None)
            .map_err(|source| DeliveryError::Write {
                key: key.to_owned(),
                source,
            })
    }
}
