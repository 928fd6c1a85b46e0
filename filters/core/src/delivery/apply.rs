//! Applying a fetched bundle (full or delta) to shared data, for every worker.
//!
//! Entries first, the issuers next, the delivery record last: a request sees a new version (and its floor and
//! revoked list) only once everything it names is in place, and a version counts as held only once the record
//! names it — an apply that failed half-way is applied again by the next bundle.
//!
//! The body stays with the host and is read twice in chunks ([`crate::delivery::stream`]): once to validate it
//! and gather what is small (issuers, deletes, revocations, the distinct rights), once to store the API keys in
//! batches ([`crate::delivery::apply_keys`]).

use crate::delivery::record::DeliveryRecord;
use crate::delivery::rights::Rights;
use crate::delivery::shared_data::SharedData;
use crate::delivery::store::SharedKeyMaterial;
use crate::delivery::stream::{read_bundle, BodyReader, BodySource};
use crate::delivery::wire::{ApiKeyChangesDto, BundleDto, RevokedTokenDto};
use crate::error::{DeliveryError, KeyError};
use crate::keyset::{KeySet, Skipped};
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
        let dto = read_bundle(BodyReader::new(&body), &mut |key| {
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
    pub fn apply<B: BodySource>(&self, received: ReceivedBundle<B>, now_ms: u64) -> Applied {
        let ReceivedBundle {
            dto,
            rights,
            keys,
            body,
            ..
        } = received;
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
        if let Err(e) = self.store(dto, &rights, &body, now_ms) {
            return Applied::Failed(e);
        }
        if let Err(e) = self.advance_record(version, full, revoked_changed, now_ms) {
            return Applied::Failed(e);
        }
        self.remember_keys(Rc::new(keys));
        Applied::Stored
    }

    /// Writes the API keys (read again from `body`), the revoked list and the issuers of `dto`.
    fn store<B: BodySource>(
        &self,
        dto: BundleDto,
        rights: &BTreeSet<Rights>,
        body: &B,
        now_ms: u64,
    ) -> Result<(), DeliveryError> {
        let version = dto.version;
        self.store_api_keys(
            &dto.api_keys.delete,
            rights,
            body,
            version,
            dto.since.is_none(),
        )?;
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
