//! The README's example for a filter that is not keymesh's: `examples/header-filter`, a crate in a workspace of
//! its own, built with `build_filter_at` and driven through the host.

use keymesh_wasm_host::{build_filter_at, Action, FilterModule, HostError};

#[test]
fn greets_requests_and_blocks_flagged_ones() -> Result<(), HostError> {
    let wasm = build_filter_at(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/header-filter/Cargo.toml"
    ))?;
    let mut vm = FilterModule::load(wasm)?
        .vm()
        .plugin_configuration("hello")
        .build()?;
    vm.start()?;

    let mut stream = vm.new_http_stream()?;
    let action = stream.on_request_headers(&[(":path", "/"), ("x-greeting", "spoofed")], true)?;
    stream.ensure(
        action == Action::Continue,
        format!("expected Continue, got {action:?}"),
    )?;
    let greeting = stream
        .request_headers()
        .get("x-greeting")
        .map(str::to_owned);
    stream.ensure(
        greeting.as_deref() == Some("hello"),
        format!("x-greeting: {greeting:?}"),
    )?;
    stream.on_response_headers(&[(":status", "200")], true)?;
    let filtered = stream.response_headers().get("x-filtered") == Some("yes");
    stream.ensure(filtered, "no x-filtered: yes on the response")?;
    stream.finish()?;

    let mut blocked = vm.new_http_stream()?;
    blocked
        .call_on_request_headers(&[(":path", "/"), ("x-block", "1")], true)
        .expect_local_response(403)
        .execute_and_expect(Action::Pause)?;
    blocked.finish()?;
    vm.finish()
}
