//! Failures: 503 when no token can be had, 401 when the user's token is refused, JSON bodies, and the original
//! token never sent on.

use crate::*;
use keymesh_wasm_host::{Action, HostError, HttpResponse, SharedStore};

fn json_of(local: &keymesh_wasm_host::LocalResponse) -> serde_json::Value {
    serde_json::from_slice(&local.body).expect("a JSON body")
}

/// Sends one request to payments, answers its token request with `answer` (or fails it), and returns the local
/// response the request got.
fn refused_with(
    answer: Option<HttpResponse>,
) -> Result<keymesh_wasm_host::LocalResponse, HostError> {
    let mut vm = worker(CONFIG, &SharedStore::new())?;
    let sent = send(&mut vm, "payments.local", Some(&bearer(USER_TOKEN)))?;
    let call = token_call(&mut vm)?;
    match answer {
        Some(response) => vm.respond_to_http_call(call.token, response)?,
        None => vm.reset_http_call(call.token)?,
    }
    let local = vm
        .http_stream(sent.id)?
        .take_local_response()
        .expect("a local response");
    assert!(
        vm.http_stream(sent.id)?.resumes().is_empty(),
        "a refused request is never sent on"
    );
    end(&mut vm, sent.id)?;
    vm.finish()?;
    Ok(local)
}

#[test]
fn an_unreachable_or_failing_sidecar_is_503() -> Result<(), HostError> {
    for answer in [
        None,
        Some(HttpResponse::new(500).body("oops")),
        Some(HttpResponse::new(503).body(r#"{"error":"temporarily_unavailable"}"#)),
        Some(HttpResponse::new(401).body(r#"{"error":"invalid_client"}"#)),
        Some(HttpResponse::new(400).body(r#"{"error":"unauthorized_client"}"#)),
        Some(HttpResponse::new(200).body("not json")),
    ] {
        let local = refused_with(answer)?;
        assert_eq!(local.status_code, 503);
        assert_eq!(json_of(&local)["error"], "token_unavailable");
        assert_eq!(local.headers.get("retry-after"), Some("1"));
    }
    Ok(())
}

#[test]
fn a_refused_subject_token_is_401() -> Result<(), HostError> {
    for error in ["invalid_request", "invalid_grant"] {
        let local = refused_with(Some(
            HttpResponse::new(400).body(format!(r#"{{"error":"{error}"}}"#)),
        ))?;
        assert_eq!(local.status_code, 401);
        assert_eq!(json_of(&local)["error"], "invalid_token");
        assert_eq!(
            local.headers.get("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    Ok(())
}

#[test]
fn a_refusal_is_remembered_briefly_for_every_waiting_request() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut one = worker(CONFIG, &shared)?;
    let mut two = worker(CONFIG, &shared)?;
    let user = bearer(USER_TOKEN);
    let a = send(&mut one, "payments.local", Some(&user))?;
    let b = send(&mut two, "payments.local", Some(&user))?;
    let call = token_call(&mut one)?;
    one.respond_to_http_call(
        call.token,
        HttpResponse::new(400).body(r#"{"error":"invalid_request"}"#),
    )?;
    two.advance_time(std::time::Duration::from_millis(20))?;
    let local = two
        .http_stream(b.id)?
        .take_local_response()
        .expect("refused");
    assert_eq!(local.status_code, 401);
    // Within the memory, the same user token is refused at once, without asking.
    let c = send(&mut two, "payments.local", Some(&user))?;
    assert_eq!(c.local.map(|l| l.status_code), Some(401));
    assert!(two.http_call_history().is_empty());
    one.http_stream(a.id)?.take_local_response();
    end(&mut one, a.id)?;
    end(&mut two, b.id)?;
    end(&mut two, c.id)?;
    one.finish()?;
    two.finish()
}

#[test]
fn no_bearer_token_to_exchange_is_401_without_asking() -> Result<(), HostError> {
    let mut vm = worker(CONFIG, &SharedStore::new())?;
    for authorization in [None, Some("Basic b3JkZXJz"), Some("Bearer two words")] {
        let sent = send(&mut vm, "payments.local", authorization)?;
        assert_eq!(sent.action, Action::Pause);
        let local = sent.local.expect("refused");
        assert_eq!(local.status_code, 401);
        assert_eq!(json_of(&local)["error"], "invalid_token");
        end(&mut vm, sent.id)?;
    }
    assert!(vm.http_call_history().is_empty());
    vm.finish()
}

#[test]
fn a_refused_dispatch_is_503() -> Result<(), HostError> {
    let mut vm = worker(CONFIG, &SharedStore::new())?;
    vm.refuse_http_calls(true);
    let sent = send(&mut vm, "payments.local", Some(&bearer(USER_TOKEN)))?;
    assert_eq!(sent.action, Action::Pause);
    // The root dispatches on its next tick; the refusal answers the waiting request.
    vm.advance_time(std::time::Duration::from_millis(1))?;
    let local = vm.http_stream(sent.id)?.take_local_response();
    assert_eq!(local.map(|l| l.status_code), Some(503));
    end(&mut vm, sent.id)?;
    vm.finish()
}

#[test]
fn unknown_destinations_never_get_the_users_token() -> Result<(), HostError> {
    let mut vm = worker(CONFIG, &SharedStore::new())?;
    let sent = send(&mut vm, "evil.example", Some(&bearer(USER_TOKEN)))?;
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(upstream_authorization(&mut vm, sent.id)?, None);
    end(&mut vm, sent.id)?;
    let plain = send(&mut vm, "evil.example", None)?;
    assert_eq!(plain.action, Action::Continue);
    end(&mut vm, plain.id)?;
    assert!(vm.http_call_history().is_empty());
    vm.finish()
}
