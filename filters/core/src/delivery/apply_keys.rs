//! Writing a bundle's API key changes into their buckets ([`crate::delivery::bucket`]), and their rights into the
//! interned table ([`crate::delivery::rights`]).
//!
//! The rights are interned first, so that no bucket names an index the table does not have yet. Deletes come
//! next, then the keys put, read again from the body and written [`BATCH_KEYS`] at a time: each batch rewrites
//! the buckets its keys fall in, with compare-and-swap. A full bundle is served in hash order, so each bucket is
//! written about once; any other order only costs more rewrites.

use crate::delivery::bucket::{Bucket, BucketEntry, KeyHash};
use crate::delivery::rights::{Rights, RightsTable};
use crate::delivery::shared_data::{SharedData, SharedDataError};
use crate::delivery::store::SharedKeyMaterial;
use crate::delivery::stream::{read_bundle, BodyReader, BodySource};
use crate::delivery::wire::ApiKeyDto;
use crate::error::DeliveryError;
use std::collections::{BTreeMap, BTreeSet};

/// Attempts at a compare-and-swap rewrite of one bucket or of the rights table (only the fetching root writes
/// them, so a conflict is rare).
const CAS_ATTEMPTS: usize = 8;

/// Keys put held in memory at a time while a bundle is stored (about 100 bytes each).
pub const BATCH_KEYS: usize = 4096;

/// Where and how a bundle's API keys are written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BucketWrite {
    /// The slot whose buckets are written.
    pub(crate) slot: u8,
    /// The version writing them (stamped on each bucket).
    pub(crate) version: u64,
    /// A full resync (each bucket rebuilt from what this version writes) or a delta (edits).
    pub(crate) full: bool,
    /// For a delta: the floor in force, under which what a bucket holds is dead.
    pub(crate) floor: u64,
}

/// The keys put of one batch, by bucket.
#[derive(Default)]
struct Batch {
    buckets: BTreeMap<u16, Vec<BucketEntry>>,
    len: usize,
}

impl<S: SharedData> SharedKeyMaterial<S> {
    /// Writes the API key changes of a bundle as `target` says: `delete`, then the keys put, read from `body`. A
    /// full bundle rewrites each bucket it has keys for from scratch (the buckets it does not touch die when the
    /// record's floor rises to its version); a delta edits the buckets of the keys it names.
    pub(crate) fn store_api_keys<B: BodySource>(
        &self,
        target: BucketWrite,
        delete: &[String],
        rights: &BTreeSet<Rights>,
        body: &B,
    ) -> Result<(), DeliveryError> {
        let table = self.intern_rights(rights)?;
        let mut deletes: BTreeMap<u16, Vec<KeyHash>> = BTreeMap::new();
        for hash in delete.iter().filter_map(|hash| KeyHash::parse(hash)) {
            deletes.entry(hash.bucket()).or_default().push(hash);
        }
        for (bucket, hashes) in deletes {
            self.rewrite_bucket(target, bucket, &hashes, Vec::new())?;
        }
        let mut batch = Batch::default();
        let mut failed = None;
        let read = read_bundle(BodyReader::new(body), &mut |key| {
            let Some(entry) = entry_of(key, &table)? else {
                return Ok(());
            };
            batch
                .buckets
                .entry(entry.hash.bucket())
                .or_default()
                .push(entry);
            batch.len = batch.len.saturating_add(1);
            if batch.len >= BATCH_KEYS {
                if let Err(e) = self.flush(&mut batch, target) {
                    failed = Some(e);
                    return Err("storing the keys failed".into());
                }
            }
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        read.map_err(|e| DeliveryError::Reread(e.to_string()))?;
        self.flush(&mut batch, target)
    }

    fn flush(&self, batch: &mut Batch, target: BucketWrite) -> Result<(), DeliveryError> {
        for (bucket, entries) in std::mem::take(&mut batch.buckets) {
            self.rewrite_bucket(target, bucket, &[], entries)?;
        }
        batch.len = 0;
        Ok(())
    }

    /// Applies deletes and puts to one bucket of the target slot with compare-and-swap, and stamps it with the
    /// target version.
    ///
    /// - A bucket already written by a newer version is left alone: a root that lost the lease mid-apply must not
    ///   undo its successor's work.
    /// - What is held is kept if it is alive: for a delta, written at or above `floor`; for a full bundle, written
    ///   by this same version (an earlier batch, or an attempt that failed half-way). Anything else, or bytes that
    ///   do not decode, count as empty.
    fn rewrite_bucket(
        &self,
        target: BucketWrite,
        bucket: u16,
        delete: &[KeyHash],
        put: Vec<BucketEntry>,
    ) -> Result<(), DeliveryError> {
        let BucketWrite {
            slot,
            version,
            full,
            floor,
        } = target;
        let key = self.keys.slot(slot).bucket(bucket);
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.shared.get(&key);
            let cas = stored.as_ref().map(|value| value.cas);
            let held = stored.and_then(|value| Bucket::decode(&value.bytes));
            if held.as_ref().is_some_and(|held| held.generation > version) {
                return Ok(());
            }
            let alive_from = if full { version } else { floor };
            let mut next = match held {
                Some(held) if held.generation >= alive_from => held,
                _ => Bucket::default(),
            };
            let mut changed = !put.is_empty();
            for hash in delete {
                changed |= next.remove(hash);
            }
            if !changed {
                return Ok(());
            }
            for entry in &put {
                next.put(entry.clone());
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

    /// The rights table with every one of `rights` in it, appending those it does not have yet (with
    /// compare-and-swap: an index handed out is never handed out again).
    fn intern_rights(&self, rights: &BTreeSet<Rights>) -> Result<RightsTable, DeliveryError> {
        let key = &self.keys.rights;
        for _ in 0..CAS_ATTEMPTS {
            let stored = self.shared.get(key);
            let cas = stored.as_ref().map(|value| value.cas);
            let mut table = match stored {
                None => RightsTable::default(),
                Some(value) => RightsTable::parse(&value.bytes)
                    .ok_or_else(|| DeliveryError::RightsTableDamaged(key.clone()))?,
            };
            for granted in rights {
                table
                    .intern(granted.clone())
                    .map_err(|_| DeliveryError::Encode("rights table"))?;
            }
            if !table.grown() {
                return Ok(table);
            }
            let bytes = table
                .encode()
                .map_err(|_| DeliveryError::Encode("rights table"))?;
            match self.shared.set(key, &bytes, cas) {
                Ok(()) => return Ok(table),
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
}

/// The bucket entry of a key put, if it can be stored: a hash that is not base64url SHA-256 is never the hash of a
/// presented key, and an id or owner past 64 KiB does not fit an entry, so neither could be looked up. Rights the
/// table lacks mean the body read differently the second time: an error.
fn entry_of(key: ApiKeyDto, table: &RightsTable) -> Result<Option<BucketEntry>, String> {
    let Some(hash) = KeyHash::parse(&key.hash) else {
        return Ok(None);
    };
    if key.id.len() > usize::from(u16::MAX) || key.owner.len() > usize::from(u16::MAX) {
        return Ok(None);
    }
    let rights = table
        .index_of(&Rights::of(&key))
        .ok_or("a key's rights were not seen on the first read")?;
    Ok(Some(BucketEntry {
        hash,
        rights,
        expires_at: key.expires_at,
        id: key.id,
        owner: key.owner,
    }))
}
