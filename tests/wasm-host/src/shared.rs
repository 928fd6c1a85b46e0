//! [`SharedStore`]: the Envoy-process-wide state that worker VMs share: shared data (with CAS),
//! shared queues and metrics. Pass one store to several VMs to simulate `--concurrency N`.

use crate::types::MetricType;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Shared data, shared queues and metrics of one simulated Envoy process. Cheap to clone (an `Arc`);
/// every VM built without an explicit store gets its own.
#[derive(Clone, Default)]
pub struct SharedStore {
    inner: Arc<Mutex<SharedInner>>,
}

/// A metric's current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's current value.
    Gauge(i64),
    /// Every value recorded into a histogram, in order.
    Histogram(Vec<u64>),
}

#[derive(Default)]
pub(crate) struct SharedInner {
    data: BTreeMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
    queues: Vec<Queue>,
    metrics: BTreeMap<String, MetricValue>,
    vms: u32,
}

struct Queue {
    vm_id: String,
    name: String,
    owner_vm: u32,
    items: VecDeque<Vec<u8>>,
    ready: bool,
}

/// Why a shared-data write failed.
pub(crate) enum SetError {
    CasMismatch,
}

impl SharedStore {
    /// A fresh, empty store.
    pub fn new() -> SharedStore {
        SharedStore::default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SharedInner> {
        // A panicking test thread must not poison the store for the VMs of other assertions.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().data.get(key).map(|(value, _)| value.clone())
    }

    /// The value stored under `key` with its CAS token.
    pub fn get_with_cas(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().data.get(key).cloned()
    }

    /// Stores `value` under `key` unconditionally (bumping its CAS), as another worker would.
    pub fn set(&self, key: &str, value: impl Into<Vec<u8>>) {
        let mut inner = self.lock();
        let cas = inner.next_cas();
        inner.data.insert(key.to_owned(), (value.into(), cas));
    }

    /// The value of metric `name`, if a filter defined it.
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.lock().metrics.get(name).cloned()
    }

    /// Every defined metric by name.
    pub fn metrics(&self) -> BTreeMap<String, MetricValue> {
        self.lock().metrics.clone()
    }

    /// Items waiting in the shared queue `name` (registered under `vm_id`), oldest first.
    pub fn queue_items(&self, vm_id: &str, name: &str) -> Option<Vec<Vec<u8>>> {
        let inner = self.lock();
        let queue = inner
            .queues
            .iter()
            .find(|q| q.vm_id == vm_id && q.name == name)?;
        Some(queue.items.iter().cloned().collect())
    }
}

impl SharedInner {
    fn next_cas(&mut self) -> u32 {
        // Like Envoy: a process-wide counter that never hands out 0 ("no CAS").
        self.last_cas = self.last_cas.wrapping_add(1).max(1);
        self.last_cas
    }

    pub(crate) fn register_vm(&mut self) -> u32 {
        self.vms += 1;
        self.vms
    }

    pub(crate) fn get_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.data.get(key).cloned()
    }

    /// Envoy semantics: `cas == 0` always writes; otherwise it must match the stored CAS
    /// (a missing key accepts any CAS).
    pub(crate) fn set_data(&mut self, key: &str, value: Vec<u8>, cas: u32) -> Result<(), SetError> {
        if let Some((_, current)) = self.data.get(key) {
            if cas != 0 && cas != *current {
                return Err(SetError::CasMismatch);
            }
        }
        let cas = self.next_cas();
        self.data.insert(key.to_owned(), (value, cas));
        Ok(())
    }

    /// Queue ids are indexes + 1, so 0 is never a valid id.
    pub(crate) fn register_queue(&mut self, vm_id: &str, name: &str, owner_vm: u32) -> u32 {
        if let Some(index) = self
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
        {
            self.queues[index].owner_vm = owner_vm;
            return queue_id(index);
        }
        self.queues.push(Queue {
            vm_id: vm_id.to_owned(),
            name: name.to_owned(),
            owner_vm,
            items: VecDeque::new(),
            ready: false,
        });
        queue_id(self.queues.len() - 1)
    }

    pub(crate) fn resolve_queue(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
            .map(queue_id)
    }

    fn queue_mut(&mut self, id: u32) -> Option<&mut Queue> {
        self.queues.get_mut((id as usize).checked_sub(1)?)
    }

    pub(crate) fn enqueue(&mut self, id: u32, item: Vec<u8>) -> bool {
        match self.queue_mut(id) {
            Some(queue) => {
                queue.items.push_back(item);
                queue.ready = true;
                true
            }
            None => false,
        }
    }

    /// `None` if the queue does not exist, `Some(None)` if it is empty.
    pub(crate) fn dequeue(&mut self, id: u32) -> Option<Option<Vec<u8>>> {
        self.queue_mut(id).map(|q| q.items.pop_front())
    }

    /// Queues owned by `vm` that received items since the last call.
    pub(crate) fn take_ready_queues(&mut self, vm: u32) -> Vec<u32> {
        let mut ready = Vec::new();
        for (index, queue) in self.queues.iter_mut().enumerate() {
            if queue.owner_vm == vm && queue.ready {
                queue.ready = false;
                ready.push(queue_id(index));
            }
        }
        ready
    }

    /// Registers metric `name` (idempotent); `false` if it exists with another type.
    pub(crate) fn define_metric(&mut self, name: &str, kind: MetricType) -> bool {
        let fresh = match kind {
            MetricType::Counter => MetricValue::Counter(0),
            MetricType::Gauge => MetricValue::Gauge(0),
            MetricType::Histogram => MetricValue::Histogram(Vec::new()),
        };
        let existing = self
            .metrics
            .entry(name.to_owned())
            .or_insert_with(|| fresh.clone());
        std::mem::discriminant(existing) == std::mem::discriminant(&fresh)
    }

    pub(crate) fn metric_mut(&mut self, name: &str) -> Option<&mut MetricValue> {
        self.metrics.get_mut(name)
    }
}

fn queue_id(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_zero_always_writes_and_a_stale_cas_is_refused() {
        let mut store = SharedInner::default();
        assert!(
            store.set_data("k", b"a".to_vec(), 7).is_ok(),
            "a missing key accepts any CAS"
        );
        let (_, first) = store.get_data("k").unwrap_or_default();
        assert!(store.set_data("k", b"b".to_vec(), first).is_ok());
        assert!(matches!(
            store.set_data("k", b"c".to_vec(), first),
            Err(SetError::CasMismatch)
        ));
        assert!(store.set_data("k", b"d".to_vec(), 0).is_ok());
        let (value, last) = store.get_data("k").unwrap_or_default();
        assert_eq!(value, b"d");
        assert!(last > first);
    }

    #[test]
    fn queues_notify_their_owner_once_per_batch() {
        let mut store = SharedInner::default();
        let id = store.register_queue("vm", "q", 2);
        assert_eq!(store.resolve_queue("vm", "q"), Some(id));
        assert_eq!(store.resolve_queue("other", "q"), None);
        assert!(store.enqueue(id, b"1".to_vec()) && store.enqueue(id, b"2".to_vec()));
        assert!(!store.enqueue(id + 1, Vec::new()), "unknown queue");
        assert!(store.take_ready_queues(1).is_empty(), "not the owner");
        assert_eq!(store.take_ready_queues(2), vec![id]);
        assert!(store.take_ready_queues(2).is_empty());
        assert_eq!(store.dequeue(id), Some(Some(b"1".to_vec())));
        assert_eq!(store.dequeue(id), Some(Some(b"2".to_vec())));
        assert_eq!(store.dequeue(id), Some(None));
        assert_eq!(store.dequeue(0), None);
    }

    #[test]
    fn a_metric_keeps_its_type() {
        let mut store = SharedInner::default();
        assert!(store.define_metric("m", MetricType::Counter));
        assert!(store.define_metric("m", MetricType::Counter));
        assert!(!store.define_metric("m", MetricType::Gauge));
    }
}
