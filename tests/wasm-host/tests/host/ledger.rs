//! The ledger of a metered VM: wasm instructions per callback, and each host call with the bytes it copied and
//! the allocations the host made in the VM. Mechanics only: the figures are the fixture's, not a speed claim.

use crate::fixture;
use keymesh_wasm_host::{build_filter, FilterModule, HostError, Ledger};
use std::sync::OnceLock;

/// The fixture, compiled for measuring.
fn metered() -> Result<&'static FilterModule, HostError> {
    static MODULE: OnceLock<Result<FilterModule, String>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let path = build_filter("keymesh-host-fixture").map_err(|e| e.to_string())?;
            FilterModule::load_metered(path).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| HostError::Expectation(format!("fixture unavailable: {e}")))
}

/// The ledger of one request to `path` on a fresh, started VM.
fn one_request(path: &str) -> Result<Ledger, HostError> {
    let mut vm = metered()?
        .vm()
        .cluster("authz")
        .cluster("keys")
        .root_id("fixture")
        .build()?;
    vm.start()?;
    vm.take_ledger();
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", path), ("x-other", "1")], true)?;
    stream.finish()?;
    let ledger = vm.take_ledger();
    vm.finish()?;
    ledger.ok_or_else(|| HostError::Expectation("a metered VM keeps a ledger".into()))
}

#[test]
fn each_callback_and_host_call_is_booked() -> Result<(), HostError> {
    let ledger = one_request("/hello")?;
    let entered: Vec<&str> = ledger.entries.iter().map(|e| e.export).collect();
    assert_eq!(
        entered,
        [
            "proxy_on_context_create",
            "proxy_on_request_headers",
            "proxy_on_done",
            "proxy_on_log",
            "proxy_on_delete"
        ]
    );
    assert!(
        ledger.entries.iter().all(|e| e.instructions > 0),
        "{ledger:?}"
    );
    // The fixture asks for eight single headers; only `:path` is there, so the host allocates once, for its value.
    let get = ledger.host_call("proxy_get_header_map_value");
    assert_eq!((get.calls, get.allocations, get.bytes_out), (8, 1, 6));
    assert!(get.allocation_instructions > 0);
    assert!(get.allocation_instructions < ledger.instructions_in("proxy_on_request_headers"));
    // `x-fixture-added: 1`: the host reads the name and the value out of the VM.
    let add = ledger.host_call("proxy_add_header_map_value");
    assert_eq!((add.calls, add.bytes_in, add.allocations), (1, 16, 0));
    // `requests_total` and `active_streams` up, then `active_streams` down when the stream ends.
    assert_eq!(ledger.host_call("proxy_increment_metric").calls, 3);
    assert_eq!(ledger.host_call("proxy_http_call").calls, 0);
    let totals = ledger.host_call_totals();
    assert_eq!(totals.calls, ledger.host_call_count());
    assert_eq!(
        ledger.instructions(),
        ledger.entries.iter().map(|e| e.instructions).sum::<u64>()
    );
    Ok(())
}

#[test]
fn the_same_request_costs_the_same_and_a_longer_value_only_its_bytes() -> Result<(), HostError> {
    let first = one_request("/hello")?;
    assert_eq!(
        first,
        one_request("/hello")?,
        "the ledger must be deterministic"
    );
    let longer = one_request("/hello-and-more")?;
    let (short, long) = (
        first.host_call("proxy_get_header_map_value"),
        longer.host_call("proxy_get_header_map_value"),
    );
    assert_eq!(long.bytes_out - short.bytes_out, 9);
    assert_eq!(
        (long.calls, long.allocations),
        (short.calls, short.allocations)
    );
    // The path is logged: a longer one costs more instructions, and more bytes read by `proxy_log`.
    assert!(longer.instructions() > first.instructions());
    assert_eq!(
        longer.host_call("proxy_log").bytes_in - first.host_call("proxy_log").bytes_in,
        9
    );
    Ok(())
}

#[test]
fn only_a_metered_module_keeps_a_ledger() -> Result<(), HostError> {
    let mut vm = fixture()?.vm().root_id("fixture").build()?;
    assert!(!fixture()?.is_metered() && metered()?.is_metered());
    assert_eq!(vm.take_ledger(), None);
    vm.finish()
}
