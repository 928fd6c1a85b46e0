//! A full resync, page by page, invisible until it is complete.
//!
//! The material of the version in force sits in one of two slots of shared data, the one the delivery record
//! names. A full resync at version F writes the other slot: the first page its issuers and revoked list, every
//! page its API keys (buckets stamped F). Readers never look there. The last page writes the record — version
//! F, floor F, this slot — and that one write switches every worker from the old material to the new, whole.
//!
//! - **Half-done:** a request sees the old version's keys, revocations and issuers, and deltas keep editing the
//!   slot in force (by another root, should this one lose the lease).
//! - **Failed half-way** (a page refused, the sidecar gone, shared data full): nothing was switched, no key was
//!   touched in the slot in force. What was written stays in the other slot, dead: the next resync writes that
//!   slot at a newer version (or the same one: equal versions mean equal content) and its floor kills every
//!   bucket it did not rewrite.
//! - **Out of step:** a page of another version or another position than expected, or a record that moved under
//!   the resync (another root switched slots, or stored that version), ends the resync without a switch; the
//!   next attempt starts again from the first page.
//! - **After the switch** the old slot's buckets are emptied ([`SharedKeyMaterial::clear_retired_slot`], a tick
//!   later so no request is between reading the record and reading a bucket), so shared data does not hold the
//!   key set twice.

use crate::delivery::apply::{Applied, ReceivedBundle};
use crate::delivery::apply_keys::BucketWrite;
use crate::delivery::bucket::{Bucket, BucketView, BUCKETS};
use crate::delivery::record::DeliveryRecord;
use crate::delivery::shared_data::SharedData;
use crate::delivery::store::{other_slot, SharedKeyMaterial};
use crate::delivery::stream::BodySource;
use crate::delivery::wire::PageDto;
use crate::error::DeliveryError;
use std::cell::Cell;
use std::rc::Rc;

/// A paged full resync in progress: the version, the slot it writes, the page it needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    version: u64,
    slot: u8,
    next: u64,
    keys: u64,
    stored: u64,
    pages: u64,
}

impl Resync {
    /// The version being stored.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Position of the first API key of the page to ask for next.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Pages stored so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// API keys read so far, and how many the whole set holds.
    pub fn progress(&self) -> (u64, u64) {
        (self.stored, self.keys)
    }
}

impl<S: SharedData> SharedKeyMaterial<S> {
    /// Stores a page of a full bundle (a full bundle sent whole is one page) into the slot not in force, and
    /// switches to it after the last page.
    pub(crate) fn apply_page<B: BodySource>(
        &self,
        received: ReceivedBundle<B>,
        record: Option<DeliveryRecord>,
        resync: Option<Resync>,
        now_ms: u64,
    ) -> Applied {
        let version = received.dto.version;
        let puts = u64::try_from(received.puts).unwrap_or(u64::MAX);
        let page = received.page.unwrap_or(PageDto {
            from: 0,
            next: None,
            keys: puts,
        });
        let target = other_slot(record.map_or(0, |held| held.slot));
        let mut resync = if page.from == 0 {
            Resync {
                version,
                slot: target,
                next: 0,
                keys: page.keys,
                stored: 0,
                pages: 0,
            }
        } else {
            match resync {
                Some(resync)
                    if resync.version == version
                        && resync.next == page.from
                        && resync.slot == target =>
                {
                    resync
                }
                _ => return Applied::OutOfStep,
            }
        };
        // A page that does not move forward would have the fetcher ask for it forever.
        if page.next.is_some_and(|next| next <= page.from) {
            return Applied::OutOfStep;
        }
        let ReceivedBundle {
            dto,
            rights,
            keys,
            body,
            ..
        } = received;
        let write = BucketWrite {
            slot: target,
            version,
            full: true,
            floor: 0,
        };
        // The issuers and the revoked list come with the first page only; later pages write keys alone.
        let stored = if page.from == 0 {
            self.store(write, dto, &rights, &body, now_ms)
        } else {
            self.store_api_keys(write, &[], &rights, &body)
        };
        if let Err(e) = stored {
            return Applied::Failed(e);
        }
        resync.stored = resync.stored.saturating_add(puts);
        resync.pages = resync.pages.saturating_add(1);
        if let Some(next) = page.next {
            resync.next = next;
            return Applied::PageStored(resync);
        }
        match self.switch_to(&resync, now_ms) {
            Err(e) => Applied::Failed(e),
            Ok(false) => Applied::OutOfStep,
            Ok(true) => {
                if page.from == 0 {
                    self.remember_keys(Rc::new(keys));
                }
                Applied::Stored
            }
        }
    }

    /// Writes the record that puts the resync's slot in force: version, floor and revoked generation all at its
    /// version. Only if the record still names an older version in the other slot (`false`: it moved, nothing
    /// was written).
    fn switch_to(&self, resync: &Resync, now_ms: u64) -> Result<bool, DeliveryError> {
        let refused = Cell::new(false);
        self.update_record(|held| {
            let moved =
                held.is_some_and(|held| held.version >= resync.version || held.slot == resync.slot);
            refused.set(moved);
            (!moved).then(|| DeliveryRecord {
                version: resync.version,
                floor: resync.version,
                fresh_at_ms: held.map_or(now_ms, |held| held.fresh_at_ms.max(now_ms)),
                revoked_generation: resync.version,
                slot: resync.slot,
            })
        })?;
        Ok(!refused.get())
    }

    /// Empties the buckets of the slot not in force that are dead (written below the record's floor): after a
    /// switch, the old version's keys. Buckets a newer resync has begun to write there are left alone. Returns
    /// how many buckets were emptied; a write refused is left for the next resync's floor to kill.
    pub fn clear_retired_slot(&self) -> usize {
        let Some(record) = self.record().0 else {
            return 0;
        };
        let slot = self.keys.slot(other_slot(record.slot));
        let Ok(empty) = Bucket::default().encode() else {
            return 0;
        };
        let mut cleared = 0usize;
        for bucket in 0..BUCKETS {
            let key = slot.bucket(bucket);
            let Some(stored) = self.shared.get(&key) else {
                continue;
            };
            let live =
                BucketView::new(&stored.bytes).is_some_and(|view| view.generation >= record.floor);
            if live || stored.bytes.len() <= empty.len() {
                continue;
            }
            if self.shared.set(&key, &empty, Some(stored.cas)).is_ok() {
                cleared = cleared.saturating_add(1);
            }
        }
        cleared
    }
}
