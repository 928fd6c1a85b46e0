//! Applying bundles to shared data, and what every worker sees afterwards.

use super::*;

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
            slot: 1,
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
    let gone = bucket::KeyHash::parse(&hash_of("gone")).unwrap();
    let kept = bucket::KeyHash::parse(&hash_of("kept")).unwrap();
    assert_ne!(gone.bucket(), kept.bucket());
    let stale = shared
        .get(&format!(
            "keymesh.authn.v3/sidecar/v1/bundle/s1/ak/{:03x}",
            gone.bucket()
        ))
        .unwrap();
    assert!(bucket::BucketView::new(&stale.bytes)
        .unwrap()
        .find(&gone)
        .is_some());
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
            "keymesh.authn.v3/sidecar/v1/bundle/s1/bundle",
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
