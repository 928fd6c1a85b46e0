//! Envoy stats the filter exposes (`wasmcustom.keymesh.authn.*` in Envoy's stats).

use crate::host;
use std::cell::RefCell;
use std::collections::HashMap;

/// Metric ids of one VM; verdict counters are defined on first use.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) bundle_version: Option<u32>,
    pub(crate) bundle_age_ms: Option<u32>,
    pub(crate) bundle_fetch_failures: Option<u32>,
    pub(crate) bundle_rejected: Option<u32>,
    pub(crate) allowed: Option<u32>,
    denied: RefCell<HashMap<&'static str, Option<u32>>>,
}

impl Metrics {
    pub(crate) fn define() -> Self {
        Self {
            bundle_version: host::define_gauge("keymesh.authn.bundle_version"),
            bundle_age_ms: host::define_gauge("keymesh.authn.bundle_age_ms"),
            bundle_fetch_failures: host::define_counter("keymesh.authn.bundle_fetch_failures"),
            bundle_rejected: host::define_counter("keymesh.authn.bundle_rejected"),
            allowed: host::define_counter("keymesh.authn.allowed"),
            denied: RefCell::default(),
        }
    }

    /// Counts a denial under its reason label (`keymesh.authn.denied.<label>`).
    pub(crate) fn denied(&self, label: &'static str) {
        let id = *self
            .denied
            .borrow_mut()
            .entry(label)
            .or_insert_with(|| host::define_counter(&format!("keymesh.authn.denied.{label}")));
        host::increment(id);
    }
}
