//! The key material one Node process holds: bundle responses applied, API keys and revocations looked up.
//!
//! This module is the only place that knows how a bundle response changes what is held. Its interface is
//! deliberately small — [`HeldBundle::apply`], [`HeldBundle::mark_fresh`], [`HeldBundle::held_version`],
//! [`HeldBundle::age_ms`], [`HeldBundle::keys`] and the [`Directory`] lookups — so that it can be replaced by a
//! delivery implementation shared with the Envoy filter without touching the fetch loop or the bindings.
//!
//! The rules are the filter's (`filters/authn/src/store.rs`): a response older than or equal to what is held is
//! ignored; a delta must start from the version held, otherwise a full bundle is asked for; a full bundle replaces
//! every API key and the whole revoked list (in one process that is what the filter's generation floor achieves
//! in shared data); revocations are kept until [`REVOKED_KEEP_SECS`] past their token's `exp`; freshness is the
//! last time the sidecar answered 200 or 304.

use keymesh_core::bundle::{ApiKeyDto, BundleDto};
use keymesh_core::{Directory, KeySet};
use std::collections::HashMap;
use std::rc::Rc;

/// Revocations are kept this long past their token's `exp`: longer than any configuration's `leeway_secs`
/// (at most 300), as in the filter.
pub const REVOKED_KEEP_SECS: i64 = 600;

/// What became of a bundle response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Now held.
    Stored {
        /// The version now held.
        version: u64,
        /// Whether it was a delta (else a full bundle).
        delta: bool,
        /// Keys left out of the bundle, with why (one malformed key does not reject the others).
        skipped: Vec<String>,
    },
    /// This version or a newer one is held already.
    Stale,
    /// A delta for a version other than the one held: the next request must ask for a full bundle.
    Mismatch,
    /// The body is not a valid bundle; the last good one is kept.
    Rejected(String),
}

/// Everything this process holds from the sidecar.
#[derive(Debug, Default)]
pub struct HeldBundle {
    keys: Option<Rc<KeySet>>,
    api_keys: HashMap<String, ApiKeyDto>,
    /// Revoked `jti` → the token's `exp`.
    revoked: HashMap<String, i64>,
    /// When the sidecar last answered 200 or 304 (ms since the epoch), once a bundle is held.
    fresh_at_ms: Option<u64>,
    /// The last delta did not fit: ask for a full bundle.
    need_full: bool,
}

impl HeldBundle {
    /// Nothing held yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The version to name in `If-None-Match`: `None` before the first bundle, and after a delta that did not
    /// fit (the sidecar then answers with a full bundle).
    pub fn held_version(&self) -> Option<u64> {
        if self.need_full {
            None
        } else {
            self.version()
        }
    }

    /// The version held, if any.
    pub fn version(&self) -> Option<u64> {
        self.keys.as_ref().map(|keys| keys.version())
    }

    /// Applies the body of a `200` bundle response received at `now_ms`.
    pub fn apply(&mut self, body: &[u8], now_ms: u64) -> Applied {
        let parsed = serde_json::from_slice::<BundleDto>(body)
            .map_err(|e| e.to_string())
            .and_then(|dto| {
                KeySet::from_bundle(&dto)
                    .map(|keys| (dto, keys))
                    .map_err(|e| e.to_string())
            });
        let (dto, (keys, skipped)) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => return Applied::Rejected(e),
        };
        let held = self.version();
        if held.is_some_and(|held| held >= dto.version) {
            return Applied::Stale;
        }
        let delta = dto.since.is_some();
        if delta && dto.since != held {
            self.need_full = true;
            return Applied::Mismatch;
        }
        if !delta {
            self.api_keys.clear();
            self.revoked.clear();
        }
        for hash in &dto.api_keys.delete {
            self.api_keys.remove(hash);
        }
        for key in dto.api_keys.put {
            self.api_keys.insert(key.hash.clone(), key);
        }
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        for token in dto.revoked_tokens {
            self.revoked.insert(token.jti, token.exp);
        }
        self.revoked
            .retain(|_, exp| exp.saturating_add(REVOKED_KEEP_SECS) > now);
        self.keys = Some(Rc::new(keys));
        self.need_full = false;
        self.mark_fresh(now_ms);
        let skipped = skipped.iter().map(ToString::to_string).collect();
        Applied::Stored {
            version: dto.version,
            delta,
            skipped,
        }
    }

    /// Records that the sidecar answered (200 or 304) at `now_ms`. Before the first bundle there is nothing to be
    /// fresh: the first [`HeldBundle::apply`] records the time.
    pub fn mark_fresh(&mut self, now_ms: u64) {
        if self.keys.is_some() {
            self.fresh_at_ms = Some(self.fresh_at_ms.unwrap_or(0).max(now_ms));
        }
    }

    /// Milliseconds since the sidecar last answered; 0 before any bundle (there are no keys to be stale then).
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        self.fresh_at_ms
            .map_or(0, |fresh| now_ms.saturating_sub(fresh))
    }

    /// The signing keys, once a bundle is held.
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_deref()
    }

    /// How many API keys and revocations are held (for status and tests).
    pub fn counts(&self) -> (usize, usize) {
        (self.api_keys.len(), self.revoked.len())
    }
}

impl Directory for HeldBundle {
    fn api_key(&self, hash: &str) -> Option<ApiKeyDto> {
        self.api_keys.get(hash).cloned()
    }

    fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn key(hash: &str) -> serde_json::Value {
        json!({"hash": hash, "id": format!("ak_{hash}"), "owner": "o", "resources": ["https://orders.local"]})
    }

    fn body(value: serde_json::Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    const NOW_MS: u64 = 1_800_000_000_000;

    #[test]
    fn deltas_apply_in_order_and_a_gap_asks_for_a_full_bundle() {
        let mut held = HeldBundle::new();
        assert_eq!(held.held_version(), None);
        let full = body(
            json!({"version": 3, "api_keys": {"put": [key("a"), key("b")]},
            "revoked_tokens": [{"jti": "j1", "exp": 1_800_000_100}]}),
        );
        assert!(matches!(
            held.apply(&full, NOW_MS),
            Applied::Stored {
                version: 3,
                delta: false,
                ..
            }
        ));
        assert_eq!(held.held_version(), Some(3));
        let delta = body(
            json!({"version": 4, "since": 3, "api_keys": {"put": [key("c")], "delete": ["a"]},
            "revoked_tokens": [{"jti": "j2", "exp": 1_800_000_100}]}),
        );
        assert!(matches!(
            held.apply(&delta, NOW_MS),
            Applied::Stored {
                version: 4,
                delta: true,
                ..
            }
        ));
        assert!(held.api_key("a").is_none());
        assert!(held.api_key("b").is_some() && held.api_key("c").is_some());
        assert!(held.is_revoked("j1") && held.is_revoked("j2"));
        // Replayed or older responses change nothing.
        assert_eq!(held.apply(&delta, NOW_MS), Applied::Stale);
        assert_eq!(held.apply(&full, NOW_MS), Applied::Stale);
        // A delta from a version not held: ask for everything.
        let gap = body(json!({"version": 9, "since": 7, "api_keys": {"put": [key("z")]}}));
        assert_eq!(held.apply(&gap, NOW_MS), Applied::Mismatch);
        assert!(held.api_key("z").is_none());
        assert_eq!(held.held_version(), None, "a full bundle must be asked for");
        assert_eq!(
            held.version(),
            Some(4),
            "the keys held stay in force meanwhile"
        );
        // The full bundle replaces API keys and revocations deleted while out of the change log's window.
        let resync = body(json!({"version": 9, "api_keys": {"put": [key("c")]}}));
        assert!(matches!(
            held.apply(&resync, NOW_MS),
            Applied::Stored { version: 9, .. }
        ));
        assert!(held.api_key("b").is_none() && held.api_key("c").is_some());
        assert!(!held.is_revoked("j1"));
        assert_eq!(held.held_version(), Some(9));
    }

    #[test]
    fn a_broken_response_keeps_the_last_good_bundle() {
        let mut held = HeldBundle::new();
        held.apply(
            &body(json!({"version": 1, "api_keys": {"put": [key("a")]}})),
            NOW_MS,
        );
        for broken in [
            &b"not json"[..],
            br#"{"version": "two"}"#,
            br#"{"version": 2, "issuers": [{"issuer": 1}]}"#,
        ] {
            assert!(
                matches!(held.apply(broken, NOW_MS), Applied::Rejected(_)),
                "{broken:?}"
            );
        }
        assert_eq!(held.version(), Some(1));
        assert!(held.api_key("a").is_some());
    }

    #[test]
    fn revocations_are_pruned_long_after_expiry_and_age_counts_from_the_last_answer() {
        let mut held = HeldBundle::new();
        assert_eq!(held.age_ms(NOW_MS), 0);
        held.mark_fresh(NOW_MS);
        assert_eq!(
            held.age_ms(NOW_MS + 5_000),
            0,
            "nothing held, nothing stale"
        );
        let now = 1_800_000_000;
        held.apply(
            &body(json!({"version": 1, "revoked_tokens": [
                {"jti": "old", "exp": now - REVOKED_KEEP_SECS - 1}, {"jti": "recent", "exp": now - 10}]})),
            NOW_MS,
        );
        assert!(!held.is_revoked("old") && held.is_revoked("recent"));
        assert_eq!(held.age_ms(NOW_MS + 7_000), 7_000);
        held.mark_fresh(NOW_MS + 7_000);
        assert_eq!(held.age_ms(NOW_MS + 8_000), 1_000);
        // A late answer never moves freshness backwards.
        held.mark_fresh(NOW_MS);
        assert_eq!(held.age_ms(NOW_MS + 8_000), 1_000);
    }
}
