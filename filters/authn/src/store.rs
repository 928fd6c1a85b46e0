//! Key material in Envoy shared data, and each worker's parsed copy of the signing keys.
//!
//! Shared data is per `vm_id` and shared by all worker VMs, so everything is stored once per Envoy:
//! - the issuers part of the bundle (small) under `…/bundle`, with its version under `…/version`; a worker
//!   re-reads and parses it only when the version moves;
//! - every API key as its own entry `…/ak/<hash>`, so a lookup is one small read whatever the number of keys, and
//!   a revocation rewrites one entry instead of the whole set;
//! - the revoked access tokens not yet expired, as one list under `…/revoked`; each worker keeps a parsed copy and
//!   re-reads it only when the list changes;
//! - `…/state`: the version, the API-key floor, when the sidecar last answered, and the generation of the revoked
//!   list, in one value, so that a request costs one shared-data read before its own lookups.
//!
//! ABI 0.2.1 cannot list or remove shared-data keys, so an entry carries the generation (bundle version) that
//! wrote it, and a full resync at version F raises a floor to F: entries older than the floor — keys deleted while
//! this Envoy was out of the sidecar's change-log window — are dead. A revoked key is overwritten with an empty
//! value.

use crate::host;
use keymesh_core::bundle::{ApiKeyChangesDto, ApiKeyDto, BundleDto, RevokedTokenDto};
use keymesh_core::{Directory, KeySet};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

/// Revocations are kept this long past their token's `exp`: longer than any filter's `leeway_secs` (at most 300).
const REVOKED_KEEP_SECS: i64 = 600;

/// Attempts at a compare-and-swap update of `…/state` before giving up (only the fetching root writes it, so a
/// conflict is rare).
const STATE_CAS_ATTEMPTS: usize = 8;

/// Shared-data keys of one sidecar endpoint (two filters pointing at the same sidecar share everything).
#[derive(Debug)]
pub(crate) struct BundleStore {
    bundle_key: String,
    version_key: String,
    state_key: String,
    revoked_key: String,
    lease_key: String,
    /// When this Envoy last asked the sidecar to refetch external keys (ms since the epoch).
    refetch_key: String,
    sequence_key: String,
    entry_prefix: String,
    /// This worker's parsed signing keys.
    cached: RefCell<Option<Rc<KeySet>>>,
    /// This worker's copy of the revoked list, with the generation it was read at.
    revoked: RefCell<Option<(u64, Rc<HashSet<String>>)>>,
}

/// What every request needs to know about the key material, read from `…/state` in one go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// The bundle version stored.
    pub(crate) version: u64,
    /// API key entries written before this version are dead.
    floor: u64,
    /// When the sidecar last answered (ms since the epoch).
    fresh_at: u64,
    /// The version that last changed the revoked list.
    revoked_gen: u64,
}

impl State {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split(' ').map(str::parse::<u64>);
        let mut next = || fields.next()?.ok();
        Some(Self {
            version: next()?,
            floor: next()?,
            fresh_at: next()?,
            revoked_gen: next()?,
        })
    }

    /// Milliseconds since the sidecar last answered, by `state`; 0 before any bundle (no keys to be stale).
    fn age_ms(state: Option<Self>, now_ms: u64) -> u64 {
        state.map_or(0, |state| now_ms.saturating_sub(state.fresh_at))
    }

    fn encode(self) -> String {
        format!(
            "{} {} {} {}",
            self.version, self.floor, self.fresh_at, self.revoked_gen
        )
    }
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

/// The key material as one request sees it: the state read once, the worker's keys for that version.
pub(crate) struct View<'s> {
    store: &'s BundleStore,
    state: Option<State>,
    keys: Option<Rc<KeySet>>,
}

impl View<'_> {
    /// The signing keys, if any bundle has arrived.
    pub(crate) fn keys(&self) -> Option<&KeySet> {
        self.keys.as_deref()
    }

    /// Milliseconds since the sidecar last answered; 0 before any bundle (there are no keys to be stale then).
    pub(crate) fn age_ms(&self, now_ms: u64) -> u64 {
        State::age_ms(self.state, now_ms)
    }
}

impl Directory for View<'_> {
    /// The live API key entry with this hash, if any.
    fn api_key(&self, hash: &str) -> Option<ApiKeyDto> {
        let bytes = host::shared_get(&format!("{}{hash}", self.store.entry_prefix)).0?;
        if bytes.is_empty() {
            return None;
        }
        let stored: StoredKey = serde_json::from_slice(&bytes).ok()?;
        let floor = self.state.map_or(0, |state| state.floor);
        (stored.g >= floor && stored.key.hash == hash).then_some(stored.key)
    }

    fn is_revoked(&self, jti: &str) -> bool {
        let generation = self.state.map_or(0, |state| state.revoked_gen);
        self.store.revoked_set(generation).contains(jti)
    }
}

impl BundleStore {
    pub(crate) fn new(cluster: &str, path: &str) -> Self {
        let base = format!("keymesh.authn.v1/{cluster}{path}");
        Self {
            bundle_key: format!("{base}/bundle"),
            version_key: format!("{base}/version"),
            state_key: format!("{base}/state"),
            revoked_key: format!("{base}/revoked"),
            lease_key: format!("{base}/lease"),
            refetch_key: format!("{base}/refetch_at"),
            sequence_key: format!("{base}/roots"),
            entry_prefix: format!("{base}/ak/"),
            cached: RefCell::new(None),
            revoked: RefCell::new(None),
        }
    }

    /// The version in shared data, if any bundle has been stored.
    pub(crate) fn shared_version(&self) -> Option<u64> {
        parse_u64(host::shared_get(&self.version_key).0)
    }

    fn state(&self) -> (Option<State>, Option<u32>) {
        let (bytes, cas) = host::shared_get(&self.state_key);
        (bytes.as_deref().and_then(State::parse), cas)
    }

    /// The key material for one request: one shared-data read, plus a reload of the signing keys if a newer
    /// version has been stored since this worker last looked.
    pub(crate) fn view(&self) -> View<'_> {
        let state = self.state().0;
        let cached = self.cached.borrow().clone();
        let keys = match (cached, state) {
            (Some(keys), Some(state)) if keys.version() >= state.version => Some(keys),
            (cached, Some(_)) => self.reload().or(cached),
            (cached, None) => cached,
        };
        View {
            store: self,
            state,
            keys,
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

    /// This worker's copy of the revoked list at `generation`, re-read from shared data when it moved.
    fn revoked_set(&self, generation: u64) -> Rc<HashSet<String>> {
        if let Some((held, set)) = self.revoked.borrow().as_ref() {
            if *held == generation {
                return Rc::clone(set);
            }
        }
        let set: HashSet<String> = read_revoked(&self.revoked_key)
            .into_iter()
            .map(|token| token.jti)
            .collect();
        let set = Rc::new(set);
        *self.revoked.borrow_mut() = Some((generation, Rc::clone(&set)));
        set
    }

    /// Updates `…/state` with compare-and-swap (`change` returning `None` leaves it as it is); false if shared data
    /// kept refusing.
    fn update_state(&self, change: impl Fn(Option<State>) -> Option<State>) -> bool {
        for _ in 0..STATE_CAS_ATTEMPTS {
            let (current, cas) = self.state();
            let Some(next) = change(current) else {
                return true;
            };
            if host::shared_set(&self.state_key, next.encode().as_bytes(), cas).is_ok() {
                return true;
            }
        }
        log::error!("cannot update the key material state in shared data");
        false
    }

    /// Stores a validated bundle (full or delta) for every worker.
    pub(crate) fn apply(&self, dto: BundleDto, keys: KeySet, now_ms: u64) -> Applied {
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
        // A full bundle lists every revocation still in force; a delta adds to the list held. Either way, tokens
        // long expired are dropped, which keeps the list (and each worker's copy) small.
        let full = dto.since.is_none();
        let revoked_changed = full || !dto.revoked_tokens.is_empty();
        if revoked_changed {
            let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
            let mut list = if full {
                Vec::new()
            } else {
                read_revoked(&self.revoked_key)
            };
            list.extend(dto.revoked_tokens.iter().cloned());
            list.retain(|token| token.exp.saturating_add(REVOKED_KEEP_SECS) > now);
            list.sort_by(|a, b| a.jti.cmp(&b.jti));
            list.dedup_by(|a, b| a.jti == b.jti);
            let Ok(bytes) = serde_json::to_vec(&list) else {
                return Applied::Failed;
            };
            if !self.write(&self.revoked_key, &bytes) {
                return Applied::Failed;
            }
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
        // Last: requests see the new version (and floor, and revoked list) only once everything is in place.
        let stated = self.update_state(|held| {
            let held = held.unwrap_or_default();
            Some(State {
                version: version.max(held.version),
                floor: if full { version } else { held.floor },
                fresh_at: held.fresh_at.max(now_ms),
                revoked_gen: if revoked_changed {
                    version
                } else {
                    held.revoked_gen
                },
            })
        });
        if !stated {
            return Applied::Failed;
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

    /// Records that the sidecar answered (200 or 304) at `now_ms`. Before the first bundle there is nothing to
    /// be fresh: the first [`BundleStore::apply`] records the time.
    pub(crate) fn mark_fresh(&self, now_ms: u64) {
        self.update_state(|held| {
            held.map(|held| State {
                fresh_at: held.fresh_at.max(now_ms),
                ..held
            })
        });
    }

    /// Milliseconds since the sidecar last answered; 0 before any bundle.
    pub(crate) fn age_ms(&self, now_ms: u64) -> u64 {
        State::age_ms(self.state().0, now_ms)
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

    /// Gives the fetch lease up, if this root holds it.
    pub(crate) fn release_lease(&self, owner: u64) {
        let (holder, cas) = host::shared_get(&self.lease_key);
        let ours = holder
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(|holder| holder.split_once(':'))
            .is_some_and(|(_, who)| who.parse::<u64>().ok() == Some(owner));
        if ours {
            let _ = host::shared_set(&self.lease_key, format!("0:{owner}").as_bytes(), cas);
        }
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

fn read_revoked(key: &str) -> Vec<RevokedTokenDto> {
    host::shared_get(key)
        .0
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}
