//! The root context: configuration, and keeping the key material current. One root per Envoy (elected through a
//! shared-data lease) asks the sidecar for changes since the version it holds; with `long_poll_secs` the sidecar
//! holds that request open until something changes, so a revocation reaches the proxy as soon as it is written.
//! A full resync comes in pages: each answer stored asks for the next page from the call-response callback.

use crate::host::{self, HostSharedData};
use crate::http::AuthnHttp;
use crate::metrics::Metrics;
use keymesh_core::delivery::fetch::REFETCH_EVERY_MS;
use keymesh_core::delivery::{BundleFetcher, FetchOutcome, SharedKeyMaterial};
use keymesh_core::usage::{UsageCounter, DEFAULT_CAPACITY};
use keymesh_core::{FilterConfig, TokenCache};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

/// One configured plugin instance on this worker: what every HTTP context of the root needs.
#[derive(Debug)]
pub(crate) struct ConfiguredFilter {
    pub(crate) config: FilterConfig,
    /// The key material in Envoy shared data, and this worker's parsed copy of it.
    pub(crate) material: SharedKeyMaterial<HostSharedData>,
    pub(crate) metrics: Metrics,
    /// This worker's verified-token cache (per VM: workers are separate V8 isolates).
    pub(crate) tokens: TokenCache,
    /// A `kid` a request named that no external issuer's keys have: sent to the sidecar on the next tick, so
    /// that a key an identity provider has just rolled out is fetched without waiting for its schedule.
    pub(crate) refetch_hint: RefCell<Option<String>>,
    /// This worker's API key use counts since its last report; `None` when reporting is off.
    pub(crate) usage: Option<RefCell<UsageCounter>>,
}

/// The root context of one plugin instance on one worker.
#[derive(Default)]
pub(crate) struct AuthnRoot {
    filter: Option<Rc<ConfiguredFilter>>,
    /// When to fetch and what an answer means (core's state machine); `None` until configured.
    fetcher: Option<BundleFetcher>,
    /// Token of the bundle fetch in flight, if any.
    in_flight: Option<u32>,
    /// Token of the refetch request in flight, if any.
    refetch_in_flight: Option<u32>,
    /// Token of the usage report in flight, if any.
    usage_in_flight: Option<u32>,
    /// When this worker last reported API key use (ms since the epoch; 0 before the first tick).
    usage_reported_at_ms: u64,
    /// `x-keymesh-proxy` sent with each fetch, so the sidecar can tell which proxy holds which version.
    proxy_id: String,
}

impl AuthnRoot {
    /// Fetches changes if this root holds (or can take) the Envoy-wide fetch lease.
    fn maybe_fetch(&mut self) {
        let (Some(filter), Some(fetcher)) = (self.filter.clone(), self.fetcher.as_ref()) else {
            return;
        };
        if self.in_flight.is_some() {
            return;
        }
        let sidecar = &filter.config.sidecar;
        let Some(request) = fetcher.next_request(&filter.material, sidecar, host::now_ms()) else {
            return;
        };
        let mut extra = vec![("x-keymesh-proxy", self.proxy_id.as_str())];
        if let Some(tag) = &request.if_none_match {
            extra.push(("if-none-match", tag.as_str()));
        }
        match host::dispatch_get(
            &sidecar.cluster,
            &sidecar.authority,
            &request.path,
            &extra,
            Duration::from_millis(request.timeout_ms),
        ) {
            Ok(token) => self.in_flight = Some(token),
            Err(status) => {
                fetcher.dispatch_refused(&filter.material);
                host::increment(filter.metrics.bundle_fetch_failures);
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
        let Some(filter) = self.filter.clone() else {
            return;
        };
        if self.refetch_in_flight.is_some() {
            return;
        }
        let Some(kid) = filter.refetch_hint.borrow_mut().take() else {
            return;
        };
        if !filter
            .material
            .try_refetch_slot(host::now_ms(), REFETCH_EVERY_MS)
        {
            return;
        }
        let sidecar = &filter.config.sidecar;
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
}

impl AuthnRoot {
    /// Hands this worker's API key use counts to the sidecar once per `usage_report_ms`, in one call. The counts
    /// taken are the call's: if it cannot be sent or fails, they are lost (requests never wait for it).
    fn maybe_report_usage(&mut self) {
        let Some(filter) = self.filter.clone() else {
            return;
        };
        let Some(usage) = &filter.usage else {
            return;
        };
        let sidecar = &filter.config.sidecar;
        let now = host::now_ms();
        if self.usage_reported_at_ms == 0 {
            self.usage_reported_at_ms = now;
            return;
        }
        if self.usage_in_flight.is_some()
            || now.saturating_sub(self.usage_reported_at_ms) < sidecar.usage_report_ms
        {
            return;
        }
        self.usage_reported_at_ms = now;
        let (report, dropped) = {
            let mut counter = usage.borrow_mut();
            let dropped = counter.dropped();
            (counter.take_report(), dropped)
        };
        if dropped > 0 {
            host::add(filter.metrics.usage_dropped, dropped);
        }
        let Some(report) = report else {
            return;
        };
        let Ok(body) = serde_json::to_vec(&report) else {
            return;
        };
        match host::dispatch_post_json(
            &sidecar.cluster,
            &sidecar.authority,
            &sidecar.usage_path,
            &body,
            Duration::from_millis(sidecar.timeout_ms),
        ) {
            Ok(token) => self.usage_in_flight = Some(token),
            Err(status) => {
                host::increment(filter.metrics.usage_report_failures);
                log::debug!("cannot report api key use: {status:?}");
            }
        }
    }
}

/// Logs and counts what a bundle answer came to.
fn report(filter: &ConfiguredFilter, outcome: &FetchOutcome) {
    if outcome.is_rejected_bundle() {
        host::increment(filter.metrics.bundle_rejected);
    }
    if outcome.is_failed_fetch() {
        host::increment(filter.metrics.bundle_fetch_failures);
    }
    match outcome {
        FetchOutcome::Stored {
            version,
            delta,
            puts,
            deletes,
            skipped,
        } => {
            for reason in skipped {
                log::warn!("bundle key left out: {reason}");
            }
            // The other keys of a provider with one unusable key keep working; this gauge says how many were not.
            let refused = u64::try_from(skipped.len()).unwrap_or(u64::MAX);
            host::record(filter.metrics.bundle_keys_refused, refused);
            host::record(filter.metrics.bundle_version, *version);
            let kind = if *delta { "delta" } else { "full" };
            log::info!(
                "bundle v{version} applied ({kind}: {puts} api keys put, {deletes} deleted)"
            );
        }
        FetchOutcome::PageStored {
            version,
            pages,
            keys_read,
            keys_total,
        } => {
            log::debug!(
                "bundle v{version}: page {pages} stored ({keys_read} of {keys_total} api keys)"
            );
        }
        FetchOutcome::OutOfStep => {
            log::warn!(
                "bundle resync out of step (another version or shared data moved); starting again"
            );
        }
        FetchOutcome::NotModified | FetchOutcome::AlreadyHeld => {}
        FetchOutcome::DeltaMismatch => {
            log::warn!("bundle delta does not apply to the version held; asking for a full bundle");
        }
        FetchOutcome::Rejected(e) => {
            log::warn!("bundle from sidecar rejected, keeping the last good one: {e}");
        }
        FetchOutcome::NoBody => log::warn!("bundle response had no body"),
        FetchOutcome::StoreFailed(e) => log::error!("{e}"),
        FetchOutcome::HttpStatus(status) => log::warn!("bundle fetch answered {status}"),
        // Envoy answers a failed or timed-out call with no headers.
        FetchOutcome::Unreachable => {
            log::warn!("bundle fetch failed (sidecar unreachable or timed out)");
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
        if self.usage_in_flight == Some(token) {
            self.usage_in_flight = None;
            match host::call_response_status() {
                Some(200..=299) => {}
                other => {
                    if let Some(filter) = &self.filter {
                        host::increment(filter.metrics.usage_report_failures);
                    }
                    log::debug!("api key use report answered {other:?}; its counts are lost");
                }
            }
            return;
        }
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
        let (Some(filter), Some(fetcher)) = (self.filter.clone(), self.fetcher.as_mut()) else {
            return;
        };
        let status = host::call_response_status();
        let body = (status == Some(200) && body_size > 0)
            .then_some(host::CallResponseBody { size: body_size });
        let (outcome, fetch_again) =
            fetcher.answered_from(&filter.material, status, body, host::now_ms());
        report(&filter, &outcome);
        if fetch_again {
            self.maybe_fetch();
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
        let period = BundleFetcher::startup_tick_ms(&config.sidecar);
        if let Err(status) = host::set_tick_period(Duration::from_millis(period)) {
            log::error!("refusing configuration: cannot set tick period: {status:?}");
            return false;
        }
        host::sync_log_level();
        let material = SharedKeyMaterial::new(
            HostSharedData::new(),
            &config.sidecar.cluster,
            &config.sidecar.path,
        );
        self.fetcher = Some(BundleFetcher::new(material.register_root()));
        self.proxy_id = host::node_id().unwrap_or_else(|| "unknown".into());
        let tokens = TokenCache::new(config.token_cache_size);
        let usage = (config.sidecar.usage_report_ms > 0)
            .then(|| RefCell::new(UsageCounter::new(DEFAULT_CAPACITY)));
        self.filter = Some(Rc::new(ConfiguredFilter {
            config,
            material,
            metrics: Metrics::define(),
            tokens,
            refetch_hint: RefCell::new(None),
            usage,
        }));
        self.in_flight = None;
        self.refetch_in_flight = None;
        self.usage_in_flight = None;
        true
    }

    fn on_tick(&mut self) {
        host::sync_log_level();
        if let Some(filter) = &self.filter {
            filter.metrics.flush();
            host::record(
                filter.metrics.bundle_age_ms,
                filter.material.age_ms(host::now_ms()),
            );
            if let Some(fetcher) = self.fetcher.as_mut() {
                let emptied = fetcher.on_tick(&filter.material);
                if emptied > 0 {
                    log::debug!("emptied {emptied} api key buckets of the retired slot");
                }
            }
            let steady = self.fetcher.as_mut().and_then(|fetcher| {
                fetcher.leave_startup(&filter.material, &filter.config.sidecar)
            });
            if let Some(period) = steady {
                if let Err(status) = host::set_tick_period(Duration::from_millis(period)) {
                    log::warn!("cannot set tick period: {status:?}");
                }
            }
        }
        self.maybe_fetch();
        self.maybe_refetch();
        self.maybe_report_usage();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthnHttp::new(self.filter.clone())))
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
