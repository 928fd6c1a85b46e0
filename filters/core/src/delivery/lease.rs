//! Host-wide coordination between workers through shared data: the fetch lease (one root fetches and long-polls
//! at a time), the ids it is held under, and the refetch throttle.

use crate::delivery::record::{parse_u64, LeaseRecord};
use crate::delivery::shared_data::SharedData;
use crate::delivery::store::SharedKeyMaterial;

/// Attempts at taking a root id before settling for the shared id 0.
const ROOT_ID_ATTEMPTS: usize = 64;

impl<S: SharedData> SharedKeyMaterial<S> {
    /// A number unique to this root among all workers of this host, to hold the fetch lease under.
    pub fn register_root(&self) -> u64 {
        for _ in 0..ROOT_ID_ATTEMPTS {
            let current = self.shared.get(&self.keys.root_sequence);
            let cas = current.as_ref().map(|value| value.cas);
            let last = current
                .and_then(|value| parse_u64(&value.bytes))
                .unwrap_or(0);
            let next = last.saturating_add(1);
            if self
                .shared
                .set(&self.keys.root_sequence, next.to_string().as_bytes(), cas)
                .is_ok()
            {
                return next;
            }
        }
        // Contention this heavy does not happen at configure time; a shared id only means two fetchers.
        0
    }

    /// Takes or renews the fetch lease until `until_ms`, unless another root holds it at `now_ms`. One root per
    /// host fetches (and long-polls) at a time.
    pub fn try_lease(&self, owner: u64, now_ms: u64, until_ms: u64) -> bool {
        let current = self.shared.get(&self.keys.lease);
        let cas = current.as_ref().map(|value| value.cas);
        let holder = current.and_then(|value| LeaseRecord::parse(&value.bytes));
        if holder.is_some_and(|lease| lease.until_ms > now_ms && lease.owner != owner) {
            return false;
        }
        let lease = LeaseRecord { until_ms, owner };
        self.shared
            .set(&self.keys.lease, lease.encode().as_bytes(), cas)
            .is_ok()
    }

    /// Gives the fetch lease up, if `owner` holds it, so that any root may take it on its next tick.
    pub fn release_lease(&self, owner: u64) {
        let Some(current) = self.shared.get(&self.keys.lease) else {
            return;
        };
        if LeaseRecord::parse(&current.bytes).is_some_and(|lease| lease.owner == owner) {
            let released = LeaseRecord { until_ms: 0, owner };
            // Losing this race means someone else took the lease meanwhile: nothing to give up.
            let _ = self.shared.set(
                &self.keys.lease,
                released.encode().as_bytes(),
                Some(current.cas),
            );
        }
    }

    /// Claims the host-wide right to ask the sidecar to refetch external keys now, if no worker of this host has
    /// asked within the last `every_ms`.
    pub fn try_refetch_slot(&self, now_ms: u64, every_ms: u64) -> bool {
        let last = self.shared.get(&self.keys.refetch_at);
        let cas = last.as_ref().map(|value| value.cas);
        if last
            .and_then(|value| parse_u64(&value.bytes))
            .is_some_and(|last| now_ms < last.saturating_add(every_ms))
        {
            return false;
        }
        self.shared
            .set(&self.keys.refetch_at, now_ms.to_string().as_bytes(), cas)
            .is_ok()
    }
}
