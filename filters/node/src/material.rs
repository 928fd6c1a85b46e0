//! The key material one Node process holds, and its fetch loop's decisions: core's delivery module
//! (`keymesh_core::delivery`), the code the Envoy filter runs, over shared data held in this process's memory.
//!
//! A Node process is a host with one worker: [`InMemorySharedData`] stands in for Envoy's shared data, this
//! process registers as the one root and always holds the fetch lease, and [`BundleFetcher`] decides what to ask
//! the sidecar and what an answer means. Applying a bundle (deltas, the generation floor of a full resync,
//! revoked-list pruning, freshness) is therefore exactly the filter's; nothing of it is written here.
//!
//! The one difference is scheduling, which is the host's: a long poll that ran its course and came back `304`
//! is renewed at once (see [`LONG_POLL_REARM_MS`]) rather than after a tick.

use keymesh_core::config::SidecarConfig;
use keymesh_core::delivery::{
    BundleFetcher, FetchOutcome, FetchRequest, InMemorySharedData, MaterialSnapshot,
    SharedKeyMaterial,
};

/// A `304` that took at least this long answered a long poll that ran its course: poll again at once instead
/// of waiting a tick, so that no change waits for the gap between two polls. A quicker `304` (plain polling, or
/// a sidecar shutting down) waits for the tick, as in the filter.
pub const LONG_POLL_REARM_MS: u64 = 1_000;

/// Everything this process holds from the sidecar, and where its fetch loop stands.
#[derive(Debug)]
pub struct Delivery {
    material: SharedKeyMaterial<InMemorySharedData>,
    fetcher: BundleFetcher,
    /// The wait between two fetches when the last answer does not ask to go again at once.
    tick_ms: u64,
    /// The request in flight is a long poll.
    long_poll_sent: bool,
}

impl Delivery {
    /// Nothing held yet, for the sidecar of `sidecar`.
    pub fn new(sidecar: &SidecarConfig) -> Self {
        let material =
            SharedKeyMaterial::new(InMemorySharedData::new(), &sidecar.cluster, &sidecar.path);
        let fetcher = BundleFetcher::new(material.register_root());
        Self {
            material,
            fetcher,
            tick_ms: BundleFetcher::startup_tick_ms(sidecar),
            long_poll_sent: false,
        }
    }

    /// The bundle request to send at `now_ms`. `None` would mean another root holds the fetch lease, which
    /// cannot happen with one root per process; the loop then waits a tick.
    pub fn next_request(&mut self, sidecar: &SidecarConfig, now_ms: u64) -> Option<FetchRequest> {
        // After a full resync switched slots, the old one is emptied before the next fetch (one event loop: no
        // request is between reading the record and a bucket).
        self.fetcher.on_tick(&self.material);
        let request = self.fetcher.next_request(&self.material, sidecar, now_ms)?;
        self.long_poll_sent = request.path.contains("?wait=");
        Some(request)
    }

    /// Handles the answer to the request sent at `sent_ms` (`status` `None`: no answer), at `now_ms`. Returns
    /// what happened and whether to fetch again at once.
    pub fn answered(
        &mut self,
        sidecar: &SidecarConfig,
        status: Option<u16>,
        body: &[u8],
        sent_ms: u64,
        now_ms: u64,
    ) -> (FetchOutcome, bool) {
        let body = matches!(status, Some(200)).then_some(body);
        let (outcome, again) = self.fetcher.answered(&self.material, status, body, now_ms);
        if let Some(tick_ms) = self.fetcher.leave_startup(&self.material, sidecar) {
            self.tick_ms = tick_ms;
        }
        let long_poll_ran = self.long_poll_sent
            && outcome == FetchOutcome::NotModified
            && now_ms.saturating_sub(sent_ms) >= LONG_POLL_REARM_MS;
        (outcome, again || long_poll_ran)
    }

    /// The wait before the next fetch when the last answer does not ask to go again at once: short until the
    /// first bundle is held, then `refresh_interval_ms`.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// The key material for one request.
    pub fn snapshot(&self) -> MaterialSnapshot<'_, InMemorySharedData> {
        self.material.snapshot()
    }

    /// The bundle version held, if any.
    pub fn version(&self) -> Option<u64> {
        self.material.shared_version()
    }

    /// Milliseconds since the sidecar last confirmed what is held; 0 before any bundle.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        self.material.age_ms(now_ms)
    }

    /// Claims the right to ask the sidecar to refetch external keys at `now_ms`, at most once per `every_ms`.
    pub fn try_refetch_slot(&self, now_ms: u64, every_ms: u64) -> bool {
        self.material.try_refetch_slot(now_ms, every_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use keymesh_core::FilterConfig;

    fn sidecar() -> SidecarConfig {
        let config = FilterConfig::parse(
            br#"{"sidecar":{"cluster":"k","long_poll_secs":20,"timeout_ms":1500,"refresh_interval_ms":700},
                "routes":[{"prefix":"/","audience":"https://orders.local"}]}"#,
        )
        .unwrap();
        config.sidecar
    }

    #[test]
    fn a_long_poll_that_ran_its_course_is_renewed_at_once_and_nothing_else_is() {
        let sidecar = sidecar();
        let mut delivery = Delivery::new(&sidecar);
        assert_eq!(delivery.tick_ms(), 200, "the filter's startup tick");
        let first = delivery.next_request(&sidecar, 1_000).unwrap();
        assert_eq!(first.path, "/v1/bundle?page=0");
        let (outcome, again) =
            delivery.answered(&sidecar, Some(200), br#"{"version":3}"#, 1_000, 1_100);
        assert!(matches!(outcome, FetchOutcome::Stored { version: 3, .. }) && again);
        assert_eq!(delivery.tick_ms(), 700);
        // A plain poll's 304 (no long poll before a bundle is held) never re-arms: here a long poll was sent.
        let poll = delivery.next_request(&sidecar, 2_000).unwrap();
        assert_eq!(poll.path, "/v1/bundle?wait=20&page=0");
        let (outcome, again) = delivery.answered(&sidecar, Some(304), b"", 2_000, 22_000);
        assert_eq!((outcome, again), (FetchOutcome::NotModified, true));
        delivery.next_request(&sidecar, 22_000).unwrap();
        let (_, again) = delivery.answered(&sidecar, Some(304), b"", 22_000, 22_000 + 999);
        assert!(!again, "a quick 304 waits for the tick");
        delivery.next_request(&sidecar, 23_000).unwrap();
        let (outcome, again) = delivery.answered(&sidecar, None, b"", 23_000, 48_000);
        assert_eq!((outcome, again), (FetchOutcome::Unreachable, false));
        assert_eq!(delivery.age_ms(48_000), 48_000 - 22_999);
    }
}
