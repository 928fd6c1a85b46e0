//! The delivery protocol, filter side, against an in-memory shared data: several `SharedKeyMaterial`s over one
//! store are several workers of one host.

use super::apply::{merge_revoked, REVOKED_KEEP_SECS};
use super::*;
use crate::config::SidecarConfig;
use crate::delivery::wire::RevokedTokenDto;
use crate::error::{DeliveryError, KeyError};
use crate::policy::Directory;
use serde_json::{json, Value};
use std::cell::Cell;

const NOW_MS: u64 = 1_800_000_000_000;
const RECORD_KEY: &str = "keymesh.authn.v1/sidecar/v1/bundle/state";

type Worker = SharedKeyMaterial<InMemorySharedData>;

fn worker(shared: &InMemorySharedData) -> Worker {
    SharedKeyMaterial::new(shared.clone(), "sidecar", "/v1/bundle")
}

fn api_key(hash: &str) -> Value {
    json!({"hash": hash, "id": format!("ak_{hash}"), "owner": "alice", "scopes": ["orders:read"]})
}

fn revoked(jti: &str, exp_secs: i64) -> Value {
    json!({"jti": jti, "exp": exp_secs})
}

fn now_secs() -> i64 {
    i64::try_from(NOW_MS / 1000).unwrap()
}

fn full(version: u64, keys: &[&str], revoked_tokens: &[Value]) -> Vec<u8> {
    let keys: Vec<Value> = keys.iter().map(|hash| api_key(hash)).collect();
    serde_json::to_vec(&json!({
        "version": version,
        "issuers": [],
        "api_keys": {"put": keys},
        "revoked_tokens": revoked_tokens,
    }))
    .unwrap()
}

fn delta(
    since: u64,
    version: u64,
    put: &[&str],
    delete: &[&str],
    revoked_tokens: &[Value],
) -> Vec<u8> {
    let put: Vec<Value> = put.iter().map(|hash| api_key(hash)).collect();
    serde_json::to_vec(&json!({
        "version": version,
        "since": since,
        "issuers": [],
        "api_keys": {"put": put, "delete": delete},
        "revoked_tokens": revoked_tokens,
    }))
    .unwrap()
}

fn apply<S: SharedData>(worker: &SharedKeyMaterial<S>, body: &[u8], now_ms: u64) -> Applied {
    worker.apply(ReceivedBundle::parse(body).unwrap(), now_ms)
}

fn stored() -> Applied {
    Applied::Stored
}

fn has_key<S: SharedData>(worker: &SharedKeyMaterial<S>, hash: &str) -> bool {
    worker.snapshot().api_key(hash).is_some()
}

fn sidecar() -> SidecarConfig {
    SidecarConfig {
        cluster: "sidecar".into(),
        authority: "keymesh-sidecar".into(),
        path: "/v1/bundle".into(),
        refresh_interval_ms: 1000,
        timeout_ms: 2000,
        long_poll_secs: 25,
        max_age_secs: 600,
        refetch_path: "/v1/issuers/refetch".into(),
    }
}

#[test]
fn a_full_bundle_reaches_every_worker() {
    let shared = InMemorySharedData::new();
    let (fetcher, other) = (worker(&shared), worker(&shared));
    assert!(other.snapshot().keys().is_none());
    let bundle = keymesh_testkit::fixture().bundle(1);
    assert_eq!(apply(&fetcher, bundle.as_bytes(), NOW_MS), stored());

    let snapshot = other.snapshot();
    let keys = snapshot.keys().expect("keys parsed from shared data");
    assert_eq!(keys.version(), 1);
    assert!(!keys.is_empty());
    assert!(snapshot.reload_error().is_none());
    let orders = keymesh_testkit::key_hash(keymesh_testkit::KEY_ORDERS);
    assert_eq!(snapshot.api_key(&orders).unwrap().hash, orders);
    assert!(snapshot.is_revoked(keymesh_testkit::REVOKED_JTI));
    assert!(!snapshot.is_revoked("some-other-jti"));
    assert_eq!(other.shared_version(), Some(1));
    assert_eq!(
        other.record().0,
        Some(DeliveryRecord {
            version: 1,
            floor: 1,
            fresh_at_ms: NOW_MS,
            revoked_generation: 1,
        })
    );
}

#[test]
fn a_delta_puts_and_deletes_api_keys_and_adds_revocations() {
    let shared = InMemorySharedData::new();
    let (fetcher, other) = (worker(&shared), worker(&shared));
    let exp = now_secs() + 3600;
    apply(
        &fetcher,
        &full(1, &["k1", "k2"], &[revoked("r1", exp)]),
        NOW_MS,
    );
    // The other worker reads the revoked list at generation 1 and keeps its copy.
    assert!(other.snapshot().is_revoked("r1"));
    assert!(!other.snapshot().is_revoked("r2"));

    let changes = delta(1, 2, &["k3"], &["k1"], &[revoked("r2", exp)]);
    assert_eq!(apply(&fetcher, &changes, NOW_MS), stored());
    assert!(!has_key(&other, "k1"));
    assert!(has_key(&other, "k2"));
    assert!(has_key(&other, "k3"));
    let snapshot = other.snapshot();
    assert!(snapshot.is_revoked("r1"), "a delta adds to the list held");
    assert!(
        snapshot.is_revoked("r2"),
        "the worker re-read the list when it moved"
    );
    let record = other.record().0.unwrap();
    assert_eq!(
        (record.version, record.floor, record.revoked_generation),
        (2, 1, 2)
    );

    // A delta that revokes nothing leaves the list (and its generation) alone.
    assert_eq!(
        apply(&fetcher, &delta(2, 3, &[], &["k2"], &[]), NOW_MS),
        stored()
    );
    assert_eq!(other.record().0.unwrap().revoked_generation, 2);
    assert!(!has_key(&other, "k2"));
    assert!(other.snapshot().is_revoked("r2"));
}

#[test]
fn a_resync_raises_the_floor_over_keys_deleted_out_of_the_window() {
    let shared = InMemorySharedData::new();
    let fetcher = worker(&shared);
    apply(&fetcher, &full(1, &["kept", "gone"], &[]), NOW_MS);
    // Version 5 comes as a full bundle (this host missed the deltas): `gone` was deleted meanwhile, its entry is
    // still in shared data (nothing can remove it), written by generation 1.
    assert_eq!(apply(&fetcher, &full(5, &["kept"], &[]), NOW_MS), stored());
    assert!(shared
        .get("keymesh.authn.v1/sidecar/v1/bundle/ak/gone")
        .is_some_and(|entry| !entry.bytes.is_empty()));
    assert!(!has_key(&fetcher, "gone"), "below the floor");
    assert!(has_key(&fetcher, "kept"));
    // A key put back later by a delta is alive again: its entry is rewritten above the floor.
    apply(&fetcher, &delta(5, 6, &["gone"], &[], &[]), NOW_MS);
    assert!(has_key(&fetcher, "gone"));
    // A full bundle also replaces the revoked list.
    let exp = now_secs() + 3600;
    apply(
        &fetcher,
        &delta(6, 7, &[], &[], &[revoked("r1", exp)]),
        NOW_MS,
    );
    apply(&fetcher, &full(8, &["kept"], &[revoked("r2", exp)]), NOW_MS);
    let snapshot = fetcher.snapshot();
    assert!(!snapshot.is_revoked("r1"));
    assert!(snapshot.is_revoked("r2"));
}

#[test]
fn an_older_bundle_or_a_delta_for_another_version_changes_nothing() {
    let shared = InMemorySharedData::new();
    let fetcher = worker(&shared);
    apply(&fetcher, &full(3, &["k3"], &[]), NOW_MS);
    assert_eq!(
        apply(&fetcher, &full(2, &["k2"], &[]), NOW_MS),
        Applied::Stale
    );
    assert_eq!(
        apply(&fetcher, &full(3, &["k2"], &[]), NOW_MS),
        Applied::Stale
    );
    assert_eq!(
        apply(&fetcher, &delta(1, 4, &["k4"], &["k3"], &[]), NOW_MS),
        Applied::Mismatch
    );
    assert!(has_key(&fetcher, "k3"));
    assert!(!has_key(&fetcher, "k2"));
    assert!(!has_key(&fetcher, "k4"));
    assert_eq!(fetcher.shared_version(), Some(3));
    assert_eq!(
        apply(&fetcher, &delta(3, 4, &["k4"], &["k3"], &[]), NOW_MS),
        stored()
    );
    assert!(has_key(&fetcher, "k4"));
}

/// Shared data where another writer touches the delivery record right before each of our next `conflicts`
/// compare-and-swap writes to it, so each of them fails.
struct ContendedRecord {
    inner: InMemorySharedData,
    conflicts: Cell<usize>,
}

impl SharedData for ContendedRecord {
    fn get(&self, key: &str) -> Option<SharedValue> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        if key == RECORD_KEY && cas.is_some() && self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            let current = self.inner.get(key).unwrap();
            self.inner.set(key, &current.bytes, None).unwrap();
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn a_stale_cas_on_the_record_is_retried_and_persistent_contention_fails() {
    let shared = InMemorySharedData::new();
    let contended = ContendedRecord {
        inner: shared.clone(),
        conflicts: Cell::new(0),
    };
    let fetcher = SharedKeyMaterial::new(contended, "sidecar", "/v1/bundle");
    apply(&fetcher, &full(1, &["k1"], &[]), NOW_MS);

    // A few conflicting writes: the update re-reads and succeeds.
    fetcher.shared.conflicts.set(3);
    assert_eq!(
        apply(&fetcher, &delta(1, 2, &["k2"], &[], &[]), NOW_MS),
        stored()
    );
    assert_eq!(fetcher.record().0.unwrap().version, 2);
    assert_eq!(fetcher.shared.conflicts.get(), 0);

    // Someone keeps writing: the apply reports it instead of looping forever, and the record is not moved.
    fetcher.shared.conflicts.set(100);
    assert_eq!(
        apply(&fetcher, &delta(2, 3, &["k3"], &[], &[]), NOW_MS),
        Applied::Failed(DeliveryError::RecordContention)
    );
    assert_eq!(fetcher.record().0.unwrap().version, 2);
    fetcher.shared.conflicts.set(0);
    assert_eq!(
        fetcher.mark_fresh(NOW_MS + 1),
        Ok(()),
        "contention gone, the record updates again"
    );
}

#[test]
fn the_fetch_lease_is_held_until_it_expires_or_is_given_back() {
    let shared = InMemorySharedData::new();
    let (a, b) = (worker(&shared), worker(&shared));
    let (id_a, id_b) = (a.register_root(), b.register_root());
    assert_ne!(id_a, id_b);
    assert!(a.try_lease(id_a, NOW_MS, NOW_MS + 10_000));
    assert!(
        !b.try_lease(id_b, NOW_MS + 5_000, NOW_MS + 15_000),
        "held by a"
    );
    assert!(
        a.try_lease(id_a, NOW_MS + 5_000, NOW_MS + 15_000),
        "the holder renews"
    );
    assert!(!b.try_lease(id_b, NOW_MS + 14_999, NOW_MS + 20_000));
    assert!(
        b.try_lease(id_b, NOW_MS + 15_000, NOW_MS + 25_000),
        "expired"
    );
    assert!(!a.try_lease(id_a, NOW_MS + 16_000, NOW_MS + 26_000));
    // Only the holder can give it back.
    a.release_lease(id_a);
    assert!(!a.try_lease(id_a, NOW_MS + 16_000, NOW_MS + 26_000));
    b.release_lease(id_b);
    assert!(a.try_lease(id_a, NOW_MS + 16_000, NOW_MS + 26_000));
}

#[test]
fn a_refused_dispatch_gives_the_lease_back_at_once() {
    let shared = InMemorySharedData::new();
    let (a, b) = (worker(&shared), worker(&shared));
    let (fetch_a, fetch_b) = (
        BundleFetcher::new(a.register_root()),
        BundleFetcher::new(b.register_root()),
    );
    let config = sidecar();
    assert!(fetch_a.next_request(&a, &config, NOW_MS).is_some());
    assert!(fetch_b.next_request(&b, &config, NOW_MS + 100).is_none());
    fetch_a.dispatch_refused(&a);
    assert!(fetch_b.next_request(&b, &config, NOW_MS + 100).is_some());
}

#[test]
fn requests_are_conditional_long_polls_once_a_version_is_held() {
    let shared = InMemorySharedData::new();
    let material = worker(&shared);
    let mut fetcher = BundleFetcher::new(material.register_root());
    let config = sidecar();
    let first = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(
        first,
        FetchRequest {
            path: "/v1/bundle".into(),
            if_none_match: None,
            timeout_ms: 2000,
        }
    );
    let (outcome, again) = fetcher.answered(&material, Some(200), Some(&full(4, &[], &[])), NOW_MS);
    assert!(matches!(
        outcome,
        FetchOutcome::Stored {
            version: 4,
            delta: false,
            ..
        }
    ));
    assert!(again, "something changed: ask again at once");
    assert_eq!(fetcher.leave_startup(&material, &config), Some(1000));
    assert_eq!(fetcher.leave_startup(&material, &config), None);
    let next = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(
        next,
        FetchRequest {
            path: "/v1/bundle?wait=25".into(),
            if_none_match: Some("\"4\"".into()),
            timeout_ms: 27_000,
        }
    );
    // A delta for another version: the next request asks for everything.
    let (outcome, again) = fetcher.answered(
        &material,
        Some(200),
        Some(&delta(2, 5, &[], &[], &[])),
        NOW_MS,
    );
    assert_eq!(outcome, FetchOutcome::DeltaMismatch);
    assert!(again);
    let full_request = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(full_request.if_none_match, None);
    let (outcome, again) = fetcher.answered(&material, Some(304), None, NOW_MS);
    assert_eq!(outcome, FetchOutcome::NotModified);
    assert!(!again);
    let (outcome, _) = fetcher.answered(&material, Some(503), None, NOW_MS);
    assert!(outcome.is_failed_fetch());
    let (outcome, _) = fetcher.answered(&material, None, None, NOW_MS);
    assert_eq!(outcome, FetchOutcome::Unreachable);
}

#[test]
fn revocations_are_pruned_past_exp_plus_the_keep_window() {
    let now = now_secs();
    let list = merge_revoked(
        vec![
            RevokedTokenDto {
                jti: "b".into(),
                exp: now - REVOKED_KEEP_SECS + 1,
            },
            RevokedTokenDto {
                jti: "gone".into(),
                exp: now - REVOKED_KEEP_SECS,
            },
        ],
        &[
            RevokedTokenDto {
                jti: "a".into(),
                exp: now + 60,
            },
            RevokedTokenDto {
                jti: "b".into(),
                exp: now - REVOKED_KEEP_SECS + 1,
            },
        ],
        NOW_MS,
    );
    let jtis: Vec<&str> = list.iter().map(|token| token.jti.as_str()).collect();
    assert_eq!(
        jtis,
        ["a", "b"],
        "sorted, one per jti, the expired one dropped"
    );

    // Through an apply: the list held is pruned when a delta adds to it.
    let shared = InMemorySharedData::new();
    let fetcher = worker(&shared);
    apply(&fetcher, &full(1, &[], &[revoked("old", now + 10)]), NOW_MS);
    assert!(fetcher.snapshot().is_revoked("old"));
    let later = NOW_MS + 1000 * u64::try_from(10 + REVOKED_KEEP_SECS).unwrap();
    apply(
        &fetcher,
        &delta(1, 2, &[], &[], &[revoked("new", now + 7200)]),
        later,
    );
    let snapshot = fetcher.snapshot();
    assert!(!snapshot.is_revoked("old"));
    assert!(snapshot.is_revoked("new"));
}

#[test]
fn age_counts_from_the_last_answer_and_never_goes_back() {
    let shared = InMemorySharedData::new();
    let fetcher = worker(&shared);
    assert_eq!(fetcher.mark_fresh(NOW_MS), Ok(()));
    assert_eq!(
        fetcher.age_ms(NOW_MS + 99_000),
        0,
        "nothing to be stale before a bundle"
    );
    apply(&fetcher, &full(1, &[], &[]), NOW_MS);
    assert_eq!(fetcher.age_ms(NOW_MS + 5_000), 5_000);
    fetcher.mark_fresh(NOW_MS + 4_000).unwrap();
    assert_eq!(fetcher.age_ms(NOW_MS + 5_000), 1_000);
    fetcher.mark_fresh(NOW_MS + 1_000).unwrap();
    assert_eq!(
        fetcher.age_ms(NOW_MS + 5_000),
        1_000,
        "an older answer does not move it back"
    );
    let snapshot = fetcher.snapshot();
    assert_eq!(snapshot.key_material(NOW_MS + 64_500, None).age_secs, 60);
}

#[test]
fn a_damaged_bundle_is_rejected_and_the_last_good_one_kept() {
    let shared = InMemorySharedData::new();
    let (material, other) = (worker(&shared), worker(&shared));
    let mut fetcher = BundleFetcher::new(material.register_root());
    let good = keymesh_testkit::fixture().bundle(1);
    fetcher.answered(&material, Some(200), Some(good.as_bytes()), NOW_MS);
    let twice = json!({"version": 2, "issuers": [
        {"issuer": "https://a", "jwks": {"keys": []}},
        {"issuer": "https://a", "jwks": {"keys": []}}]});
    let half = &good.as_bytes()[..good.len() / 2];
    for damaged in [
        b"not json".as_slice(),
        half,
        b"",
        br#"{"issuers":[]}"#,
        twice.to_string().as_bytes(),
    ] {
        let (outcome, again) = fetcher.answered(&material, Some(200), Some(damaged), NOW_MS);
        assert!(matches!(outcome, FetchOutcome::Rejected(_)), "{outcome:?}");
        assert!(outcome.is_rejected_bundle());
        assert!(!again);
    }
    assert!(matches!(
        ReceivedBundle::parse(twice.to_string().as_bytes()),
        Err(KeyError::DuplicateIssuer(_))
    ));
    let (outcome, _) = fetcher.answered(&material, Some(200), None, NOW_MS);
    assert_eq!(outcome, FetchOutcome::NoBody);
    assert_eq!(other.snapshot().keys().map(|keys| keys.version()), Some(1));
    assert_eq!(other.shared_version(), Some(1));
}

#[test]
fn a_bundle_written_into_shared_data_by_something_else_is_reported_and_the_parsed_keys_kept() {
    let shared = InMemorySharedData::new();
    let (fetcher, other) = (worker(&shared), worker(&shared));
    apply(
        &fetcher,
        keymesh_testkit::fixture().bundle(1).as_bytes(),
        NOW_MS,
    );
    assert!(other.snapshot().keys().is_some());
    shared
        .set(
            "keymesh.authn.v1/sidecar/v1/bundle/bundle",
            b"garbage",
            None,
        )
        .unwrap();
    fetcher.mark_fresh(NOW_MS).unwrap();
    let record = other.record().0.unwrap();
    shared
        .set(
            RECORD_KEY,
            DeliveryRecord {
                version: 2,
                ..record
            }
            .encode()
            .as_bytes(),
            None,
        )
        .unwrap();
    let snapshot = other.snapshot();
    assert!(snapshot.reload_error().is_some());
    assert_eq!(snapshot.keys().map(|keys| keys.version()), Some(1));
}

#[test]
fn two_workers_see_each_others_writes() {
    let shared = InMemorySharedData::new();
    let (a, b) = (worker(&shared), worker(&shared));
    apply(&a, &full(1, &["k1"], &[]), NOW_MS);
    assert!(has_key(&b, "k1"));
    // b takes over fetching (a's lease expired) and applies the next delta; a sees it.
    assert_eq!(
        apply(&b, &delta(1, 2, &["k2"], &["k1"], &[]), NOW_MS),
        stored()
    );
    assert!(has_key(&a, "k2"));
    assert!(!has_key(&a, "k1"));
    assert_eq!(a.snapshot().keys().map(|keys| keys.version()), Some(2));
    // a's delta for the version b already stored is stale, not applied twice.
    assert_eq!(
        apply(&a, &delta(1, 2, &[], &["k2"], &[]), NOW_MS),
        Applied::Stale
    );
    assert!(has_key(&b, "k2"));
    // A refetch hint is claimed once per interval across workers.
    assert!(a.try_refetch_slot(NOW_MS, 5_000));
    assert!(!b.try_refetch_slot(NOW_MS + 4_999, 5_000));
    assert!(b.try_refetch_slot(NOW_MS + 5_000, 5_000));
}

#[test]
fn an_apply_that_failed_half_way_is_applied_again_without_a_fetch_loop() {
    // The record is the commit point: when its update fails, the version does not count as held, so the full
    // bundle asked for next is applied (before, the version key had already moved: the full bundle was "stale",
    // the need for a full bundle never cleared, and the root asked again at once, forever).
    let contended = ContendedRecord {
        inner: InMemorySharedData::new(),
        conflicts: Cell::new(0),
    };
    let material = SharedKeyMaterial::new(contended, "sidecar", "/v1/bundle");
    let mut fetcher = BundleFetcher::new(material.register_root());
    let config = sidecar();
    let exp = now_secs() + 3600;
    fetcher.answered(&material, Some(200), Some(&full(1, &["k1"], &[])), NOW_MS);
    material.shared.conflicts.set(100);
    let changes = delta(1, 2, &[], &["k1"], &[revoked("r1", exp)]);
    let (outcome, again) = fetcher.answered(&material, Some(200), Some(&changes), NOW_MS);
    assert_eq!(
        outcome,
        FetchOutcome::StoreFailed(DeliveryError::RecordContention)
    );
    assert!(again);
    material.shared.conflicts.set(0);
    let request = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(request.if_none_match, None, "a full bundle is asked for");
    let resync = full(2, &[], &[revoked("r1", exp)]);
    let (outcome, again) = fetcher.answered(&material, Some(200), Some(&resync), NOW_MS);
    assert!(
        matches!(outcome, FetchOutcome::Stored { version: 2, .. }),
        "{outcome:?}"
    );
    assert!(again);
    let (outcome, again) = fetcher.answered(&material, Some(304), None, NOW_MS);
    assert_eq!(outcome, FetchOutcome::NotModified);
    assert!(!again);
    let request = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(request.if_none_match.as_deref(), Some("\"2\""));
    let snapshot = material.snapshot();
    assert!(
        snapshot.is_revoked("r1"),
        "the revoked list's generation moved"
    );
    assert!(snapshot.api_key("k1").is_none());
}

#[test]
fn only_an_answer_that_confirms_the_material_keeps_it_fresh() {
    let shared = InMemorySharedData::new();
    let material = worker(&shared);
    let mut fetcher = BundleFetcher::new(material.register_root());
    fetcher.answered(&material, Some(200), Some(&full(3, &[], &[])), NOW_MS);
    let later = NOW_MS + 100_000;
    // A sidecar answering garbage (or a delta it cannot apply) has not confirmed anything.
    fetcher.answered(&material, Some(200), Some(b"not json"), later);
    fetcher.answered(&material, Some(200), None, later);
    fetcher.answered(
        &material,
        Some(200),
        Some(&delta(1, 4, &[], &[], &[])),
        later,
    );
    fetcher.answered(&material, Some(500), None, later);
    fetcher.answered(&material, None, None, later);
    assert_eq!(material.age_ms(later), 100_000);
    // The version held, again or as 304: fresh (and the full bundle asked for after the mismatch is held, so no
    // further fetch at once).
    let (outcome, again) = fetcher.answered(&material, Some(200), Some(&full(3, &[], &[])), later);
    assert_eq!(outcome, FetchOutcome::AlreadyHeld);
    assert!(!again);
    assert_eq!(material.age_ms(later), 0);
    fetcher.answered(&material, Some(304), None, later + 5_000);
    assert_eq!(material.age_ms(later + 5_000), 0);
}
