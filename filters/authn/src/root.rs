//! The root context: configuration, and fetching the key bundle from the sidecar on a tick.

use crate::host;
use crate::http::AuthnHttp;
use crate::metrics::Metrics;
use crate::store::BundleStore;
use keymesh_core::bundle::etag;
use keymesh_core::{FilterConfig, KeySet};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;
use std::time::Duration;

/// What every HTTP context of this root needs.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: FilterConfig,
    pub(crate) store: BundleStore,
    pub(crate) metrics: Metrics,
}

/// The root context of one plugin instance on one worker.
#[derive(Default)]
pub(crate) struct AuthnRoot {
    shared: Option<Rc<Shared>>,
    /// Token of the bundle fetch in flight, if any.
    in_flight: Option<u32>,
    /// Ticking fast until the first bundle is in shared data.
    starting: bool,
}

/// Tick period before the first bundle arrives: requests fail closed until then, so don't wait a full interval.
const STARTUP_TICK: Duration = Duration::from_millis(200);

impl AuthnRoot {
    /// Fetches the bundle if this root holds the Envoy-wide fetch lease.
    fn maybe_fetch(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if self.in_flight.is_some() {
            return;
        }
        let sidecar = &shared.config.sidecar;
        let now = host::now_ms();
        // The lease lasts a little less than one tick so the next tick of any worker can take it over.
        let tick_ms = if self.starting {
            u64::try_from(STARTUP_TICK.as_millis()).unwrap_or(200)
        } else {
            sidecar.refresh_interval_ms
        };
        let lease = tick_ms.saturating_mul(9) / 10;
        if !shared.store.try_lease(now, now.saturating_add(lease)) {
            return;
        }
        let have = shared.store.shared_version().map(etag);
        let mut extra = Vec::new();
        if let Some(tag) = &have {
            extra.push(("if-none-match", tag.as_str()));
        }
        match host::dispatch_get(
            &sidecar.cluster,
            &sidecar.authority,
            &sidecar.path,
            &extra,
            Duration::from_millis(sidecar.timeout_ms),
        ) {
            Ok(token) => self.in_flight = Some(token),
            Err(status) => {
                host::increment(shared.metrics.bundle_fetch_failures);
                log::warn!(
                    "cannot dispatch bundle fetch to cluster `{}`: {status:?}",
                    sidecar.cluster
                );
            }
        }
    }

    fn accept_bundle(shared: &Shared, body: &[u8]) {
        match KeySet::parse_bundle(body) {
            Ok((keys, skipped)) => {
                for reason in &skipped {
                    log::warn!("bundle key left out: {reason}");
                }
                let version = keys.version();
                let count = keys.len();
                if shared.store.publish(body, keys) {
                    host::record(shared.metrics.bundle_version, version);
                    log::info!("bundle v{version} applied ({count} keys)");
                }
            }
            Err(e) => {
                // Keep the last good bundle: a broken response must not take keys away.
                host::increment(shared.metrics.bundle_rejected);
                log::warn!("bundle from sidecar rejected, keeping the last good one: {e}");
            }
        }
    }
}

impl Context for AuthnRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let Some(shared) = self.shared.clone() else {
            return;
        };
        match host::call_response_status() {
            Some(200) => match host::call_response_body(body_size) {
                Some(body) => Self::accept_bundle(&shared, &body),
                None => {
                    host::increment(shared.metrics.bundle_rejected);
                    log::warn!("bundle response had no body");
                }
            },
            Some(304) => {}
            Some(status) => {
                host::increment(shared.metrics.bundle_fetch_failures);
                log::warn!("bundle fetch answered {status}");
            }
            None => {
                // Envoy answers a failed or timed-out call with no headers.
                host::increment(shared.metrics.bundle_fetch_failures);
                log::warn!("bundle fetch failed (sidecar unreachable or timed out)");
            }
        }
    }
}

impl RootContext for AuthnRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration().filter(|b| !b.is_empty()) else {
            log::error!("refusing configuration: the plugin configuration is empty");
            return false;
        };
        let config = match FilterConfig::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log::error!("refusing configuration: {e}");
                return false;
            }
        };
        // Envoy refuses http calls while configuring (the cluster manager is not ready), so the first fetch
        // happens on the first tick.
        let period = Duration::from_millis(config.sidecar.refresh_interval_ms).min(STARTUP_TICK);
        if let Err(status) = host::set_tick_period(period) {
            log::error!("refusing configuration: cannot set tick period: {status:?}");
            return false;
        }
        let store = BundleStore::new(&config.sidecar.cluster, &config.sidecar.path);
        self.shared = Some(Rc::new(Shared {
            config,
            store,
            metrics: Metrics::define(),
        }));
        self.in_flight = None;
        self.starting = true;
        true
    }

    fn on_tick(&mut self) {
        if self.starting {
            if let Some(shared) = &self.shared {
                if shared.store.shared_version().is_some() {
                    self.starting = false;
                    let period = Duration::from_millis(shared.config.sidecar.refresh_interval_ms);
                    if let Err(status) = host::set_tick_period(period) {
                        log::warn!("cannot set tick period: {status:?}");
                    }
                }
            }
        }
        self.maybe_fetch();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthnHttp::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
