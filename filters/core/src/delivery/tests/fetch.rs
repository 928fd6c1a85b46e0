//! The fetching root: the lease, the requests it sends, what the answers mean, and freshness.

use super::*;

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
            path: "/v1/bundle?page=0".into(),
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
            path: "/v1/bundle?wait=25&page=0".into(),
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
    assert!(snapshot.api_key(&hash_of("k1")).is_none());
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
