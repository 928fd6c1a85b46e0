//! Test fixture for `keymesh-wasm-host`: a deliberately small proxy-wasm filter whose behaviour is
//! keyed on request headers, so each host test can exercise one ABI area.
//!
//! Root context: reads `plugin_root_id` and the plugin configuration (`tick_ms=N`, `reject` to
//! fail configuration, or `tcp` to act as a TCP filter), defines metrics, and on every tick fetches `/keys` from cluster `keys`,
//! storing the response body in shared data under `fixture.keys` with a CAS write.
//!
//! HTTP context, on request headers:
//! - counts the request (`fixture.requests_total` counter, `fixture.active_streams` gauge);
//! - `x-fixture-panic` panics (to prove traps are reported);
//! - a `:path` starting with `/deny` sends a 403 local response and pauses;
//! - `x-fixture-bad-reply` sends a 418 local response and (wrongly) continues;
//! - `x-fixture-property: a.b` reads property `a`/`b` into `x-fixture-property-value`;
//! - `x-fixture-call` dispatches a call to cluster `authz`, pausing until its answer;
//! - `x-fixture-grpc` dispatches a gRPC call and pauses until it is closed;
//! - `x-fixture-enqueue: v` enqueues `v` on the root's shared queue;
//! - otherwise adds `x-fixture-added`, removes `x-fixture-remove`, replaces `x-fixture-replace`;
//!   `x-fixture-cas-write: N` writes `fixture.keys` with CAS `N` (result in `x-fixture-cas-result`);
//!   and it copies shared `fixture.keys` and its CAS into `x-fixture-keys`/`x-fixture-keys-cas`.
//!
//! Request bodies are buffered to the end and `secret` is masked; response headers get
//! `x-fixture-response`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEYS_SHARED_KEY: &str = "fixture.keys";
const QUEUE_NAME: &str = "fixture.queue";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FixtureRoot::default()) });
}}

/// Metric ids defined by the root context and handed to every HTTP context.
#[derive(Clone, Copy, Default)]
struct Metrics {
    requests_total: u32,
    active_streams: u32,
    body_bytes: u32,
    fetch_failures: u32,
}

#[derive(Default)]
struct FixtureRoot {
    metrics: Metrics,
    fetch_in_flight: Option<u32>,
    queue_id: u32,
    /// Configured `tcp`: the root creates stream (TCP) contexts, to prove the host names the problem.
    tcp: bool,
}

/// The stream context of the `tcp` configuration; it does nothing.
struct FixtureTcp;

impl Context for FixtureTcp {}

impl proxy_wasm::traits::StreamContext for FixtureTcp {}

impl FixtureRoot {
    fn define_metrics(&mut self) -> Result<(), Status> {
        use proxy_wasm::hostcalls::define_metric;
        self.metrics = Metrics {
            requests_total: define_metric(MetricType::Counter, "fixture.requests_total")?,
            active_streams: define_metric(MetricType::Gauge, "fixture.active_streams")?,
            body_bytes: define_metric(MetricType::Histogram, "fixture.body_bytes")?,
            fetch_failures: define_metric(MetricType::Counter, "fixture.fetch_failures")?,
        };
        Ok(())
    }

    fn store_keys(&self, body: &[u8]) {
        // A CAS loop, as a real filter sharing state across worker VMs must do.
        for _ in 0..3 {
            let (_, cas) = self.get_shared_data(KEYS_SHARED_KEY);
            match self.set_shared_data(KEYS_SHARED_KEY, Some(body), cas) {
                Ok(()) => {
                    log::info!("stored {} key bytes", body.len());
                    return;
                }
                Err(Status::CasMismatch) => continue,
                Err(status) => {
                    log::error!("storing keys failed: {status:?}");
                    return;
                }
            }
        }
        log::error!("storing keys failed: cas contention");
    }
}

impl Context for FixtureRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        self.fetch_in_flight = None;
        if num_headers == 0 {
            log::warn!("key fetch {token_id} failed");
            let _ = proxy_wasm::hostcalls::increment_metric(self.metrics.fetch_failures, 1);
            return;
        }
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        if status != "200" {
            log::warn!("key fetch {token_id} returned status {status}");
            return;
        }
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        self.store_keys(&body);
    }
}

impl RootContext for FixtureRoot {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool {
        log::info!("vm started with {vm_configuration_size} configuration bytes");
        // WASI plumbing: stdout, environment, wall clock and the random source behind `RandomState`.
        println!("fixture vm starting");
        let mode = std::env::var("FIXTURE_MODE").unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let hash = RandomState::new().hash_one("fixture");
        log::info!("wasi mode={mode} now={now} hash={hash:x}");
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let root_id = self
            .get_property(vec!["plugin_root_id"])
            .unwrap_or_default();
        log::info!("configuring root id {}", String::from_utf8_lossy(&root_id));
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        self.tcp = config.trim() == "tcp";
        if config.trim() == "reject" {
            log::error!("configuration rejected");
            return false;
        }
        if let Err(status) = self.define_metrics() {
            log::error!("defining metrics failed: {status:?}");
            return false;
        }
        self.queue_id = self.register_shared_queue(QUEUE_NAME);
        if let Some(ms) = config.trim().strip_prefix("tick_ms=") {
            match ms.parse::<u64>() {
                Ok(ms) => self.set_tick_period(Duration::from_millis(ms)),
                Err(_) => {
                    log::error!("bad tick_ms {ms:?}");
                    return false;
                }
            }
        }
        true
    }

    fn on_tick(&mut self) {
        if self.fetch_in_flight.is_some() {
            log::debug!("key fetch still in flight");
            return;
        }
        let headers = vec![
            (":method", "GET"),
            (":path", "/keys"),
            (":authority", "keys.local"),
        ];
        match self.dispatch_http_call("keys", headers, None, vec![], Duration::from_secs(5)) {
            Ok(token) => {
                log::debug!("dispatched key fetch {token}");
                self.fetch_in_flight = Some(token);
            }
            Err(status) => log::error!("key fetch dispatch failed: {status:?}"),
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            log::info!("dequeued {}", String::from_utf8_lossy(&item));
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FixtureHttp {
            metrics: self.metrics,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(if self.tcp {
            ContextType::StreamContext
        } else {
            ContextType::HttpContext
        })
    }

    fn create_stream_context(&self, _: u32) -> Option<Box<dyn proxy_wasm::traits::StreamContext>> {
        Some(Box::new(FixtureTcp))
    }
}

struct FixtureHttp {
    metrics: Metrics,
}

impl FixtureHttp {
    fn count(&self, metric: u32, offset: i64) {
        if let Err(status) = proxy_wasm::hostcalls::increment_metric(metric, offset) {
            log::error!("metric {metric} update failed: {status:?}");
        }
    }
}

impl Context for FixtureHttp {
    fn on_http_call_response(&mut self, _: u32, num_headers: usize, _: usize, _: usize) {
        // A reset call has no response maps: Envoy answers a lookup `BadArgument`, and the SDK panics.
        let status = if num_headers == 0 {
            None
        } else {
            self.get_http_call_response_header(":status")
        };
        if status.as_deref() == Some("200") {
            self.add_http_request_header("x-authz", "ok");
            self.resume_http_request();
        } else {
            log::warn!("authz call failed: {status:?}");
            self.send_http_response(
                401,
                vec![("www-authenticate", "Fixture")],
                Some(b"unauthorized"),
            );
        }
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, _: usize) {
        log::warn!("grpc call {token_id} closed with status {status_code}");
        self.resume_http_request();
    }
}

impl HttpContext for FixtureHttp {
    #[allow(
        clippy::panic,
        reason = "the fixture panics on purpose to prove traps are reported"
    )]
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.count(self.metrics.requests_total, 1);
        self.count(self.metrics.active_streams, 1);
        if self.get_http_request_header("x-fixture-panic").is_some() {
            panic!("fixture panic requested by x-fixture-panic header");
        }
        let path = self.get_http_request_header(":path").unwrap_or_default();
        log::info!("request {path}");
        if path.starts_with("/deny") {
            self.send_http_response(403, vec![("x-denied-by", "fixture")], Some(b"denied"));
            return Action::Pause;
        }
        if self
            .get_http_request_header("x-fixture-bad-reply")
            .is_some()
        {
            // Deliberately wrong, to prove the host rejects Continue after a local reply.
            self.send_http_response(418, vec![], None);
            return Action::Continue;
        }
        if let Some(property) = self.get_http_request_header("x-fixture-property") {
            let value = self.get_property(property.split('.').collect());
            let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
            self.set_http_request_header(
                "x-fixture-property-value",
                Some(value.as_deref().unwrap_or("<none>")),
            );
        }
        if self.get_http_request_header("x-fixture-call").is_some() {
            let headers = vec![
                (":method", "POST"),
                (":path", "/check"),
                (":authority", "authz"),
                ("x-path", path.as_str()),
            ];
            return match self.dispatch_http_call(
                "authz",
                headers,
                Some(b"check"),
                vec![],
                Duration::from_millis(250),
            ) {
                Ok(_) => Action::Pause,
                Err(status) => {
                    log::error!("authz dispatch failed: {status:?}");
                    self.send_http_response(500, vec![], None);
                    Action::Pause
                }
            };
        }
        if self.get_http_request_header("x-fixture-grpc").is_some() {
            let call = self.dispatch_grpc_call(
                "authz",
                "fixture.Authz",
                "Check",
                vec![],
                Some(b"req"),
                Duration::from_secs(1),
            );
            return match call {
                Ok(_) => Action::Pause,
                Err(status) => {
                    log::error!("grpc dispatch failed: {status:?}");
                    Action::Continue
                }
            };
        }
        if let Some(item) = self.get_http_request_header("x-fixture-enqueue") {
            match self.resolve_shared_queue("", QUEUE_NAME) {
                Some(queue) => {
                    let _ = self.enqueue_shared_queue(queue, Some(item.as_bytes()));
                }
                None => log::error!("queue {QUEUE_NAME} not found"),
            }
        }
        self.add_http_request_header("x-fixture-added", "1");
        self.remove_http_request_header("x-fixture-remove");
        self.set_http_request_header("x-fixture-replace", Some("new"));
        if let Some(cas) = self.get_http_request_header("x-fixture-cas-write") {
            let result = match self.set_shared_data(
                KEYS_SHARED_KEY,
                Some(b"written-by-request"),
                cas.parse().ok(),
            ) {
                Ok(()) => "ok",
                Err(Status::CasMismatch) => "mismatch",
                Err(_) => "error",
            };
            self.set_http_request_header("x-fixture-cas-result", Some(result));
        }
        if let (Some(keys), cas) = self.get_shared_data(KEYS_SHARED_KEY) {
            self.set_http_request_header("x-fixture-keys", Some(&String::from_utf8_lossy(&keys)));
            self.set_http_request_header("x-fixture-keys-cas", Some(&cas.unwrap_or(0).to_string()));
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_request_body(0, body_size) {
            let _ =
                proxy_wasm::hostcalls::record_metric(self.metrics.body_bytes, body.len() as u64);
            let masked = String::from_utf8_lossy(&body).replace("secret", "******");
            self.set_http_request_body(0, body_size, masked.as_bytes());
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-fixture-response", Some("1"));
        Action::Continue
    }

    fn on_log(&mut self) {
        self.count(self.metrics.active_streams, -1);
        log::debug!("stream logged");
    }
}
