//! Strictness: unexpected host calls, unconsumed effects and traps fail the test, naming the cause.

use crate::{fixture_vm, started_vm};
use keymesh_wasm_host::{HostError, HttpResponse};
use std::panic::{catch_unwind, AssertUnwindSafe};

#[test]
fn unanswered_http_call_fails_finish_naming_the_call() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", "/api"), ("x-fixture-call", "1")], true)?;
    let error = vm.finish().err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        error,
        "filter effects left unconsumed at end of VM:\n  \
         - context 2: request paused by proxy_on_request_headers and never resumed\n  \
         - HTTP call #1 to cluster `authz` (POST /check, timeout 250ms) from context 2 was never answered"
    );
    Ok(())
}

#[test]
fn dropping_a_vm_with_an_unanswered_root_call_panics() -> Result<(), HostError> {
    let builder = fixture_vm()?;
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), HostError> {
        let mut vm = builder.build()?;
        vm.start()?;
        vm.on_tick()?;
        Ok(())
    }));
    let message = outcome
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(message.contains("HTTP call #1 to cluster `keys` (GET /keys, timeout 5s) from context 1 was never answered"), "{message}");
    Ok(())
}

#[test]
fn unchecked_local_response_fails_stream_finish() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", "/deny")], true)?;
    let error = stream
        .finish()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("local response 403 sent by context 2 was never checked"),
        "{error}"
    );
    Ok(())
}

#[test]
fn unknown_property_fails_the_callback() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    let error = stream.on_request_headers(
        &[(":path", "/"), ("x-fixture-property", "request.path")],
        true,
    );
    let error = error.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        error,
        "unexpected host calls during proxy_on_request_headers (context 2; the operation's result, already applied: Continue):\n  \
         - proxy_get_property(\"request.path\"): property not set by the test (set it, or declare it absent)"
    );
    Ok(())
}

#[test]
fn continue_after_local_response_is_rejected() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    let error = stream.on_request_headers(&[(":path", "/"), ("x-fixture-bad-reply", "1")], true);
    let error = error.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("returned Continue after proxy_send_local_response"),
        "{error}"
    );
    Ok(())
}

#[test]
fn unanswered_grpc_call_fails_finish_naming_the_call() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&[(":path", "/"), ("x-fixture-grpc", "1")], true)?;
    let error = vm.finish().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("gRPC call #1 `fixture.Authz/Check` on cluster `authz` from context 2 was never answered"),
        "{error}"
    );
    Ok(())
}

#[test]
fn panic_in_filter_surfaces_as_trap_with_its_message() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    let error = stream.on_request_headers(&[(":path", "/"), ("x-fixture-panic", "1")], true);
    let Err(HostError::Trap {
        callback,
        context_id,
        output,
        ..
    }) = &error
    else {
        return Err(HostError::Expectation(format!(
            "expected a trap, got {error:?}"
        )));
    };
    assert_eq!((*callback, *context_id), ("proxy_on_request_headers", 2));
    assert!(output.contains("[critical] panicked at"), "{output}");
    assert!(
        output.contains("fixture panic requested by x-fixture-panic header"),
        "{output}"
    );
    let text = error.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.starts_with(
            "filter trapped in proxy_on_request_headers (context 2): wasm trap: wasm `unreachable` instruction executed\n\
             --- filter output ---\n\
             [critical] panicked at tests/wasm-host/fixture-filter/src/lib.rs:"
        ),
        "{text}"
    );
    assert!(text.contains("--- wasm backtrace ---"), "{text}");

    // Like Envoy, the VM is dead after a trap.
    let again = stream
        .respond_to_http_call(1, HttpResponse::new(200))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        again.as_deref(),
        Some("no unanswered HTTP call with token 1")
    );
    let again = stream
        .on_request_headers(&[(":path", "/")], true)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        again.as_deref(),
        Some("the filter VM trapped earlier (in proxy_on_request_headers); it cannot run proxy_on_request_headers")
    );
    stream.finish().err();
    // `finish` says so too, instead of passing.
    let finish = vm.finish().err().map(|e| e.to_string());
    assert_eq!(
        finish.as_deref(),
        Some("the filter VM trapped earlier (in proxy_on_request_headers); it cannot run finish")
    );
    Ok(())
}

#[test]
fn unexpected_call_error_keeps_the_callback_result() -> Result<(), HostError> {
    let mut vm = started_vm()?;
    let mut stream = vm.new_http_stream()?;
    // The property read is a violation; the same callback also dispatches a call and pauses.
    let headers = [
        (":path", "/"),
        ("x-fixture-property", "request.path"),
        ("x-fixture-call", "1"),
    ];
    let error = stream.on_request_headers(&headers, true).err();
    let Some(HostError::Unexpected { returned, .. }) = &error else {
        return Err(HostError::Expectation(format!(
            "expected Unexpected, got {error:?}"
        )));
    };
    assert_eq!(returned, "Pause");
    // The pause and the call were applied as usual, so the test can go on.
    assert!(stream.is_request_paused());
    let call = stream.next_http_call("authz")?;
    stream.respond_to_http_call(call.token, HttpResponse::new(200))?;
    assert!(!stream.is_request_paused());
    stream.finish()?;
    vm.finish()
}

#[test]
fn a_tests_own_error_is_not_hidden_by_the_drop_check() {
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), HostError> {
        let mut vm = started_vm()?;
        let mut stream = vm.new_http_stream()?;
        // Leaves an unanswered call and a paused request behind.
        stream.on_request_headers(&[(":path", "/"), ("x-fixture-call", "1")], true)?;
        let count = stream.pending_http_calls().len();
        stream.ensure(count == 2, format!("expected 2 calls, saw {count}"))?;
        Ok(())
    }));
    let returned = outcome.map(|r| r.err().map(|e| e.to_string()));
    assert_eq!(
        returned.ok().flatten().as_deref(),
        Some("expected 2 calls, saw 1"),
        "the VM's drop panicked instead of letting the test's own error through"
    );
}

#[test]
fn driving_a_tcp_filter_names_the_problem() -> Result<(), HostError> {
    let mut vm = fixture_vm()?.plugin_configuration("tcp").build()?;
    vm.start()?;
    let mut stream = vm.new_http_stream()?;
    let error = stream.on_request_headers(&[(":path", "/")], true).err();
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with("TCP filters are not supported"),
        "{message}"
    );
    Ok(())
}
