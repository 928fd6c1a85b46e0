//! The egress filter's behaviour, tested on the compiled release `.wasm` through the wasmtime host: the token
//! cache and its single exchange per Envoy, expiry and renewal, failures, and configuration errors. One test
//! binary, so the module is built and compiled once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cache;
mod config;
mod failures;

use keymesh_wasm_host::{
    build_filter, Action, FilterModule, HostError, HttpCall, HttpResponse, LocalResponse,
    SharedStore, Vm,
};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

pub(crate) const SIDECAR: &str = "keymesh_sidecar";
/// The scenario's clock: seconds since the epoch at VM start.
pub(crate) const NOW: u64 = 1_700_000_000;
pub(crate) const USER_TOKEN: &str = "user.token.alice";

/// Payments by exchange, ledger by client credentials; margins of 10 s (use) and 60 s (renew).
pub(crate) const CONFIG: &str = r#"{
  "sidecar": {"cluster": "keymesh_sidecar", "authority": "keymesh", "timeout_ms": 2000},
  "client_id": "orders",
  "client_secret": "orders-secret",
  "expiry_margin_secs": 10,
  "renew_before_secs": 60,
  "lease_ms": 3000,
  "destinations": [
    {"authority": "payments.local", "audience": "https://payments.example", "scopes": ["payments:read"],
     "mode": "exchange"},
    {"authority": "ledger.local", "audience": "urn:ledger", "mode": "client_credentials"}
  ]
}"#;

/// The egress filter, freshly built in release and compiled once per test binary.
pub(crate) fn egress() -> Result<&'static FilterModule, HostError> {
    static MODULE: OnceLock<Result<FilterModule, String>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let wasm = build_filter("keymesh-egress").map_err(|e| e.to_string())?;
            FilterModule::load(wasm).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| HostError::Expectation(e.clone()))
}

/// A started worker VM with `config`, sharing `shared` with other workers of the same Envoy.
pub(crate) fn worker(config: &str, shared: &SharedStore) -> Result<Vm, HostError> {
    let mut vm = egress()?
        .vm()
        .root_id("keymesh_egress")
        .vm_id("keymesh_egress")
        .cluster(SIDECAR)
        .plugin_configuration(config)
        .shared(shared.clone())
        .start_time(UNIX_EPOCH + Duration::from_secs(NOW))
        .build()?;
    vm.start()?;
    Ok(vm)
}

/// A request started on `vm`: its context id, what the filter returned, and any local response.
pub(crate) struct Sent {
    pub(crate) id: u32,
    pub(crate) action: Action,
    pub(crate) local: Option<LocalResponse>,
}

/// Sends a request's headers to `authority` with `authorization` (if any); the stream stays open.
pub(crate) fn send(
    vm: &mut Vm,
    authority: &str,
    authorization: Option<&str>,
) -> Result<Sent, HostError> {
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/payments/42"),
        (":authority", authority),
    ];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    let mut stream = vm.new_http_stream()?;
    let id = stream.id();
    let action = stream.on_request_headers(&headers, true)?;
    let local = stream.take_local_response();
    Ok(Sent { id, action, local })
}

/// `Authorization: Bearer {token}`.
pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The `authorization` header of request `id` as the destination would see it.
pub(crate) fn upstream_authorization(vm: &mut Vm, id: u32) -> Result<Option<String>, HostError> {
    let stream = vm.http_stream(id)?;
    Ok(stream
        .request_headers()
        .get("authorization")
        .map(str::to_owned))
}

/// Whether request `id` is still paused.
pub(crate) fn paused(vm: &mut Vm, id: u32) -> Result<bool, HostError> {
    Ok(vm.http_stream(id)?.is_request_paused())
}

/// Ends request `id`.
pub(crate) fn end(vm: &mut Vm, id: u32) -> Result<(), HostError> {
    vm.http_stream(id)?.finish()
}

/// The token answer of the sidecar.
pub(crate) fn token_answer(token: &str, expires_in: u64) -> HttpResponse {
    HttpResponse::new(200)
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
            .to_string(),
        )
}

/// Lets the worker's root context run its next tick, where it dispatches the token requests its requests need.
pub(crate) fn dispatch(vm: &mut Vm) -> Result<(), HostError> {
    for _ in 0..25 {
        if !vm.pending_http_calls().is_empty() {
            break;
        }
        vm.advance_time(Duration::from_millis(1))?;
    }
    Ok(())
}

/// The only unanswered token request, once the root context has dispatched it.
pub(crate) fn token_call(vm: &mut Vm) -> Result<HttpCall, HostError> {
    dispatch(vm)?;
    let pending = vm.pending_http_calls();
    assert_eq!(pending.len(), 1, "expected one token request: {pending:?}");
    vm.next_http_call(SIDECAR)
}

/// The form body of a call, as text.
pub(crate) fn body_of(call: &HttpCall) -> String {
    String::from_utf8_lossy(&call.body).into_owned()
}
