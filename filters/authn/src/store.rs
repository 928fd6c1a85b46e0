//! The bundle in Envoy shared data, and each worker's parsed copy of it.
//!
//! Shared data is per `vm_id` and shared by all worker VMs, so the fetched bundle is stored once. A small version
//! key lets a worker check for a new bundle on each request without copying the bundle; it re-reads and parses
//! the bundle only when the version moves.

use crate::host;
use keymesh_core::KeySet;
use std::cell::RefCell;
use std::rc::Rc;

/// Shared-data keys of one sidecar endpoint (two filters pointing at the same sidecar share one bundle).
#[derive(Debug, Clone)]
pub(crate) struct BundleStore {
    bundle_key: String,
    version_key: String,
    lease_key: String,
    cached: RefCell<Option<Rc<KeySet>>>,
}

impl BundleStore {
    pub(crate) fn new(cluster: &str, path: &str) -> Self {
        let base = format!("keymesh.authn.v1/{cluster}{path}");
        Self {
            bundle_key: format!("{base}/bundle"),
            version_key: format!("{base}/version"),
            lease_key: format!("{base}/lease"),
            cached: RefCell::new(None),
        }
    }

    /// The version in shared data, if any bundle has been stored.
    pub(crate) fn shared_version(&self) -> Option<u64> {
        parse_u64(host::shared_get(&self.version_key).0)
    }

    /// This worker's key set, refreshed from shared data when a newer version is there.
    pub(crate) fn current(&self) -> Option<Rc<KeySet>> {
        let shared = self.shared_version();
        let cached = self.cached.borrow().clone();
        match (cached, shared) {
            (Some(keys), Some(v)) if keys.version() >= v => Some(keys),
            (cached, Some(_)) => self.reload().or(cached),
            (cached, None) => cached,
        }
    }

    fn reload(&self) -> Option<Rc<KeySet>> {
        let bytes = host::shared_get(&self.bundle_key).0?;
        match KeySet::parse_bundle(&bytes) {
            Ok((keys, _)) => {
                let keys = Rc::new(keys);
                *self.cached.borrow_mut() = Some(keys.clone());
                Some(keys)
            }
            Err(e) => {
                // Only validated bundles are stored, so this means shared data was changed by something else.
                log::error!("bundle in shared data does not parse: {e}");
                None
            }
        }
    }

    /// Publishes a validated bundle to every worker, unless shared data already holds this version or a newer one.
    pub(crate) fn publish(&self, bytes: &[u8], keys: KeySet) -> bool {
        let (current, cas) = host::shared_get(&self.version_key);
        if parse_u64(current).is_some_and(|v| v >= keys.version()) {
            return false;
        }
        let version = keys.version();
        if let Err(e) = host::shared_set(&self.bundle_key, bytes, None) {
            log::error!("cannot store bundle v{version} in shared data: {e:?}");
            return false;
        }
        if let Err(e) = host::shared_set(&self.version_key, version.to_string().as_bytes(), cas) {
            log::warn!("bundle version v{version} raced with another writer: {e:?}");
        }
        *self.cached.borrow_mut() = Some(Rc::new(keys));
        true
    }

    /// Takes the fetch lease until `until_ms` if nobody holds it; one root context per Envoy fetches at a time.
    pub(crate) fn try_lease(&self, now_ms: u64, until_ms: u64) -> bool {
        let (holder, cas) = host::shared_get(&self.lease_key);
        if parse_u64(holder).is_some_and(|until| until > now_ms) {
            return false;
        }
        host::shared_set(&self.lease_key, until_ms.to_string().as_bytes(), cas).is_ok()
    }
}

fn parse_u64(bytes: Option<Vec<u8>>) -> Option<u64> {
    std::str::from_utf8(&bytes?).ok()?.parse().ok()
}
