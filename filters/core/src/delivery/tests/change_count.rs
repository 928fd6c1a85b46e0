//! The change count: a worker re-reads the delivery record only when the count has moved, and a revocation is still
//! enforced on the first request after it is stored.

use super::*;
use std::rc::Rc;

/// Shared data that counts reads of the delivery record.
#[derive(Clone)]
struct CountingShared {
    inner: InMemorySharedData,
    record_reads: Rc<Cell<usize>>,
    /// `false`: a host without a change counter.
    counter: bool,
}

impl SharedData for CountingShared {
    fn get(&self, key: &str) -> Option<SharedValue> {
        if key == RECORD_KEY {
            self.record_reads.set(self.record_reads.get() + 1);
        }
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        self.inner.set(key, value, cas)
    }

    fn change_count(&self) -> Option<u64> {
        self.counter.then(|| self.inner.change_count()).flatten()
    }

    fn count_change(&self) {
        self.inner.count_change();
    }
}

fn counting(shared: &InMemorySharedData, counter: bool) -> CountingShared {
    CountingShared {
        inner: shared.clone(),
        record_reads: Rc::new(Cell::new(0)),
        counter,
    }
}

#[test]
fn an_unchanged_record_is_not_read_again_and_a_revocation_is_seen_on_the_next_request() {
    let shared = InMemorySharedData::new();
    let root = worker(&shared);
    assert_eq!(apply(&root, &full(1, &["k1"], &[]), NOW_MS), stored());
    let reader = counting(&shared, true);
    let worker = SharedKeyMaterial::new(reader.clone(), "sidecar", "/v1/bundle");

    assert!(!worker.snapshot().is_revoked("r1"));
    assert!(has_key(&worker, "k1"));
    assert!(!worker.snapshot().is_revoked("r1"));
    assert_eq!(
        reader.record_reads.get(),
        1,
        "one read while nothing changed"
    );

    // The root stores a revocation (and a deleted key): the very next request of this worker sees both.
    let exp = now_secs() + 600;
    assert_eq!(
        apply(
            &root,
            &delta(1, 2, &[], &["k1"], &[revoked("r1", exp)]),
            NOW_MS
        ),
        stored()
    );
    let snapshot = worker.snapshot();
    assert!(snapshot.is_revoked("r1"));
    assert!(snapshot.api_key(&hash_of("k1")).is_none());
    assert_eq!(reader.record_reads.get(), 2);

    // Freshness alone (a 304 from the sidecar) also moves the count: the age a request sees is current.
    root.mark_fresh(NOW_MS + 5_000).unwrap();
    assert_eq!(worker.snapshot().age_ms(NOW_MS + 5_000), 0);
    assert_eq!(reader.record_reads.get(), 3);
}

#[test]
fn without_a_counter_every_request_reads_the_record() {
    let shared = InMemorySharedData::new();
    let root = worker(&shared);
    assert_eq!(apply(&root, &full(1, &["k1"], &[]), NOW_MS), stored());
    let reader = counting(&shared, false);
    let worker = SharedKeyMaterial::new(reader.clone(), "sidecar", "/v1/bundle");
    for _ in 0..3 {
        assert!(has_key(&worker, "k1"));
    }
    assert_eq!(reader.record_reads.get(), 3);
}
