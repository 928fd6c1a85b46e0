//! A full resync in pages: applied page by page into the slot not in force, invisible to every worker until the
//! last page switches the record, and out of step, failed or overtaken without exposing anything.

use super::*;
use crate::delivery::bucket::BucketView;
use crate::delivery::resync::Resync;

const SLOT0_BUCKETS: &str = "keymesh.authn.v3/sidecar/v1/bundle/s0/ak/";
const SLOT1_BUCKETS: &str = "keymesh.authn.v3/sidecar/v1/bundle/s1/ak/";

/// One page of the full bundle at `version`: `keys` from position `from`, the next page at `next`, `total` keys
/// in all; the first page carries the issuers and `revoked_tokens`.
fn page(
    version: u64,
    from: u64,
    next: Option<u64>,
    total: u64,
    keys: &[&str],
    revoked_tokens: &[Value],
) -> Vec<u8> {
    let put: Vec<Value> = keys.iter().map(|label| api_key(label)).collect();
    let mut body = json!({
        "version": version,
        "issuers": [],
        "api_keys": {"put": put},
        "page": {"from": from, "keys": total},
    });
    if from == 0 {
        let fixture: Value =
            serde_json::from_str(&keymesh_testkit::fixture().bundle(version)).unwrap();
        body["issuers"] = fixture["issuers"].clone();
        body["revoked_tokens"] = json!(revoked_tokens);
    }
    if let Some(next) = next {
        body["page"]["next"] = json!(next);
    }
    serde_json::to_vec(&body).unwrap()
}

fn apply_page<S: SharedData>(
    worker: &SharedKeyMaterial<S>,
    body: &[u8],
    resync: Option<Resync>,
) -> Applied {
    worker.apply_continuing(ReceivedBundle::parse(body).unwrap(), resync, NOW_MS)
}

fn more(applied: Applied) -> Resync {
    match applied {
        Applied::PageStored(resync) => resync,
        other => panic!("expected a page stored, got {other:?}"),
    }
}

/// Bucket values of one slot that hold at least one key.
fn filled_buckets(shared: &InMemorySharedData, prefix: &str) -> usize {
    (0..crate::delivery::bucket::BUCKETS)
        .filter_map(|bucket| shared.get(&format!("{prefix}{bucket:03x}")))
        .filter(|value| BucketView::new(&value.bytes).is_some_and(|view| !view.is_empty()))
        .count()
}

/// v1 in force: keys `old` and `gone`, token `r1` revoked.
fn holding_v1(shared: &InMemorySharedData) -> Worker {
    let fetcher = worker(shared);
    let exp = now_secs() + 3600;
    assert_eq!(
        apply(
            &fetcher,
            &full(1, &["old", "gone"], &[revoked("r1", exp)]),
            NOW_MS
        ),
        stored()
    );
    fetcher
}

#[test]
fn pages_are_stored_one_by_one_and_nothing_shows_until_the_last() {
    let shared = InMemorySharedData::new();
    let fetcher = holding_v1(&shared);
    let reader = worker(&shared);
    let exp = now_secs() + 3600;
    let sees_v1_only = |reader: &Worker| {
        let snapshot = reader.snapshot();
        assert_eq!(
            snapshot.keys().map(|keys| keys.version()),
            Some(1),
            "v1 issuers"
        );
        assert!(snapshot.api_key(&hash_of("old")).is_some());
        assert!(
            snapshot.api_key(&hash_of("gone")).is_some(),
            "v3 deleted it, v3 is not in force"
        );
        for new in ["n1", "n2", "n3", "n4"] {
            assert!(snapshot.api_key(&hash_of(new)).is_none(), "{new} is v3's");
        }
        assert!(snapshot.is_revoked("r1"));
        assert!(!snapshot.is_revoked("r3"), "v3's revocation");
        assert_eq!(reader.shared_version(), Some(1));
    };
    sees_v1_only(&reader);
    let first = page(
        3,
        0,
        Some(2),
        5,
        &["old", "n1"],
        &[revoked("r1", exp), revoked("r3", exp)],
    );
    let resync = more(apply_page(&fetcher, &first, None));
    assert_eq!((resync.version(), resync.next(), resync.pages()), (3, 2, 1));
    sees_v1_only(&reader);
    let resync = more(apply_page(
        &fetcher,
        &page(3, 2, Some(4), 5, &["n2", "n3"], &[]),
        Some(resync),
    ));
    assert_eq!(resync.progress(), (4, 5));
    sees_v1_only(&reader);
    assert_eq!(
        apply_page(&fetcher, &page(3, 4, None, 5, &["n4"], &[]), Some(resync)),
        stored()
    );
    let snapshot = reader.snapshot();
    assert_eq!(snapshot.keys().map(|keys| keys.version()), Some(3));
    for key in ["old", "n1", "n2", "n3", "n4"] {
        assert!(snapshot.api_key(&hash_of(key)).is_some(), "{key}");
    }
    assert!(snapshot.api_key(&hash_of("gone")).is_none());
    assert!(snapshot.is_revoked("r1") && snapshot.is_revoked("r3"));
    let record = reader.record().0.unwrap();
    assert_eq!((record.version, record.floor, record.slot), (3, 3, 0));
}

#[test]
fn the_old_slot_is_emptied_after_the_switch_and_deltas_edit_the_new_one() {
    let shared = InMemorySharedData::new();
    let fetcher = holding_v1(&shared);
    let reader = worker(&shared);
    assert_eq!(filled_buckets(&shared, SLOT1_BUCKETS), 2);
    assert_eq!(fetcher.clear_retired_slot(), 0, "slot 0 holds nothing yet");
    let resync = more(apply_page(
        &fetcher,
        &page(2, 0, Some(1), 2, &["a"], &[]),
        None,
    ));
    assert_eq!(
        fetcher.clear_retired_slot(),
        0,
        "slot 0 is being written at v2, above the floor: left alone"
    );
    apply_page(&fetcher, &page(2, 1, None, 2, &["b"], &[]), Some(resync));
    assert_eq!(filled_buckets(&shared, SLOT0_BUCKETS), 2);
    assert_eq!(fetcher.clear_retired_slot(), 2);
    assert_eq!(
        filled_buckets(&shared, SLOT1_BUCKETS),
        0,
        "v1's keys are not held twice"
    );
    assert!(reader.snapshot().api_key(&hash_of("a")).is_some());
    // A delta after the switch edits the slot in force; a revocation shows on the next request.
    let exp = now_secs() + 3600;
    assert_eq!(
        apply(
            &fetcher,
            &delta(2, 3, &["c"], &["a"], &[revoked("r9", exp)]),
            NOW_MS
        ),
        stored()
    );
    let snapshot = reader.snapshot();
    assert!(snapshot.api_key(&hash_of("a")).is_none());
    assert!(snapshot.api_key(&hash_of("b")).is_some() && snapshot.api_key(&hash_of("c")).is_some());
    assert!(snapshot.is_revoked("r9"));
}

#[test]
fn a_page_out_of_step_ends_the_resync_without_a_switch_and_the_next_one_starts_clean() {
    let shared = InMemorySharedData::new();
    let fetcher = holding_v1(&shared);
    let reader = worker(&shared);
    let resync = more(apply_page(
        &fetcher,
        &page(4, 0, Some(1), 2, &["a"], &[]),
        None,
    ));
    // The sidecar moved on and lost v4: a page of v5 where v4's second page was due.
    assert_eq!(
        apply_page(
            &fetcher,
            &page(5, 1, None, 2, &["b"], &[]),
            Some(resync.clone())
        ),
        Applied::OutOfStep
    );
    // A page at another position, or a later page with no resync under way: out of step too.
    assert_eq!(
        apply_page(
            &fetcher,
            &page(4, 7, None, 8, &["b"], &[]),
            Some(resync.clone())
        ),
        Applied::OutOfStep
    );
    assert_eq!(
        apply_page(&fetcher, &page(4, 1, None, 2, &["b"], &[]), None),
        Applied::OutOfStep
    );
    // A page that does not move forward would be asked for forever.
    assert_eq!(
        apply_page(&fetcher, &page(6, 0, Some(0), 2, &["a"], &[]), None),
        Applied::OutOfStep
    );
    assert_eq!(reader.shared_version(), Some(1));
    assert!(reader.snapshot().api_key(&hash_of("a")).is_none());
    assert!(reader.snapshot().api_key(&hash_of("gone")).is_some());
    // The next attempt, at v5 from its first page, writes the same slot: what v4 left there is below v5's floor.
    let resync = more(apply_page(
        &fetcher,
        &page(5, 0, Some(1), 2, &["b"], &[]),
        None,
    ));
    assert_eq!(
        apply_page(&fetcher, &page(5, 1, None, 2, &["c"], &[]), Some(resync)),
        stored()
    );
    let snapshot = reader.snapshot();
    assert!(
        snapshot.api_key(&hash_of("a")).is_none(),
        "v4 left it behind, dead"
    );
    assert!(snapshot.api_key(&hash_of("b")).is_some() && snapshot.api_key(&hash_of("c")).is_some());
    assert!(snapshot.api_key(&hash_of("old")).is_none());
}

#[test]
fn a_delta_stored_by_another_root_during_a_resync_is_enforced_at_once_and_the_resync_still_lands() {
    // This root lost the lease half-way through a resync at v6; another root applies deltas to v1 meanwhile.
    let shared = InMemorySharedData::new();
    let fetcher = holding_v1(&shared);
    let successor = worker(&shared);
    let reader = worker(&shared);
    let exp = now_secs() + 3600;
    let resync = more(apply_page(
        &fetcher,
        &page(6, 0, Some(1), 2, &["gone", "old"], &[]),
        None,
    ));
    assert_eq!(
        apply(
            &successor,
            &delta(1, 2, &[], &["gone"], &[revoked("r2", exp)]),
            NOW_MS
        ),
        stored()
    );
    let snapshot = reader.snapshot();
    assert!(
        snapshot.api_key(&hash_of("gone")).is_none(),
        "revoked on the next request"
    );
    assert!(snapshot.is_revoked("r2"));
    // The resync's version is newer than what the successor stored: it lands, with v6's content.
    assert_eq!(
        apply_page(
            &fetcher,
            &page(6, 1, None, 2, &["n"], &[]),
            Some(resync.clone())
        ),
        stored()
    );
    assert_eq!(reader.shared_version(), Some(6));
    assert!(reader.snapshot().api_key(&hash_of("n")).is_some());
    // Had the successor gone past the resync's version, the last page would switch nothing.
    let shared = InMemorySharedData::new();
    let fetcher = holding_v1(&shared);
    let successor = worker(&shared);
    let resync = more(apply_page(
        &fetcher,
        &page(3, 0, Some(1), 2, &["old"], &[]),
        None,
    ));
    apply(&successor, &delta(1, 4, &[], &["old"], &[]), NOW_MS);
    assert_eq!(
        apply_page(&fetcher, &page(3, 1, None, 2, &["x"], &[]), Some(resync)),
        Applied::Stale
    );
    assert_eq!(successor.shared_version(), Some(4));
    assert!(successor.snapshot().api_key(&hash_of("old")).is_none());
    assert!(successor.snapshot().api_key(&hash_of("x")).is_none());
}

#[test]
fn another_roots_switch_during_a_resync_puts_it_out_of_step() {
    let shared = InMemorySharedData::new();
    let fetcher = holding_v1(&shared);
    let successor = worker(&shared);
    let resync = more(apply_page(
        &fetcher,
        &page(5, 0, Some(1), 2, &["a"], &[]),
        None,
    ));
    // The successor completes its own resync at v4, into the same slot, and switches to it.
    assert_eq!(apply(&successor, &full(4, &["z"], &[]), NOW_MS), stored());
    assert_eq!(
        apply_page(&fetcher, &page(5, 1, None, 2, &["b"], &[]), Some(resync)),
        Applied::OutOfStep
    );
    assert_eq!(successor.shared_version(), Some(4));
    assert!(successor.snapshot().api_key(&hash_of("z")).is_some());
    assert!(successor.snapshot().api_key(&hash_of("b")).is_none());
}

#[test]
fn the_fetcher_asks_for_each_next_page_of_the_same_version_and_starts_over_after_a_failure() {
    let shared = InMemorySharedData::new();
    let material = holding_v1(&shared);
    let mut fetcher = BundleFetcher::new(material.register_root());
    let config = sidecar();
    let poll = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(poll.path, "/v1/bundle?wait=25&page=0");
    assert_eq!(poll.if_none_match.as_deref(), Some("\"1\""));
    let first = page(7, 0, Some(1), 3, &["a"], &[]);
    let (outcome, again) = fetcher.answered(&material, Some(200), Some(&first), NOW_MS);
    assert_eq!(
        outcome,
        FetchOutcome::PageStored {
            version: 7,
            pages: 1,
            keys_read: 1,
            keys_total: 3
        }
    );
    assert!(again, "the next page at once");
    let next = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(
        (next.path.as_str(), next.if_none_match, next.timeout_ms),
        ("/v1/bundle?page=1&version=7", None, 2000)
    );
    // The sidecar no longer holds v7: the resync ends, nothing switched, and the next fetch starts over.
    let (outcome, again) = fetcher.answered(&material, Some(410), Some(&b"{}"[..]), NOW_MS);
    assert_eq!((outcome, again), (FetchOutcome::HttpStatus(410), false));
    assert!(fetcher.resync().is_none());
    assert_eq!(material.shared_version(), Some(1));
    let restart = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(restart.path, "/v1/bundle?wait=25&page=0");
    let (outcome, _) = fetcher.answered(
        &material,
        Some(200),
        Some(&page(8, 0, Some(1), 2, &["a"], &[])),
        NOW_MS,
    );
    assert!(matches!(
        outcome,
        FetchOutcome::PageStored { version: 8, .. }
    ));
    let (outcome, again) = fetcher.answered(
        &material,
        Some(200),
        Some(&page(8, 1, None, 2, &["b"], &[])),
        NOW_MS,
    );
    assert!(again);
    assert!(
        matches!(
            outcome,
            FetchOutcome::Stored {
                version: 8,
                delta: false,
                puts: 2,
                ..
            }
        ),
        "{outcome:?}"
    );
    // The old slot is emptied on the next tick, once.
    assert_eq!(fetcher.on_tick(&material), 2);
    assert_eq!(fetcher.on_tick(&material), 0);
    let poll = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(poll.if_none_match.as_deref(), Some("\"8\""));
}

/// Shared data that refuses bucket writes into slot 0 while `refuse` is set.
struct RefusingSlot0 {
    inner: InMemorySharedData,
    refuse: Cell<bool>,
}

impl SharedData for RefusingSlot0 {
    fn get(&self, key: &str) -> Option<SharedValue> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        if self.refuse.get() && key.starts_with(SLOT0_BUCKETS) {
            return Err(SharedDataError::Refused);
        }
        self.inner.set(key, value, cas)
    }

    fn change_count(&self) -> Option<u64> {
        self.inner.change_count()
    }

    fn count_change(&self) {
        self.inner.count_change();
    }
}

#[test]
fn a_page_shared_data_refuses_ends_the_resync_with_nothing_switched_and_the_next_starts_from_page_0(
) {
    let store = RefusingSlot0 {
        inner: InMemorySharedData::new(),
        refuse: Cell::new(false),
    };
    let material = SharedKeyMaterial::new(store, "sidecar", "/v1/bundle");
    let reader = worker(&material.shared.inner);
    assert_eq!(
        apply(&material, &full(1, &["old", "gone"], &[]), NOW_MS),
        stored()
    );
    let mut fetcher = BundleFetcher::new(material.register_root());
    let config = sidecar();
    fetcher.next_request(&material, &config, NOW_MS).unwrap();
    let first = page(2, 0, Some(1), 2, &["old"], &[]);
    let (outcome, _) = fetcher.answered(&material, Some(200), Some(&first), NOW_MS);
    assert!(matches!(outcome, FetchOutcome::PageStored { .. }));
    material.shared.refuse.set(true);
    fetcher.next_request(&material, &config, NOW_MS).unwrap();
    let second = page(2, 1, None, 2, &["new"], &[]);
    let (outcome, again) = fetcher.answered(&material, Some(200), Some(&second), NOW_MS);
    assert!(
        matches!(
            outcome,
            FetchOutcome::StoreFailed(DeliveryError::Write { .. })
        ),
        "{outcome:?}"
    );
    assert!(again, "a full bundle is asked for at once");
    // Nothing switched: v1 whole, including the key v2 deletes.
    let snapshot = reader.snapshot();
    assert_eq!(reader.shared_version(), Some(1));
    assert!(snapshot.api_key(&hash_of("gone")).is_some());
    assert!(snapshot.api_key(&hash_of("new")).is_none());
    // The next attempt asks for a full set from its first page, and completes.
    let retry = fetcher.next_request(&material, &config, NOW_MS).unwrap();
    assert_eq!(
        (retry.path.as_str(), retry.if_none_match),
        ("/v1/bundle?page=0", None)
    );
    material.shared.refuse.set(false);
    fetcher.answered(&material, Some(200), Some(&first), NOW_MS);
    fetcher.next_request(&material, &config, NOW_MS).unwrap();
    let (outcome, _) = fetcher.answered(&material, Some(200), Some(&second), NOW_MS);
    assert!(
        matches!(outcome, FetchOutcome::Stored { version: 2, .. }),
        "{outcome:?}"
    );
    let snapshot = reader.snapshot();
    assert!(snapshot.api_key(&hash_of("gone")).is_none());
    assert!(
        snapshot.api_key(&hash_of("new")).is_some() && snapshot.api_key(&hash_of("old")).is_some()
    );
}
