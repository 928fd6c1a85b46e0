//! Envoy stats the filter exposes (`wasmcustom.keymesh.authn.*` in Envoy's stats).
//!
//! Verdict counters are counted in the worker and handed to Envoy on the root's tick (every
//! `sidecar.refresh_interval_ms`), so a request does not pay a host call for its counter; they lag by at most one
//! tick.

use crate::host;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Metric ids of one VM; denial counters are defined on first use.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) bundle_version: Option<u32>,
    pub(crate) bundle_age_ms: Option<u32>,
    pub(crate) bundle_fetch_failures: Option<u32>,
    pub(crate) bundle_rejected: Option<u32>,
    /// Keys (or whole issuers) left out of the bundle last applied, because they cannot be used.
    pub(crate) bundle_keys_refused: Option<u32>,
    /// API key uses not counted for last-used because the worker's map was full.
    pub(crate) usage_dropped: Option<u32>,
    /// Usage reports that could not be sent or that the sidecar refused (their counts are lost).
    pub(crate) usage_report_failures: Option<u32>,
    allowed: Option<u32>,
    /// Allowed requests not yet handed to Envoy.
    allowed_pending: Cell<u64>,
    /// Per denial label: the counter and the denials not yet handed to Envoy.
    denied: RefCell<HashMap<&'static str, (Option<u32>, u64)>>,
}

impl Metrics {
    pub(crate) fn define() -> Self {
        Self {
            bundle_version: host::define_gauge("keymesh.authn.bundle_version"),
            bundle_age_ms: host::define_gauge("keymesh.authn.bundle_age_ms"),
            bundle_fetch_failures: host::define_counter("keymesh.authn.bundle_fetch_failures"),
            bundle_rejected: host::define_counter("keymesh.authn.bundle_rejected"),
            bundle_keys_refused: host::define_gauge("keymesh.authn.bundle_keys_refused"),
            usage_dropped: host::define_counter("keymesh.authn.usage_dropped"),
            usage_report_failures: host::define_counter("keymesh.authn.usage_report_failures"),
            allowed: host::define_counter("keymesh.authn.allowed"),
            allowed_pending: Cell::new(0),
            denied: RefCell::default(),
        }
    }

    /// Counts an allowed request (`keymesh.authn.allowed`).
    pub(crate) fn allowed(&self) {
        self.allowed_pending
            .set(self.allowed_pending.get().saturating_add(1));
    }

    /// Counts a denial under its reason label (`keymesh.authn.denied.<label>`).
    pub(crate) fn denied(&self, label: &'static str) {
        let mut denied = self.denied.borrow_mut();
        let entry = denied.entry(label).or_insert_with(|| {
            (
                host::define_counter(&format!("keymesh.authn.denied.{label}")),
                0,
            )
        });
        entry.1 = entry.1.saturating_add(1);
    }

    /// Hands the counts gathered since the last flush to Envoy.
    pub(crate) fn flush(&self) {
        host::add(self.allowed, self.allowed_pending.replace(0));
        for (id, pending) in self.denied.borrow_mut().values_mut() {
            host::add(*id, std::mem::take(pending));
        }
    }
}
