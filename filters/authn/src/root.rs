//! The root context: configuration, and keeping the key material current. One root per Envoy (elected through a
//! shared-data lease) asks the sidecar for changes since the version it holds; with `long_poll_secs` the sidecar
//! holds that request open until something changes, so a revocation reaches the proxy as soon as it is written.

use crate::host;
use crate::http::AuthnHttp;
use crate::metrics::Metrics;
use crate::store::{Applied, BundleStore};
use keymesh_core::bundle::{etag, BundleDto};
use keymesh_core::{FilterConfig, KeySet, TokenCache};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

/// What every HTTP context of this root needs.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: FilterConfig,
    pub(crate) store: BundleStore,
    pub(crate) metrics: Metrics,
    /// This worker's verified-token cache (per VM: workers are separate V8 isolates).
    pub(crate) tokens: TokenCache,
    /// A `kid` a request named that no external issuer's keys have: sent to the sidecar on the next tick, so
    /// that a key an identity provider has just rolled out is fetched without waiting for its schedule.
    pub(crate) refetch_hint: RefCell<Option<String>>,
}

/// The root context of one plugin instance on one worker.
#[derive(Default)]
pub(crate) struct AuthnRoot {
    shared: Option<Rc<Shared>>,
    /// This root's id in the fetch lease.
    owner: u64,
    /// Token of the bundle fetch in flight, if any.
    in_flight: Option<u32>,
    /// Token of the refetch request in flight, if any.
    refetch_in_flight: Option<u32>,
    /// Ticking fast until the first bundle is in shared data.
    starting: bool,
    /// The last delta did not fit the version held: ask for a full bundle.
    need_full: bool,
    /// `x-keymesh-proxy` sent with each fetch, so the sidecar can tell which proxy holds which version.
    proxy_id: String,
}

/// Tick period before the first bundle arrives: requests fail closed until then, so don't wait a full interval.
const STARTUP_TICK: Duration = Duration::from_millis(200);

/// One refetch request per Envoy at most this often; the sidecar throttles per issuer on top.
const REFETCH_EVERY_MS: u64 = 5_000;

impl AuthnRoot {
    /// Fetches changes if this root holds (or can take) the Envoy-wide fetch lease.
    fn maybe_fetch(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if self.in_flight.is_some() {
            return;
        }
        let sidecar = &shared.config.sidecar;
        let have = if self.need_full {
            None
        } else {
            shared.store.shared_version()
        };
        // Long-poll only once something is held: the first bundle should come back at once.
        let wait_secs = if have.is_some() {
            sidecar.long_poll_secs
        } else {
            0
        };
        let timeout_ms = sidecar
            .timeout_ms
            .saturating_add(wait_secs.saturating_mul(1000));
        let tick_ms = if self.starting {
            u64::try_from(STARTUP_TICK.as_millis()).unwrap_or(200)
        } else {
            sidecar.refresh_interval_ms
        };
        // Held for the whole call, and a little less than one tick beyond it, so another worker takes over
        // promptly if this one stops asking.
        let now = host::now_ms();
        let until = now
            .saturating_add(timeout_ms)
            .saturating_add(tick_ms.saturating_mul(9) / 10);
        if !shared.store.try_lease(self.owner, now, until) {
            return;
        }
        let path = if wait_secs > 0 {
            format!("{}?wait={wait_secs}", sidecar.path)
        } else {
            sidecar.path.clone()
        };
        let tag = have.map(etag);
        let mut extra = vec![("x-keymesh-proxy", self.proxy_id.as_str())];
        if let Some(tag) = &tag {
            extra.push(("if-none-match", tag.as_str()));
        }
        match host::dispatch_get(
            &sidecar.cluster,
            &sidecar.authority,
            &path,
            &extra,
            Duration::from_millis(timeout_ms),
        ) {
            Ok(token) => self.in_flight = Some(token),
            Err(status) => {
                // Nothing is in flight: let any worker try on its next tick instead of holding the lease for a
                // whole fetch timeout (at startup this root may be one Envoy does not yet let dispatch).
                shared.store.release_lease(self.owner);
                host::increment(shared.metrics.bundle_fetch_failures);
                log::warn!(
                    "cannot dispatch bundle fetch to cluster `{}`: {status:?}",
                    sidecar.cluster
                );
            }
        }
    }

    /// Asks the sidecar to refetch external issuers' keys if a request named an unknown `kid` since the last
    /// tick and no worker of this Envoy has asked recently. The request that named it has been refused already;
    /// tokens signed with the new key pass once the sidecar has fetched it and the bundle has reached the proxy.
    fn maybe_refetch(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if self.refetch_in_flight.is_some() {
            return;
        }
        let Some(kid) = shared.refetch_hint.borrow_mut().take() else {
            return;
        };
        if !shared
            .store
            .try_refetch_slot(host::now_ms(), REFETCH_EVERY_MS)
        {
            return;
        }
        let sidecar = &shared.config.sidecar;
        let body = format!("kid={}", form_encode(&kid));
        match host::dispatch_post_form(
            &sidecar.cluster,
            &sidecar.authority,
            &sidecar.refetch_path,
            &body,
            Duration::from_millis(sidecar.timeout_ms),
        ) {
            Ok(token) => self.refetch_in_flight = Some(token),
            Err(status) => log::warn!("cannot ask the sidecar to refetch keys: {status:?}"),
        }
    }

    /// Validates and stores a bundle; true when something new was stored.
    fn accept_bundle(&mut self, shared: &Shared, body: &[u8]) -> bool {
        let parsed = serde_json::from_slice::<BundleDto>(body)
            .map_err(|e| e.to_string())
            .and_then(|dto| {
                KeySet::from_bundle(&dto)
                    .map(|k| (dto, k))
                    .map_err(|e| e.to_string())
            });
        let (dto, (keys, skipped)) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                // Keep the last good bundle: a broken response must not take keys away.
                host::increment(shared.metrics.bundle_rejected);
                log::warn!("bundle from sidecar rejected, keeping the last good one: {e}");
                return false;
            }
        };
        for reason in &skipped {
            log::warn!("bundle key left out: {reason}");
        }
        let (version, delta) = (dto.version, dto.since.is_some());
        let (puts, deletes) = (dto.api_keys.put.len(), dto.api_keys.delete.len());
        match shared.store.apply(dto, keys, host::now_ms()) {
            Applied::Stored => {
                self.need_full = false;
                host::record(shared.metrics.bundle_version, version);
                let kind = if delta { "delta" } else { "full" };
                log::info!(
                    "bundle v{version} applied ({kind}: {puts} api keys put, {deletes} deleted)"
                );
                true
            }
            Applied::Stale => false,
            Applied::Mismatch => {
                self.need_full = true;
                log::warn!(
                    "bundle delta does not apply to the version held; asking for a full bundle"
                );
                false
            }
            Applied::Failed => {
                self.need_full = true;
                host::increment(shared.metrics.bundle_rejected);
                false
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
        if self.refetch_in_flight == Some(token) {
            self.refetch_in_flight = None;
            match host::call_response_status() {
                Some(202) => log::debug!("sidecar accepted the key refetch request"),
                other => log::warn!("key refetch request answered {other:?}"),
            }
            return;
        }
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let status = host::call_response_status();
        if matches!(status, Some(200 | 304)) {
            shared.store.mark_fresh(host::now_ms());
        }
        match status {
            Some(200) => match host::call_response_body(body_size) {
                // Something changed: ask again at once, there may be more.
                Some(body) => {
                    if self.accept_bundle(&shared, &body) || self.need_full {
                        self.maybe_fetch();
                    }
                }
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
        self.owner = store.register_root();
        self.proxy_id = host::node_id().unwrap_or_else(|| "unknown".into());
        let tokens = TokenCache::new(config.token_cache_size);
        self.shared = Some(Rc::new(Shared {
            config,
            store,
            metrics: Metrics::define(),
            tokens,
            refetch_hint: RefCell::new(None),
        }));
        self.in_flight = None;
        self.refetch_in_flight = None;
        self.starting = true;
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            shared.metrics.flush();
            host::record(
                shared.metrics.bundle_age_ms,
                shared.store.age_ms(host::now_ms()),
            );
        }
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
        self.maybe_refetch();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthnHttp::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// `application/x-www-form-urlencoded` value encoding: unreserved characters as they are, the rest as `%XX`.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
