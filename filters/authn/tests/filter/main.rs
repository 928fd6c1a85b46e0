//! The authn filter's behaviour, tested on the compiled release `.wasm` through the wasmtime host: the shared
//! scenario table (the same one core runs natively), bundle delivery and refresh, workers sharing one bundle,
//! and configuration errors. One test binary, so the module is built and compiled once.

mod api_keys;
mod bundle;
mod config;
mod external;
mod headers;
mod host_calls;
mod key_lifecycle;
mod resource_metadata;
mod resync;
mod scenarios;
mod worker_memory;
mod workers;

use keymesh_testkit::{fixture, NOW, SCENARIO_CONFIG};
use keymesh_wasm_host::{
    build_filter, Action, FilterModule, HostError, HttpResponse, LocalResponse, SharedStore, Vm,
};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

pub(crate) const SIDECAR: &str = "keymesh_sidecar";
pub(crate) const STARTUP_TICK: Duration = Duration::from_millis(200);

/// The authn filter, freshly built in release and compiled once per test binary.
pub(crate) fn authn() -> Result<&'static FilterModule, HostError> {
    static MODULE: OnceLock<Result<FilterModule, String>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let wasm = build_filter("keymesh-authn").map_err(|e| e.to_string())?;
            FilterModule::load(wasm).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| HostError::Expectation(e.clone()))
}

/// A started VM with `config`, its clock at the scenario's NOW, sharing `shared` with other workers.
pub(crate) fn vm(config: &str, shared: &SharedStore) -> Result<Vm, HostError> {
    let mut vm = authn()?
        .vm()
        .root_id("keymesh_authn")
        .vm_id("keymesh")
        .cluster(SIDECAR)
        .plugin_configuration(config)
        .shared(shared.clone())
        .property(&["xds", "node", "id"], "test-node")
        .start_time(UNIX_EPOCH + Duration::from_secs(NOW.unsigned_abs()))
        .build()?;
    vm.start()?;
    Ok(vm)
}

/// Fires the next tick and answers the bundle fetch it dispatches with `response`.
pub(crate) fn tick_and_answer(vm: &mut Vm, response: HttpResponse) -> Result<(), HostError> {
    let period = vm.tick_period().unwrap_or(STARTUP_TICK);
    vm.advance_time(period)?;
    let call = vm.next_http_call(SIDECAR)?;
    vm.respond_to_http_call(call.token, response)
}

/// A VM with the scenario configuration holding bundle v1.
pub(crate) fn ready_vm() -> Result<Vm, HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    Ok(vm)
}

/// Fires the next tick, on which the worker hands its verdict counters to Envoy.
pub(crate) fn flush_metrics(vm: &mut Vm) -> Result<(), HostError> {
    let period = vm.tick_period().unwrap_or(STARTUP_TICK);
    vm.advance_time(period).map(|_| ())
}

/// Answers every pending bundle call with 304 (the long poll ended with nothing new), then runs the strict
/// end-of-test checks.
pub(crate) fn finish(mut vm: Vm) -> Result<(), HostError> {
    for call in vm.pending_http_calls() {
        vm.respond_to_http_call(call.token, HttpResponse::new(304))?;
    }
    vm.finish()
}

/// What came of one request.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) action: Action,
    pub(crate) local: Option<LocalResponse>,
    /// Request headers as the upstream would see them (only meaningful when allowed).
    pub(crate) upstream: Vec<(String, String)>,
}

impl Outcome {
    pub(crate) fn status(&self) -> u16 {
        self.local.as_ref().map_or(200, |l| l.status_code)
    }
    pub(crate) fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn challenge(&self) -> Option<&str> {
        self.local.as_ref()?.headers.get("www-authenticate")
    }
    pub(crate) fn challenge_error(&self) -> Option<&str> {
        let c = self.challenge()?;
        let start = c.find("error=\"")? + 7;
        Some(&c[start..start + c[start..].find('"')?])
    }
    pub(crate) fn body(&self) -> String {
        self.local
            .as_ref()
            .map(LocalResponse::body_text)
            .unwrap_or_default()
    }
}

/// Sends one request's headers through a new stream and ends the stream.
pub(crate) fn request(
    vm: &mut Vm,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<Outcome, HostError> {
    let mut headers = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "orders.local"),
    ];
    headers.extend_from_slice(extra);
    let mut stream = vm.new_http_stream()?;
    let action = stream.on_request_headers(&headers, true)?;
    let local = stream.take_local_response();
    let upstream = stream.request_headers().to_pairs();
    stream.finish()?;
    Ok(Outcome {
        action,
        local,
        upstream,
    })
}

/// `Authorization: Bearer …` header pair for `token`.
pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
