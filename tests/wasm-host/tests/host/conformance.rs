//! The conformance probe (`probe-filter/`) in this host: the report must equal the recording made in
//! Envoy 1.40 (`conformance/envoy.txt`; the e2e test `host_conformance` checks Envoy against the same
//! file). The scenario is the one the e2e test plays against real Envoy.

use keymesh_wasm_host::{build_filter, FilterModule, HostError, HttpResponse};
use std::path::Path;
use std::time::Duration;

fn probe() -> Result<FilterModule, HostError> {
    FilterModule::load(build_filter("keymesh-host-probe")?)
}

#[test]
fn probe_report_matches_the_envoy_recording() -> Result<(), HostError> {
    let mut vm = probe()?
        .vm()
        .root_id("probe")
        .vm_id("probe")
        .vm_configuration("probe-vm-config")
        .plugin_configuration("probe-config")
        .cluster("probe_upstream")
        .cluster_without_hosts("probe_empty")
        .cluster("probe_refused")
        .build()?;
    vm.start()?;

    let mut stream = vm.new_http_stream()?;
    let request = [
        (":method", "POST"),
        (":path", "/probe"),
        (":authority", "probe"),
        ("x-probe", "main"),
        ("x-first", "a"),
        ("x-second", "b"),
        ("x-first", "c"),
    ];
    stream.on_request_headers(&request, false)?;
    let call = stream.next_http_call("probe_upstream")?;
    stream.respond_to_http_call(
        call.token,
        HttpResponse::new(200).header("x-up", "1").body("pong"),
    )?;
    let reset = stream.next_http_call("probe_upstream")?;
    stream.reset_http_call(reset.token)?;
    let refused = stream.next_http_call("probe_refused")?;
    stream.respond_to_http_call(refused.token, HttpResponse::connect_failure())?;
    let hang = stream.next_http_call("probe_upstream")?;
    stream.respond_to_http_call(hang.token, HttpResponse::timeout())?;
    stream.on_request_body(b"hello", false)?;
    stream.on_request_trailers(&[("x-request-trailer", "t")])?;
    stream.on_response_headers(&[(":status", "200"), ("x-up", "1")], false)?;
    stream.on_response_body(b"world", false)?;
    stream.on_response_trailers(&[("x-response-trailer", "r")])?;
    stream.finish()?;
    vm.advance_time(Duration::from_millis(200))?;

    let mut report = vm.new_http_stream()?;
    report.on_request_headers(&[(":path", "/report"), ("x-probe", "report")], true)?;
    let body = report
        .take_local_response()
        .map(|r| r.body_text())
        .unwrap_or_default();
    report.finish()?;
    vm.finish()?;

    let recording = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/envoy.txt");
    let expected = std::fs::read_to_string(&recording)
        .map_err(|e| HostError::Expectation(format!("{}: {e}", recording.display())))?;
    let differences: Vec<String> = expected
        .lines()
        .zip(body.lines())
        .filter(|(envoy, host)| envoy != host)
        .map(|(envoy, host)| format!("envoy: {envoy}\n   host: {host}"))
        .collect();
    if differences.is_empty() && expected.lines().count() == body.lines().count() {
        return Ok(());
    }
    Err(HostError::Expectation(format!(
        "the host answers differently from Envoy 1.40 ({} lines differ; envoy {} lines, host {}):\n{}",
        differences.len(),
        expected.lines().count(),
        body.lines().count(),
        differences.join("\n")
    )))
}
