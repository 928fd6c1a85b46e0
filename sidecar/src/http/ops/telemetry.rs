//! What the sidecar knows about its own freshness and the proxies it serves: for each proxy (named by the
//! `x-keymesh-proxy` header the filters send, their Envoy node id) the bundle version it held at its last request,
//! when that was and whether it was a long poll; and counters of bundle answers and issued tokens. Read by
//! `GET /v1/status` and `GET /metrics`.
//!
//! In memory and per replica: a proxy polls one replica at a time, and Prometheus scrapes each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A proxy not seen for this long is forgotten.
pub const PROXY_TTL_SECS: u64 = 600;
/// At most this many proxies are tracked; more are not recorded (the header is caller-controlled).
const MAX_PROXIES: usize = 10_000;
/// Longest proxy id recorded.
const MAX_PROXY_ID_LEN: usize = 256;

/// How a bundle request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleAnswer {
    /// `200` with every key, or the first page of them (a full resync begins).
    Full,
    /// `200` with a page after the first of a paged full resync.
    Page,
    /// `200` with the changes since the caller's version.
    Delta,
    /// `304`.
    NotModified,
}

impl BundleAnswer {
    /// The `kind` label of `keymesh_bundle_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Page => "page",
            Self::Delta => "delta",
            Self::NotModified => "not_modified",
        }
    }
}

/// One proxy as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySeen {
    /// The bundle version it held (0 if it held none).
    pub version: u64,
    /// When it last asked (seconds since the Unix epoch).
    pub last_seen: u64,
    /// Whether that request was a long poll (`wait` > 0).
    pub long_poll: bool,
}

/// Counters and the proxy table. Shared by every request of one sidecar.
#[derive(Debug, Default)]
pub struct Telemetry {
    proxies: Mutex<HashMap<String, ProxySeen>>,
    full: AtomicU64,
    delta: AtomicU64,
    not_modified: AtomicU64,
    pages: AtomicU64,
    tokens_issued: AtomicU64,
}

impl Telemetry {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a bundle request from proxy `id` holding `version`. Ids that are empty, too long or not visible
    /// ASCII are ignored; returns whether it was recorded.
    pub fn proxy_polled(&self, id: &str, seen: ProxySeen) -> bool {
        if id.is_empty() || id.len() > MAX_PROXY_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic())
        {
            return false;
        }
        // A poisoned lock only loses bookkeeping, never a request.
        let Ok(mut proxies) = self.proxies.lock() else {
            return false;
        };
        if proxies.len() >= MAX_PROXIES && !proxies.contains_key(id) {
            proxies.retain(|_, p| !expired(p, seen.last_seen));
            if proxies.len() >= MAX_PROXIES {
                return false;
            }
        }
        proxies.insert(id.to_owned(), seen);
        true
    }

    /// The proxies seen within [`PROXY_TTL_SECS`] of `now`, by id; forgets the others.
    pub fn proxies(&self, now: u64) -> Vec<(String, ProxySeen)> {
        let Ok(mut proxies) = self.proxies.lock() else {
            return Vec::new();
        };
        proxies.retain(|_, p| !expired(p, now));
        let mut listed: Vec<(String, ProxySeen)> =
            proxies.iter().map(|(id, p)| (id.clone(), *p)).collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        listed
    }

    /// Counts a bundle answer.
    pub fn bundle_answered(&self, answer: BundleAnswer) {
        let counter = match answer {
            BundleAnswer::Full => &self.full,
            BundleAnswer::Delta => &self.delta,
            BundleAnswer::NotModified => &self.not_modified,
            BundleAnswer::Page => &self.pages,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// How many bundle requests were answered this way.
    pub fn bundle_answers(&self, answer: BundleAnswer) -> u64 {
        match answer {
            BundleAnswer::Full => &self.full,
            BundleAnswer::Delta => &self.delta,
            BundleAnswer::NotModified => &self.not_modified,
            BundleAnswer::Page => &self.pages,
        }
        .load(Ordering::Relaxed)
    }

    /// Counts an issued access token.
    pub fn token_issued(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
    }

    /// How many access tokens this sidecar issued.
    pub fn tokens_issued(&self) -> u64 {
        self.tokens_issued.load(Ordering::Relaxed)
    }
}

fn expired(proxy: &ProxySeen, now: u64) -> bool {
    now.saturating_sub(proxy.last_seen) >= PROXY_TTL_SECS
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn seen(version: u64, last_seen: u64) -> ProxySeen {
        ProxySeen {
            version,
            last_seen,
            long_poll: true,
        }
    }

    #[test]
    fn proxies_are_kept_by_id_and_forgotten_after_ten_minutes() {
        let telemetry = Telemetry::new();
        assert!(telemetry.proxy_polled("b", seen(1, 100)));
        assert!(telemetry.proxy_polled("a", seen(2, 100)));
        assert!(telemetry.proxy_polled("b", seen(3, 400)));
        let ids: Vec<(String, u64)> = telemetry
            .proxies(400)
            .into_iter()
            .map(|(id, p)| (id, p.version))
            .collect();
        assert_eq!(ids, [("a".to_owned(), 2), ("b".to_owned(), 3)]);
        assert_eq!(
            telemetry.proxies(100 + PROXY_TTL_SECS).len(),
            1,
            "a is forgotten"
        );
        assert!(telemetry.proxies(400 + PROXY_TTL_SECS).is_empty());
    }

    #[test]
    fn odd_ids_are_not_recorded() {
        let telemetry = Telemetry::new();
        for id in [
            "",
            "with space",
            "new\nline",
            "é",
            &"x".repeat(MAX_PROXY_ID_LEN + 1),
        ] {
            assert!(!telemetry.proxy_polled(id, seen(1, 1)), "{id:?}");
        }
        assert!(telemetry.proxy_polled(
            "sidecar~10.0.0.1~orders-7d9.default~default.svc.cluster.local",
            seen(1, 1)
        ));
    }

    #[test]
    fn the_table_is_bounded() {
        let telemetry = Telemetry::new();
        for i in 0..MAX_PROXIES {
            assert!(telemetry.proxy_polled(&format!("p{i}"), seen(1, 0)));
        }
        assert!(!telemetry.proxy_polled("one-more", seen(1, 10)), "full");
        assert!(
            telemetry.proxy_polled("p0", seen(2, 100)),
            "known ids still update"
        );
        // Once the old entries expire there is room again.
        assert!(telemetry.proxy_polled("one-more", seen(1, PROXY_TTL_SECS + 20)));
        assert_eq!(telemetry.proxies(PROXY_TTL_SECS + 20).len(), 2);
    }

    #[test]
    fn counters() {
        let telemetry = Telemetry::new();
        telemetry.bundle_answered(BundleAnswer::Full);
        telemetry.bundle_answered(BundleAnswer::NotModified);
        telemetry.bundle_answered(BundleAnswer::NotModified);
        telemetry.token_issued();
        assert_eq!(telemetry.bundle_answers(BundleAnswer::Full), 1);
        assert_eq!(telemetry.bundle_answers(BundleAnswer::Delta), 0);
        assert_eq!(telemetry.bundle_answers(BundleAnswer::NotModified), 2);
        assert_eq!(telemetry.tokens_issued(), 1);
    }
}
