//! Applying a fetched bundle (full or delta) to shared data, for every worker.
//!
//! Entries first, the issuers next, the delivery record last: a request sees a new version (and its floor and
//! revoked list) only once everything it names is in place, and a version counts as held only once the record
//! names it — an apply that failed half-way is applied again by the next bundle.

use crate::delivery::bucket::{Bucket, BucketEntry, KeyHash};
use crate::delivery::record::DeliveryRecord;
use crate::delivery::rights::{Rights, RightsTable};
use crate::delivery::shared_data::{SharedData, SharedDataError};
use crate::delivery::store::SharedKeyMaterial;
use crate::delivery::wire::{ApiKeyChangesDto, ApiKeyDto, BundleDto, RevokedTokenDto};
use crate::error::{DeliveryError, KeyError};
use crate::keyset::{KeySet, Skipped};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Attempts at a compare-and-swap rewrite of one bucket or of the rights table (only the fetching root writes
/// them, so a conflict is rare).
const CAS_ATTEMPTS: usize = 8;

/// Revocations are kept this long past their token's `exp`: longer than any filter's `leeway_secs` (at most 300).
pub const REVOKED_KEEP_SECS: i64 = 600;

/// A bundle response parsed and validated, ready to apply.
#[derive(Debug)]
pub struct ReceivedBundle {
    /// The wire form.
    pub dto: BundleDto,
    /// The validated signing keys.
    pub keys: KeySet,
    /// Keys left out of `keys`, and why (to log).
    pub skipped: Skipped,
}

impl ReceivedBundle {
    /// Parses and validates a response body. An error means the bundle is damaged and must not replace the last
    /// good one.
    pub fn parse(body: &[u8]) -> Result<Self, KeyError> {
        let dto: BundleDto =
            serde_json::from_slice(body).map_err(|e| KeyError::MalformedBundle(e.to_string()))?;
        let (keys, skipped) = KeySet::from_bundle(&dto)?;
        Ok(Self { dto, keys, skipped })
    }
}

/// What became of a fetched bundle.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Now in shared data.
    Stored,
    /// Shared data already holds this version or a newer one.
    Stale,
    /// A delta for a version other than the one held: ask for a full bundle next time.
    Mismatch,
    /// Shared data refused a write; what is stored may be partly applied, so ask for a full bundle next time.
    Failed(DeliveryError),
}

/// The revoked list after a bundle: a full bundle's list replaces the held one, a delta's adds to it; tokens past
/// `exp` + [`REVOKED_KEEP_SECS`] are dropped (they fail on their own), one entry per `jti`, sorted.
pub fn merge_revoked(
    held: Vec<RevokedTokenDto>,
    incoming: &[RevokedTokenDto],
    now_ms: u64,
) -> Vec<RevokedTokenDto> {
    let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let mut list = held;
    list.extend(incoming.iter().cloned());
    list.retain(|token| token.exp.saturating_add(REVOKED_KEEP_SECS) > now);
    list.sort_by(|a, b| a.jti.cmp(&b.jti));
    list.dedup_by(|a, b| a.jti == b.jti);
    list
}

impl<S: SharedData> SharedKeyMaterial<S> {
    /// Stores a validated bundle (full or delta) for every worker, at `now_ms`.
    pub fn apply(&self, received: ReceivedBundle, now_ms: u64) -> Applied {
        let ReceivedBundle { dto, keys, .. } = received;
        let current = self.shared_version();
        let version = dto.version;
        if current.is_some_and(|held| held >= version) {
            return Applied::Stale;
        }
        if dto.since.is_some() && dto.since != current {
            return Applied::Mismatch;
        }
        let full = dto.since.is_none();
        let revoked_changed = revoked_list_changes(&dto);
        if let Err(e) = self.store(dto, now_ms) {
            return Applied::Failed(e);
        }
        if let Err(e) = self.advance_record(version, full, revoked_changed, now_ms) {
            return Applied::Failed(e);
        }
        self.remember_keys(Rc::new(keys));
        Applied::Stored
    }

    /// Writes the API key entries, the revoked list and the issuers of `dto`.
    fn store(&self, dto: BundleDto, now_ms: u64) -> Result<(), DeliveryError> {
        let version = dto.version;
        self.store_api_keys(&dto.api_keys, version, dto.since.is_none())?;
        if revoked_list_changes(&dto) {
            let held = if dto.since.is_none() {
                Vec::new()
            } else {
                self.revoked_list()
            };
            let list = merge_revoked(held, &dto.revoked_tokens, now_ms);
            let bytes =
                serde_json::to_vec(&list).map_err(|_| DeliveryError::Encode("revoked list"))?;
            self.write(&self.keys.revoked, &bytes)?;
        }
        let issuers = BundleDto {
            version,
            since: None,
            issuers: dto.issuers,
            api_keys: ApiKeyChangesDto::default(),
            revoked_tokens: Vec::new(),
        };
        let bytes = serde_json::to_vec(&issuers).map_err(|_| DeliveryError::Encode("issuers"))?;
        self.write(&self.keys.bundle, &bytes)
    }

    /// Writes the API key changes of a bundle at `version` into their buckets. A full bundle rewrites each bucket
    /// it has keys for from scratch (the buckets it does not touch die when the record's floor rises to `version`);
    /// a delta edits the buckets of the keys it names. The rights of the keys put are interned first, so that no
    /// bucket names an index the table does not have yet.
    pub(crate) fn store_api_keys(
        &self,
        changes: &ApiKeyChangesDto,
        version: u64,
        full: bool,
    ) -> Result<(), DeliveryError> {
        let rights = self.intern_rights(&changes.put)?;
        let mut buckets: BTreeMap<u16, BucketChanges<'_>> = BTreeMap::new();
        for (key, rights) in changes.put.iter().zip(rights) {
            // A hash that is not base64url SHA-256 is never the hash of a presented key, and ids or owners past
            // 64 KiB do not fit an entry: neither can be looked up, so neither is stored.
            let Some(hash) = KeyHash::parse(&key.hash) else {
                continue;
            };
            if key.id.len() > usize::from(u16::MAX) || key.owner.len() > usize::from(u16::MAX) {
                continue;
            }
            let changes = buckets.entry(hash.bucket()).or_default();
            changes.put.push((hash, rights, key));
        }
        for hash in changes
            .delete
            .iter()
            .filter_map(|hash| KeyHash::parse(hash))
        {
            buckets.entry(hash.bucket()).or_default().delete.push(hash);
        }
        let floor = self.record().0.map_or(0, |record| record.floor);
        for (bucket, changes) in buckets {
            self.rewrite_bucket(bucket, &changes, version, full, floor)?;
        }
        Ok(())
    }

    /// Applies `changes` to one bucket with compare-and-swap. A bucket already written by a newer version is left
    /// alone (a root that lost the lease mid-apply must not undo its successor's work), and a dead one (below
    /// `floor`) or one that does not decode counts as empty.
    fn rewrite_bucket(
        &self,
        bucket: u16,
        changes: &BucketChanges<'_>,
        version: u64,
        full: bool,
        floor: u64,
    ) -> Result<(), DeliveryError> {
        let key = self.keys.bucket(bucket);
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.shared.get(&key);
            let cas = stored.as_ref().map(|value| value.cas);
            let held = stored.and_then(|value| Bucket::decode(&value.bytes));
            if held.as_ref().is_some_and(|held| held.generation > version) {
                return Ok(());
            }
            let mut next = match held {
                Some(held) if !full && held.generation >= floor => held,
                _ => Bucket::default(),
            };
            let mut changed = full || !changes.put.is_empty();
            for hash in &changes.delete {
                changed |= next.remove(hash);
            }
            if !changed {
                return Ok(());
            }
            for (hash, rights, dto) in &changes.put {
                next.put(BucketEntry {
                    hash: *hash,
                    rights: *rights,
                    expires_at: dto.expires_at,
                    id: dto.id.clone(),
                    owner: dto.owner.clone(),
                });
            }
            next.generation = version;
            let bytes = next
                .encode()
                .map_err(|_| DeliveryError::Encode("api key bucket"))?;
            match self.shared.set(&key, &bytes, cas) {
                Ok(()) => return Ok(()),
                Err(SharedDataError::CasMismatch) => continue,
                Err(source) => return Err(DeliveryError::Write { key, source }),
            }
        }
        Err(DeliveryError::Contention(key))
    }

    /// The rights-table index of each key in `put`, appending the rights not in the table yet (with
    /// compare-and-swap: an index handed out is never handed out again).
    fn intern_rights(&self, put: &[ApiKeyDto]) -> Result<Vec<u32>, DeliveryError> {
        if put.is_empty() {
            return Ok(Vec::new());
        }
        let key = &self.keys.rights;
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.shared.get(key);
            let cas = stored.as_ref().map(|value| value.cas);
            let mut table = match stored {
                None => RightsTable::default(),
                Some(value) => RightsTable::parse(&value.bytes)
                    .ok_or_else(|| DeliveryError::RightsTableDamaged(key.clone()))?,
            };
            let indexes = put
                .iter()
                .map(|dto| table.intern(Rights::of(dto)))
                .collect::<Result<Vec<u32>, _>>()
                .map_err(|_| DeliveryError::Encode("rights table"))?;
            if !table.grown() {
                return Ok(indexes);
            }
            let bytes = table
                .encode()
                .map_err(|_| DeliveryError::Encode("rights table"))?;
            match self.shared.set(key, &bytes, cas) {
                Ok(()) => return Ok(indexes),
                Err(SharedDataError::CasMismatch) => continue,
                Err(source) => {
                    return Err(DeliveryError::Write {
                        key: key.clone(),
                        source,
                    })
                }
            }
        }
        Err(DeliveryError::Contention(key.clone()))
    }

    /// Moves the delivery record to `version`: a full bundle raises the floor to it (entries it did not rewrite
    /// are keys deleted while this host was out of the change-log window), a bundle that rewrote the revoked list
    /// moves its generation, and the version and freshness never go backwards.
    fn advance_record(
        &self,
        version: u64,
        full: bool,
        revoked_changed: bool,
        now_ms: u64,
    ) -> Result<(), DeliveryError> {
        self.update_record(|held| {
            let held = held.unwrap_or_default();
            Some(DeliveryRecord {
                version: version.max(held.version),
                floor: if full { version } else { held.floor },
                fresh_at_ms: held.fresh_at_ms.max(now_ms),
                revoked_generation: if revoked_changed {
                    version
                } else {
                    held.revoked_generation
                },
            })
        })
    }
}

/// Whether applying `dto` rewrites the revoked list: a full bundle always does (it lists every revocation in
/// force), a delta only when it revokes something.
fn revoked_list_changes(dto: &BundleDto) -> bool {
    dto.since.is_none() || !dto.revoked_tokens.is_empty()
}

/// What one bundle changes in one bucket.
#[derive(Default)]
struct BucketChanges<'a> {
    put: Vec<(KeyHash, u32, &'a ApiKeyDto)>,
    delete: Vec<KeyHash>,
}
