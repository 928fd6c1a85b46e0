//! The fetching side of one root: when to ask the sidecar, what to ask for, and what an answer means. The host
//! only sends the request this returns and hands back the answer.

use crate::config::SidecarConfig;
use crate::delivery::apply::{Applied, ReceivedBundle};
use crate::delivery::resync::Resync;
use crate::delivery::shared_data::SharedData;
use crate::delivery::store::SharedKeyMaterial;
use crate::delivery::stream::BodySource;
use crate::delivery::wire::{etag, PAGE_QUERY, VERSION_QUERY};
use crate::error::{DeliveryError, KeyError};
use crate::keyset::Skipped;

/// Tick period before the first bundle arrives: requests fail closed until then, so don't wait a full interval.
pub const STARTUP_TICK_MS: u64 = 200;

/// One refetch request per host at most this often; the sidecar throttles per issuer on top.
pub const REFETCH_EVERY_MS: u64 = 5_000;

/// One root's bundle fetching: its lease id, whether it is still starting, whether the next fetch must be full,
/// the paged resync in progress, and whether a slot retired by a switch is still to be emptied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFetcher {
    owner: u64,
    starting: bool,
    need_full: bool,
    resync: Option<Resync>,
    retired_slot_full: bool,
}

/// A bundle request to send: `GET path` to the sidecar cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Path and query (`?wait=N` for a long poll).
    pub path: String,
    /// `If-None-Match` value, when a version is held.
    pub if_none_match: Option<String>,
    /// How long the host waits for the answer.
    pub timeout_ms: u64,
}

/// What a bundle answer came to, for the host to log and count.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// `304`: what is held is current.
    NotModified,
    /// A page of a full resync is stored (not in force yet); the next one is asked for at once.
    PageStored {
        /// The version being stored.
        version: u64,
        /// Pages stored so far.
        pages: u64,
        /// API keys read so far.
        keys_read: u64,
        /// API keys in the whole set.
        keys_total: u64,
    },
    /// A page did not continue the resync in progress, or another root stored something meanwhile: nothing was
    /// switched, and the next fetch starts over from what shared data holds.
    OutOfStep,
    /// A new bundle is in shared data.
    Stored {
        /// Its version.
        version: u64,
        /// Whether it was a delta.
        delta: bool,
        /// API keys put.
        puts: usize,
        /// API keys deleted.
        deletes: usize,
        /// Signing keys left out, and why.
        skipped: Skipped,
    },
    /// Shared data already holds this version or a newer one.
    AlreadyHeld,
    /// A delta for another version than the one held; a full bundle is asked for next.
    DeltaMismatch,
    /// The body is not a valid bundle: the last good one is kept.
    Rejected(KeyError),
    /// A `200` without a body.
    NoBody,
    /// Shared data refused a write; a full bundle is asked for next.
    StoreFailed(DeliveryError),
    /// The sidecar answered with another status.
    HttpStatus(u16),
    /// No answer: the sidecar is unreachable or the call timed out.
    Unreachable,
}

impl FetchOutcome {
    /// Whether the host counts this as a rejected bundle (`bundle_rejected`).
    pub fn is_rejected_bundle(&self) -> bool {
        matches!(
            self,
            Self::Rejected(_) | Self::NoBody | Self::StoreFailed(_)
        )
    }

    /// Whether the host counts this as a failed fetch (`bundle_fetch_failures`).
    pub fn is_failed_fetch(&self) -> bool {
        matches!(self, Self::HttpStatus(_) | Self::Unreachable)
    }
}

impl BundleFetcher {
    /// A root's fetcher, holding the lease as `owner` (see [`SharedKeyMaterial::register_root`]).
    pub fn new(owner: u64) -> Self {
        Self {
            owner,
            starting: true,
            need_full: false,
            resync: None,
            retired_slot_full: false,
        }
    }

    /// The paged resync in progress, if any.
    pub fn resync(&self) -> Option<&Resync> {
        self.resync.as_ref()
    }

    /// Called on each tick: after a full resync switched slots, empties the old slot's buckets (a tick later, so
    /// that no request is still between reading the record and reading a bucket). Returns how many were emptied.
    pub fn on_tick<S: SharedData>(&mut self, material: &SharedKeyMaterial<S>) -> usize {
        if !self.retired_slot_full || self.resync.is_some() {
            return 0;
        }
        self.retired_slot_full = false;
        material.clear_retired_slot()
    }

    /// The tick period to start with: short, until the first bundle is in shared data.
    pub fn startup_tick_ms(sidecar: &SidecarConfig) -> u64 {
        sidecar.refresh_interval_ms.min(STARTUP_TICK_MS)
    }

    /// Called on each tick: the steady tick period once the first bundle is in shared data (once), else `None`.
    pub fn leave_startup<S: SharedData>(
        &mut self,
        material: &SharedKeyMaterial<S>,
        sidecar: &SidecarConfig,
    ) -> Option<u64> {
        if self.starting && material.shared_version().is_some() {
            self.starting = false;
            return Some(sidecar.refresh_interval_ms);
        }
        None
    }

    /// The request to send now, if this root holds (or could take) the host-wide fetch lease at `now_ms`. The
    /// caller sends it, or calls [`BundleFetcher::dispatch_refused`] if the host would not.
    pub fn next_request<S: SharedData>(
        &self,
        material: &SharedKeyMaterial<S>,
        sidecar: &SidecarConfig,
        now_ms: u64,
    ) -> Option<FetchRequest> {
        let have = if self.need_full || self.resync.is_some() {
            None
        } else {
            material.shared_version()
        };
        // Long-poll only once something is held and no resync is under way: the first bundle, and the next page,
        // should come back at once.
        let wait_secs = if have.is_some() {
            sidecar.long_poll_secs
        } else {
            0
        };
        let timeout_ms = sidecar
            .timeout_ms
            .saturating_add(wait_secs.saturating_mul(1000));
        let tick_ms = if self.starting {
            STARTUP_TICK_MS
        } else {
            sidecar.refresh_interval_ms
        };
        // Held for the whole call, and a little less than one tick beyond it, so another worker takes over
        // promptly if this one stops asking.
        let until_ms = now_ms
            .saturating_add(timeout_ms)
            .saturating_add(tick_ms.saturating_mul(9) / 10);
        if !material.try_lease(self.owner, now_ms, until_ms) {
            return None;
        }
        // `page=0` asks for a full bundle in pages: the first page where a full bundle would be due.
        let path = match &self.resync {
            Some(resync) => format!(
                "{}?{PAGE_QUERY}={}&{VERSION_QUERY}={}",
                sidecar.path,
                resync.next(),
                resync.version()
            ),
            None if wait_secs > 0 => format!("{}?wait={wait_secs}&{PAGE_QUERY}=0", sidecar.path),
            None => format!("{}?{PAGE_QUERY}=0", sidecar.path),
        };
        Some(FetchRequest {
            path,
            if_none_match: have.map(etag),
            timeout_ms,
        })
    }

    /// The host would not send the request: nothing is in flight, so give the lease back and let any worker try
    /// on its next tick instead of holding it for a whole fetch timeout (at startup this root may be one the host
    /// does not yet let dispatch).
    pub fn dispatch_refused<S: SharedData>(&self, material: &SharedKeyMaterial<S>) {
        material.release_lease(self.owner);
    }

    /// Handles the answer to a bundle request at `now_ms`: `status` is `None` when there was no answer. Returns
    /// what happened, and whether to fetch again at once (something changed, or a full bundle is needed).
    pub fn answered<S: SharedData>(
        &mut self,
        material: &SharedKeyMaterial<S>,
        status: Option<u16>,
        body: Option<&[u8]>,
        now_ms: u64,
    ) -> (FetchOutcome, bool) {
        self.answered_from(material, status, body, now_ms)
    }

    /// [`BundleFetcher::answered`] with the body left with the host, read in chunks: the fetching worker's memory
    /// does not grow with the bundle.
    pub fn answered_from<S: SharedData, B: BodySource>(
        &mut self,
        material: &SharedKeyMaterial<S>,
        status: Option<u16>,
        body: Option<B>,
        now_ms: u64,
    ) -> (FetchOutcome, bool) {
        let body_handled = matches!(status, Some(200)) && body.is_some();
        // Whatever the answer, the resync in progress goes with it: the page answered is applied in its context,
        // and a failed page ends it (the next attempt starts from the first page).
        let resync = self.resync.take();
        let outcome = match (status, body) {
            (Some(200), Some(body)) => self.accept(material, body, resync, now_ms),
            (Some(200), None) => FetchOutcome::NoBody,
            (Some(304), _) => FetchOutcome::NotModified,
            (Some(status), _) => FetchOutcome::HttpStatus(status),
            (None, _) => FetchOutcome::Unreachable,
        };
        // Fresh means the sidecar confirmed that shared data holds what it has (an apply records that itself). A
        // damaged or unusable answer does not: a sidecar serving garbage must not keep old material fresh forever.
        if matches!(
            outcome,
            FetchOutcome::NotModified | FetchOutcome::AlreadyHeld
        ) {
            // A lost freshness update only makes the material look older than it is; the next answer retries.
            let _ = material.mark_fresh(now_ms);
        }
        let again = body_handled
            && (matches!(
                outcome,
                FetchOutcome::Stored { .. } | FetchOutcome::PageStored { .. }
            ) || self.need_full);
        (outcome, again)
    }

    fn accept<S: SharedData, B: BodySource>(
        &mut self,
        material: &SharedKeyMaterial<S>,
        body: B,
        resync: Option<Resync>,
        now_ms: u64,
    ) -> FetchOutcome {
        let received = match ReceivedBundle::read(body) {
            Ok(received) => received,
            // Keep the last good bundle: a broken response must not take keys away.
            Err(e) => return FetchOutcome::Rejected(e),
        };
        let version = received.dto.version;
        let delta = received.dto.since.is_some();
        let mut puts = received.puts;
        let deletes = received.dto.api_keys.delete.len();
        let skipped = received.skipped.clone();
        let paged_before = resync.as_ref().map_or(0, |resync| resync.progress().0);
        match material.apply_continuing(received, resync, now_ms) {
            Applied::Stored => {
                self.need_full = false;
                if !delta {
                    self.retired_slot_full = true;
                    puts = puts.saturating_add(usize::try_from(paged_before).unwrap_or(usize::MAX));
                }
                FetchOutcome::Stored {
                    version,
                    delta,
                    puts,
                    deletes,
                    skipped,
                }
            }
            Applied::PageStored(resync) => {
                let (keys_read, keys_total) = resync.progress();
                let pages = resync.pages();
                self.resync = Some(resync);
                FetchOutcome::PageStored {
                    version,
                    pages,
                    keys_read,
                    keys_total,
                }
            }
            Applied::OutOfStep => FetchOutcome::OutOfStep,
            Applied::Stale => {
                // The record names this version or a newer one, so a full bundle at it is held in full.
                if !delta {
                    self.need_full = false;
                }
                FetchOutcome::AlreadyHeld
            }
            Applied::Mismatch => {
                self.need_full = true;
                FetchOutcome::DeltaMismatch
            }
            Applied::Failed(e) => {
                self.need_full = true;
                FetchOutcome::StoreFailed(e)
            }
        }
    }
}
