//! Applying a fetched bundle (full or delta) to shared data, for every worker.
//!
//! A delta edits the slot in force: entries first, the issuers next, the delivery record last, so a request sees
//! a new version (and its revoked list) only once everything it names is in place, and a version counts as held
//! only once the record names it — an apply that failed half-way is applied again by the next bundle. A full
//! bundle, whole or in pages, is written to the other slot and switched in by the record
//! ([`crate::delivery::resync`]).
//!
//! The body stays with the host and is read twice in chunks ([`crate::delivery::stream`]): once to validate it
//! and gather what is small (issuers, deletes, revocations, the distinct rights), once to store the API keys in
//! batches ([`crate::delivery::apply_keys`]).

use crate::delivery::apply_keys::BucketWrite;
use crate::delivery::record::DeliveryRecord;
use crate::delivery::resync::Resync;
use crate::delivery::rights::Rights;
use crate::delivery::shared_data::SharedData;
use crate::delivery::store::SharedKeyMaterial;
use crate::delivery::stream::{read_bundle_page, BodyReader, BodySource};
use crate::delivery::wire::{ApiKeyChangesDto, BundleDto, PageDto, RevokedTokenDto};
use crate::error::{DeliveryError, KeyError};
use crate::keyset::{KeySet, Skipped};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;

/// Revocations are kept this long past their token's `exp`: longer than any filter's `leeway_secs` (at most 300).
pub const REVOKED_KEEP_SECS: i64 = 600;

/// A bundle response read through and validated, ready to apply. The API keys it puts are not held: they are
/// read again from `body` when the bundle is applied.
#[derive(Debug)]
pub struct ReceivedBundle<B> {
    /// The wire form, with an empty `api_keys.put`.
    pub dto: BundleDto,
    /// Where it sits in a paged full bundle, if it is a page.
    pub page: Option<PageDto>,
    /// How many API keys the bundle puts.
    pub puts: usize,
    /// The distinct rights of the keys put.
    pub(crate) rights: BTreeSet<Rights>,
    /// The validated signing keys.
    pub keys: KeySet,
    /// Keys left out of `keys`, and why (to log).
    pub skipped: Skipped,
    pub(crate) body: B,
}

impl<'b> ReceivedBundle<&'b [u8]> {
    /// Parses and validates a response body held in memory (see [`ReceivedBundle::read`]).
    pub fn parse(body: &'b [u8]) -> Result<Self, KeyError> {
        Self::read(body)
    }
}

impl<B: BodySource> ReceivedBundle<B> {
    /// Reads a response body through and validates it. An error means the bundle is damaged and must not replace
    /// the last good one.
    pub fn read(body: B) -> Result<Self, KeyError> {
        let mut puts = 0usize;
        let mut rights = BTreeSet::new();
        let (dto, page) = read_bundle_page(BodyReader::new(&body), &mut |key| {
            puts = puts.saturating_add(1);
            let granted = Rights::of(&key);
            if !rights.contains(&granted) {
                rights.insert(granted);
            }
            Ok(())
        })
        .map_err(|e| KeyError::MalformedBundle(e.to_string()))?;
        let (keys, skipped) = KeySet::from_bundle(&dto)?;
        Ok(Self {
            dto,
            page,
            puts,
            rights,
            keys,
            skipped,
            body,
        })
    }
}

/// What became of a fetched bundle.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Now in force: a delta, a complete full bundle, or the last page of a paged resync.
    Stored,
    /// A page of a full resync, with more to come: written to the slot not in force, so nothing is visible yet.
    /// Ask for the page the [`Resync`] names next.
    PageStored(Resync),
    /// Shared data already holds this version or a newer one.
    Stale,
    /// A delta for a version other than the one held: ask for a full bundle next time.
    Mismatch,
    /// A page that does not continue the resync in progress (another version or position), or shared data moved
    /// under it (another root stored something meanwhile): nothing was switched; start again.
    OutOfStep,
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
    /// Stores a validated delta, or a full bundle sent whole, for every worker, at `now_ms` (a page of a paged
    /// resync is handed to [`SharedKeyMaterial::apply_continuing`]).
    pub fn apply<B: BodySource>(&self, received: ReceivedBundle<B>, now_ms: u64) -> Applied {
        self.apply_continuing(received, None, now_ms)
    }

    /// Stores a validated bundle at `now_ms`: a delta, a full bundle, or the next page of the full resync
    /// `resync` (`None`: none in progress; a first page starts one).
    pub fn apply_continuing<B: BodySource>(
        &self,
        received: ReceivedBundle<B>,
        resync: Option<Resync>,
        now_ms: u64,
    ) -> Applied {
        let (record, _) = self.record();
        if record.is_some_and(|held| held.version >= received.dto.version) {
            return Applied::Stale;
        }
        match received.dto.since {
            Some(since) => self.apply_delta(received, since, record, now_ms),
            None => self.apply_page(received, record, resync, now_ms),
        }
    }

    /// Applies a delta from `since` to the slot in force: its buckets, its revoked list, its issuers, then the
    /// record (only if it still names `since` in that slot).
    fn apply_delta<B: BodySource>(
        &self,
        received: ReceivedBundle<B>,
        since: u64,
        record: Option<DeliveryRecord>,
        now_ms: u64,
    ) -> Applied {
        let Some(held) = record.filter(|held| held.version == since) else {
            return Applied::Mismatch;
        };
        let ReceivedBundle {
            dto,
            rights,
            keys,
            body,
            ..
        } = received;
        let version = dto.version;
        let revoked_changed = !dto.revoked_tokens.is_empty();
        let target = BucketWrite {
            slot: held.slot,
            version,
            full: false,
            floor: held.floor,
        };
        if let Err(e) = self.store(target, dto, &rights, &body, now_ms) {
            return Applied::Failed(e);
        }
        let moved = Cell::new(false);
        let advanced = self.update_record(|current| {
            let current =
                current.filter(|current| current.version == since && current.slot == held.slot);
            moved.set(current.is_none());
            current.map(|current| DeliveryRecord {
                version,
                fresh_at_ms: current.fresh_at_ms.max(now_ms),
                revoked_generation: if revoked_changed {
                    version
                } else {
                    current.revoked_generation
                },
                ..current
            })
        });
        match advanced {
            Err(e) => Applied::Failed(e),
            // Another root stored something meanwhile: what this delta wrote is a newer state of keys that
            // version still holds, and the next fetch starts from what the record names now.
            Ok(()) if moved.get() => Applied::OutOfStep,
            Ok(()) => {
                self.remember_keys(Rc::new(keys));
                Applied::Stored
            }
        }
    }

    /// Writes the API keys (read again from `body`), the revoked list and the issuers of `dto` into the slot
    /// `target` names.
    pub(crate) fn store<B: BodySource>(
        &self,
        target: BucketWrite,
        dto: BundleDto,
        rights: &BTreeSet<Rights>,
        body: &B,
        now_ms: u64,
    ) -> Result<(), DeliveryError> {
        let delete = if target.full {
            &[][..]
        } else {
            &dto.api_keys.delete[..]
        };
        self.store_api_keys(target, delete, rights, body)?;
        let slot = self.keys.slot(target.slot);
        if revoked_list_changes(&dto) {
            let held = if target.full {
                Vec::new()
            } else {
                self.revoked_list(target.slot)
            };
            let list = merge_revoked(held, &dto.revoked_tokens, now_ms);
            let bytes =
                serde_json::to_vec(&list).map_err(|_| DeliveryError::Encode("revoked list"))?;
            self.write(&slot.revoked, &bytes)?;
        }
        let issuers = BundleDto {
            version: dto.version,
            since: None,
            issuers: dto.issuers,
            api_keys: ApiKeyChangesDto::default(),
            revoked_tokens: Vec::new(),
        };
        let bytes = serde_json::to_vec(&issuers).map_err(|_| DeliveryError::Encode("issuers"))?;
        self.write(&slot.bundle, &bytes)
    }
}

/// Whether applying `dto` rewrites the revoked list: a full bundle always does (it lists every revocation in
/// force), a delta only when it revokes something.
fn revoked_list_changes(dto: &BundleDto) -> bool {
    dto.since.is_none() || !dto.revoked_tokens.is_empty()
}
