//! The one thing delivery needs from a host: a byte store shared by all workers, with compare-and-swap.
//!
//! This is exactly what proxy-wasm ABI 0.2.1 offers (`proxy_get_shared_data` returns a value and a CAS token,
//! `proxy_set_shared_data` writes if the token still matches); there is no listing and no removal, which is why
//! entries carry generations (see [`crate::delivery`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use thiserror::Error;

/// A stored value and the CAS token it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedValue {
    /// The bytes stored.
    pub bytes: Vec<u8>,
    /// Pass it back to [`SharedData::set`] to write only if nobody wrote in between.
    pub cas: u32,
}

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SharedDataError {
    /// Someone wrote the key after it was read (the CAS token no longer matches).
    #[error("compare-and-swap mismatch")]
    CasMismatch,
    /// The host refused the write for another reason.
    #[error("the host refused the write")]
    Refused,
}

/// Shared data as the host offers it. Implementations never panic; a read the host fails counts as absent.
pub trait SharedData {
    /// The value under `key` and its CAS token, or `None` if nothing is stored (or the host cannot tell).
    fn get(&self, key: &str) -> Option<SharedValue>;

    /// Stores `value` under `key`. With `cas: Some(token)` the write happens only if the key still holds the value
    /// read with that token (a key that does not exist yet is always written, as in Envoy); `None` always writes.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError>;

    /// A counter shared by every worker that [`SharedData::count_change`] moves after each write of the delivery
    /// record, and that is much cheaper to read than the record itself (in Envoy: a gauge, one atomic load, where
    /// a shared-data read takes a global mutex and copies the value into the VM). A worker re-reads the record
    /// only when the counter has moved. `None`: the host has no such counter, and every request reads the record.
    fn change_count(&self) -> Option<u64> {
        None
    }

    /// Moves the change counter; called after every write of the delivery record.
    fn count_change(&self) {}
}

/// Shared data in this process's memory: for a host with one worker (or one event loop), and for tests. Clones
/// share one store, as workers of one Envoy share theirs.
#[derive(Debug, Clone, Default)]
pub struct InMemorySharedData {
    inner: Rc<RefCell<InMemoryInner>>,
}

#[derive(Debug, Default)]
struct InMemoryInner {
    values: HashMap<String, SharedValue>,
    last_cas: u32,
    changes: u64,
}

impl InMemorySharedData {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SharedData for InMemorySharedData {
    fn get(&self, key: &str) -> Option<SharedValue> {
        self.inner.borrow().values.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        let mut inner = self.inner.borrow_mut();
        if let (Some(expected), Some(held)) = (cas, inner.values.get(key)) {
            if expected != held.cas {
                return Err(SharedDataError::CasMismatch);
            }
        }
        // Tokens are never 0 (Envoy uses 0 for "no CAS"); wrapping after 2^32 writes is what Envoy does too.
        inner.last_cas = inner.last_cas.wrapping_add(1).max(1);
        let cas = inner.last_cas;
        inner.values.insert(
            key.to_owned(),
            SharedValue {
                bytes: value.to_vec(),
                cas,
            },
        );
        Ok(())
    }

    fn change_count(&self) -> Option<u64> {
        Some(self.inner.borrow().changes)
    }

    fn count_change(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.changes = inner.changes.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_cas_is_refused_and_a_fresh_one_writes() {
        let shared = InMemorySharedData::new();
        assert_eq!(shared.get("k"), None);
        shared.set("k", b"1", Some(7)).unwrap();
        let first = shared.get("k").unwrap();
        shared.set("k", b"2", Some(first.cas)).unwrap();
        assert_eq!(
            shared.set("k", b"3", Some(first.cas)),
            Err(SharedDataError::CasMismatch)
        );
        assert_eq!(shared.get("k").unwrap().bytes, b"2");
        shared.set("k", b"4", None).unwrap();
        assert_eq!(shared.get("k").unwrap().bytes, b"4");
    }

    #[test]
    fn clones_share_one_store() {
        let one = InMemorySharedData::new();
        let two = one.clone();
        one.set("k", b"v", None).unwrap();
        assert_eq!(two.get("k").unwrap().bytes, b"v");
    }
}
