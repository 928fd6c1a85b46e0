//! Request and response processing: headers, bodies, properties, local responses, metrics.

use crate::started_vm;
use keymesh_wasm_host::{Action, HostError, LogLevel};

#[test]
fn request_header_changes_are_visible() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    let headers = [
        (":path", "/hello"),
        ("X-Fixture-Remove", "bye"),
        ("x-fixture-replace", "old"),
        ("x-fixture-replace", "older"),
    ];
    assert_eq!(stream.on_request_headers(&headers, true)?, Action::Continue);

    let seen = stream.request_headers();
    assert_eq!(seen.get("x-fixture-added"), Some("1"));
    assert!(!seen.contains("x-fixture-remove"));
    assert_eq!(seen.get_all("x-fixture-replace"), vec!["new"]);
    assert_eq!(seen.get(":path"), Some("/hello"));
    assert!(stream.find_log(LogLevel::Info, "request /hello").is_some());
    stream.finish()?;
    vm.finish()
}

#[test]
fn local_response_is_captured_with_pause() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    assert_eq!(
        stream.on_request_headers(&[(":path", "/deny/me")], true)?,
        Action::Pause
    );
    let response = stream.take_local_response();
    let response = response.as_ref();
    assert_eq!(response.map(|r| r.status_code), Some(403));
    assert_eq!(
        response.and_then(|r| r.headers.get("x-denied-by")),
        Some("fixture")
    );
    assert_eq!(response.map(|r| r.body_text()), Some("denied".to_owned()));
    assert_eq!(response.map(|r| r.grpc_status), Some(None));
    assert!(
        !stream.is_request_paused(),
        "a local reply ends the stream; nothing is left paused"
    );
    stream.finish()?;
    vm.finish()
}

#[test]
fn request_body_is_buffered_until_end_of_stream_and_rewritten() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", "/upload")], false)?;
    assert_eq!(stream.on_request_body(b"my secret", false)?, Action::Pause);
    assert!(stream.is_request_paused());
    assert_eq!(
        stream.on_request_body(b" and another secret", true)?,
        Action::Continue
    );
    assert_eq!(stream.request_body(), b"my ****** and another ******");
    assert_eq!(stream.histogram("fixture.body_bytes"), Some(vec![28]));
    stream.finish()?;
    vm.finish()
}

#[test]
fn response_headers_are_modified() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", "/")], true)?;
    stream
        .call_on_response_headers(&[(":status", "200")], false)
        .execute_and_expect(Action::Continue)?;
    assert_eq!(
        stream.response_headers().to_pairs(),
        vec![
            (":status".into(), "200".into()),
            ("x-fixture-response".into(), "1".into())
        ]
    );
    stream.finish()?;
    vm.finish()
}

#[test]
fn properties_are_read_per_stream_or_declared_absent() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    vm.set_property_absent(&["source", "address"]);
    let mut stream = vm.new_http_stream()?;
    stream.set_stream_property(&["request", "path"], "/from-property");
    stream.on_request_headers(
        &[(":path", "/"), ("x-fixture-property", "request.path")],
        true,
    )?;
    assert_eq!(
        stream.request_headers().get("x-fixture-property-value"),
        Some("/from-property")
    );
    stream.finish()?;

    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(
        &[(":path", "/"), ("x-fixture-property", "source.address")],
        true,
    )?;
    assert_eq!(
        stream.request_headers().get("x-fixture-property-value"),
        Some("<none>")
    );
    stream.finish()?;
    vm.finish()
}

#[test]
fn metrics_count_requests_and_track_active_streams() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    for _ in 0..2 {
        let mut stream = vm.new_http_stream()?;
        stream.on_request_headers(&[(":path", "/")], true)?;
        assert_eq!(stream.gauge("fixture.active_streams"), Some(1));
        stream.finish()?;
    }
    assert_eq!(vm.counter("fixture.requests_total"), Some(2));
    assert_eq!(
        vm.gauge("fixture.active_streams"),
        Some(0),
        "decremented in proxy_on_log"
    );
    assert_eq!(vm.counter("fixture.fetch_failures"), Some(0));
    assert!(vm.find_log(LogLevel::Debug, "stream logged").is_some());
    vm.finish()
}
