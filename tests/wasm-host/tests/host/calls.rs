//! HTTP calls from an HTTP context, answered, failed, and through the call builder; gRPC calls.

use crate::{fixture, fixture_vm, started_vm};
use keymesh_wasm_host::{Action, GrpcResponse, HostError, HttpResponse, LogLevel, StreamType};
use std::time::Duration;

#[test]
fn http_call_is_recorded_and_its_answer_resumes_the_request() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    assert_eq!(
        stream.on_request_headers(&[(":path", "/api"), ("x-fixture-call", "1")], true)?,
        Action::Pause
    );
    assert!(stream.is_request_paused());

    let call = stream.next_http_call("authz")?;
    assert_eq!(call.context_id, stream.id());
    assert_eq!((call.method(), call.path()), ("POST", "/check"));
    assert_eq!(call.headers.get("x-path"), Some("/api"));
    assert_eq!(call.body, b"check");
    assert_eq!(call.timeout, Duration::from_millis(250));

    stream.respond_to_http_call(
        call.token,
        HttpResponse::new(200)
            .header("x-authz-user", "alice")
            .body("ok"),
    )?;
    assert!(!stream.is_request_paused());
    assert_eq!(stream.resumes(), [StreamType::HttpRequest]);
    assert_eq!(stream.request_headers().get("x-authz"), Some("ok"));
    assert!(stream.pending_http_calls().is_empty());
    stream.finish()?;
    vm.finish()
}

#[test]
fn failed_http_call_reaches_the_filter_as_zero_headers() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", "/"), ("x-fixture-call", "1")], true)?;
    let token = stream.next_http_call("authz")?.token;
    stream.reset_http_call(token)?;
    // No `:status` to read: the filter's header lookup came back empty.
    assert!(
        stream
            .find_log(LogLevel::Warn, "authz call failed: None")
            .is_some(),
        "{:?}",
        stream.logs()
    );
    assert_eq!(
        stream.take_local_response().map(|r| r.status_code),
        Some(401)
    );
    stream.finish()?;
    vm.finish()
}

#[test]
fn call_builder_answers_and_checks_in_one_chain() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    stream
        .call_on_request_headers(&[(":path", "/"), ("x-fixture-call", "1")], true)
        .expect_http_call("authz")
        .returning(HttpResponse::new(403))
        .expect_log(LogLevel::Warn, "authz call failed: Some(\"403\")")
        .expect_local_response(401)
        .execute_and_expect(Action::Pause)?;
    stream.finish()?;
    vm.finish()
}

#[test]
fn call_builder_reports_what_did_not_match() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    let error = stream
        .call_on_request_headers(&[(":path", "/")], true)
        .expect_http_call("authz")
        .unanswered()
        .execute();
    let message = error.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        message,
        "proxy_on_request_headers: expected an HTTP call to cluster `authz`; dispatched: []"
    );

    let mut stream = vm.new_http_stream()?;
    let error = stream
        .call_on_request_headers(&[(":path", "/deny")], true)
        .execute_and_expect(Action::Continue);
    let message = error.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        message,
        "proxy_on_request_headers: expected Continue, received Pause"
    );
    Ok(())
}

#[test]
fn grpc_calls_are_answered_unimplemented_when_allowed() -> Result<(), HostError> {
    let mut vm = fixture_vm()?.allow_grpc_calls().build()?;
    vm.start()?;
    let mut stream = vm.new_http_stream()?;
    // The UNIMPLEMENTED close is delivered right after the callback, and the filter resumes.
    assert_eq!(
        stream.on_request_headers(&[(":path", "/"), ("x-fixture-grpc", "1")], true)?,
        Action::Pause
    );
    assert!(
        stream
            .find_log(LogLevel::Warn, "grpc call 1 closed with status 12")
            .is_some(),
        "{:?}",
        stream.logs()
    );
    assert!(!stream.is_request_paused());
    let call = &stream.grpc_calls()[0];
    assert_eq!(
        (
            call.upstream.as_str(),
            call.service.as_str(),
            call.method.as_str()
        ),
        ("authz", "fixture.Authz", "Check")
    );
    stream.finish()?;
    vm.finish()
}

#[test]
fn grpc_call_is_answered_with_the_status_the_test_chooses() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", "/"), ("x-fixture-grpc", "1")], true)?;
    let call = stream.pending_grpc_calls()[0].clone();
    assert_eq!(
        (call.service.as_str(), call.method.as_str()),
        ("fixture.Authz", "Check")
    );
    stream.respond_to_grpc_call(call.token, GrpcResponse::status(7, "denied"))?;
    assert!(
        stream
            .find_log(LogLevel::Warn, "grpc call 1 closed with status 7")
            .is_some(),
        "{:?}",
        stream.logs()
    );
    assert!(stream.pending_grpc_calls().is_empty());
    stream.finish()?;
    vm.finish()
}

#[test]
fn calls_to_undeclared_or_empty_clusters_fail_at_dispatch_as_in_envoy() -> Result<(), HostError> {
    // `authz` is unknown: Envoy 1.40 answers the dispatch `BadArgument`, the fixture replies 500.
    let mut vm = fixture()?.vm().build()?;
    vm.start()?;
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", "/"), ("x-fixture-call", "1")], true)?;
    assert!(stream.pending_http_calls().is_empty());
    assert_eq!(
        stream.take_local_response().map(|r| r.status_code),
        Some(500)
    );
    stream.finish()?;
    vm.finish()?;

    let mut vm = fixture()?.vm().cluster_without_hosts("authz").build()?;
    vm.start()?;
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", "/"), ("x-fixture-call", "1")], true)?;
    assert!(
        stream
            .find_log(LogLevel::Error, "InternalFailure")
            .is_some(),
        "{:?}",
        stream.logs()
    );
    assert_eq!(
        stream.take_local_response().map(|r| r.status_code),
        Some(500)
    );
    stream.finish()?;
    vm.finish()
}
