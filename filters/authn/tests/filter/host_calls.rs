//! Which host calls one request makes, booked by the host's ledger: each is a crossing into Envoy, so a change that
//! adds one per request shows here. (What they cost in instructions is `keymesh-bench request-cost`'s to report.)

use crate::{bearer, tick_and_answer, SIDECAR};
use keymesh_testkit::{claims, fixture, Alg, NOW, SCENARIO_CONFIG};
use keymesh_wasm_host::{build_filter, FilterModule, HostError, HttpResponse, Ledger, Vm};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

fn metered() -> Result<&'static FilterModule, HostError> {
    static MODULE: OnceLock<Result<FilterModule, String>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let wasm = build_filter("keymesh-authn").map_err(|e| e.to_string())?;
            FilterModule::load_metered(wasm).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| HostError::Expectation(e.clone()))
}

fn ready_metered_vm() -> Result<Vm, HostError> {
    let mut vm = metered()?
        .vm()
        .root_id("keymesh_authn")
        .vm_id("keymesh")
        .cluster(SIDECAR)
        .plugin_configuration(SCENARIO_CONFIG)
        .property(&["xds", "node", "id"], "test-node")
        .start_time(UNIX_EPOCH + Duration::from_secs(NOW.unsigned_abs()))
        .build()?;
    vm.start()?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    Ok(vm)
}

/// The ledger of one request to `path` with `authorization`, and its status.
fn booked(vm: &mut Vm, path: &str, authorization: &str) -> Result<(u16, Ledger), HostError> {
    vm.take_ledger();
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(
        &[
            (":method", "GET"),
            (":path", path),
            ("authorization", authorization),
        ],
        true,
    )?;
    let status = stream.take_local_response().map_or(200, |l| l.status_code);
    stream.finish()?;
    let ledger = vm
        .take_ledger()
        .ok_or_else(|| HostError::Expectation("metered VM without a ledger".into()))?;
    Ok((status, ledger))
}

fn calls(ledger: &Ledger) -> BTreeMap<&str, u64> {
    ledger
        .host_calls
        .iter()
        .map(|(name, cost)| (name.as_str(), cost.calls))
        .collect()
}

#[test]
fn a_request_makes_only_the_host_calls_it_needs() -> Result<(), HostError> {
    let mut vm = ready_metered_vm()?;
    let token = bearer(&fixture().token(
        Alg::EdDsa,
        &claims(&["https://orders.local"], "orders:read"),
    ));
    let (first_status, first) = booked(&mut vm, "/orders/1", &token)?;
    let (status, reused) = booked(&mut vm, "/orders/1", &token)?;
    assert_eq!((first_status, status), (200, 200));
    // The header map once, the delivery change count, the clock, and one write per identity header (the scenario
    // routes forward all seven; this token has five of them); `authorization` removed.
    let expected = BTreeMap::from([
        ("proxy_add_header_map_value", 5),
        ("proxy_get_current_time_nanoseconds", 1),
        ("proxy_get_header_map_pairs", 1),
        ("proxy_get_metric", 1),
        ("proxy_remove_header_map_value", 1),
    ]);
    assert_eq!(calls(&reused), expected);
    assert_eq!(
        reused.host_call("proxy_get_header_map_pairs").allocations,
        1
    );
    // The cache spares the signature: the reused token runs a small fraction of the first one's instructions.
    assert!(
        reused.instructions() * 20 < first.instructions(),
        "{} vs {}",
        reused.instructions(),
        first.instructions()
    );
    // A denial: the same reads, and one local reply instead of the writes.
    let (denied, ledger) = booked(&mut vm, "/orders/1", "Bearer not.a.token")?;
    assert_eq!(denied, 401);
    let (_, ledger_again) = booked(&mut vm, "/orders/1", "Bearer not.a.token")?;
    for ledger in [&ledger, &ledger_again] {
        assert_eq!(ledger.host_call("proxy_send_local_response").calls, 1);
        assert_eq!(ledger.host_call("proxy_add_header_map_value").calls, 0);
        assert_eq!(ledger.host_call("proxy_get_header_map_pairs").calls, 1);
    }
    crate::finish(vm)
}
