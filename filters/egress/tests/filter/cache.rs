//! One exchange per Envoy for concurrent requests, tokens reused from shared data until their margin, renewal
//! ahead of expiry, and separate tokens per user.

use crate::*;
use keymesh_wasm_host::{Action, HostError, SharedStore};
use std::time::Duration;

#[test]
fn the_exchanged_token_replaces_the_users_and_is_reused() -> Result<(), HostError> {
    let mut vm = worker(CONFIG, &SharedStore::new())?;
    let first = send(&mut vm, "payments.local", Some(&bearer(USER_TOKEN)))?;
    assert_eq!(first.action, Action::Pause);
    let call = token_call(&mut vm)?;
    assert_eq!(call.method(), "POST");
    assert_eq!(call.path(), "/oauth/token");
    assert_eq!(call.authority(), "keymesh");
    let body = body_of(&call);
    assert!(body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"));
    assert!(
        body.contains(&format!("subject_token={USER_TOKEN}")),
        "{body}"
    );
    assert!(body.contains("resource=https%3A%2F%2Fpayments.example&scope=payments%3Aread"));
    // orders:orders-secret
    assert_eq!(
        call.headers.get("authorization"),
        Some("Basic b3JkZXJzOm9yZGVycy1zZWNyZXQ=")
    );
    vm.respond_to_http_call(call.token, token_answer("payments.token.1", 300))?;
    assert!(
        !paused(&mut vm, first.id)?,
        "resumed when the token arrived"
    );
    assert_eq!(
        upstream_authorization(&mut vm, first.id)?.as_deref(),
        Some("Bearer payments.token.1")
    );
    end(&mut vm, first.id)?;

    let second = send(&mut vm, "payments.local:8080", Some(&bearer(USER_TOKEN)))?;
    assert_eq!(second.action, Action::Continue);
    assert!(
        vm.pending_http_calls().is_empty(),
        "the cached token is used"
    );
    assert_eq!(
        upstream_authorization(&mut vm, second.id)?.as_deref(),
        Some("Bearer payments.token.1")
    );
    end(&mut vm, second.id)?;
    vm.finish()
}

#[test]
fn concurrent_requests_on_every_worker_cause_one_exchange() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut one = worker(CONFIG, &shared)?;
    let mut two = worker(CONFIG, &shared)?;
    let user = bearer(USER_TOKEN);
    let mut on_one = Vec::new();
    let mut on_two = Vec::new();
    for _ in 0..3 {
        on_one.push(send(&mut one, "payments.local", Some(&user))?);
        on_two.push(send(&mut two, "payments.local", Some(&user))?);
    }
    assert!(on_one
        .iter()
        .chain(&on_two)
        .all(|s| s.action == Action::Pause));
    // Each worker's root runs: the first takes the lease and asks, the second finds the lease taken.
    dispatch(&mut one)?;
    two.advance_time(Duration::from_millis(1))?;
    assert_eq!(
        one.pending_http_calls().len() + two.pending_http_calls().len(),
        1,
        "six requests, two workers: one exchange"
    );
    let call = token_call(&mut one)?;
    one.respond_to_http_call(call.token, token_answer("payments.token.1", 300))?;
    for sent in &on_one {
        assert_eq!(
            upstream_authorization(&mut one, sent.id)?.as_deref(),
            Some("Bearer payments.token.1")
        );
        assert!(!paused(&mut one, sent.id)?);
    }
    // The other worker finds the token on its next wait tick.
    for sent in &on_two {
        assert!(paused(&mut two, sent.id)?);
    }
    two.advance_time(Duration::from_millis(20))?;
    for sent in &on_two {
        assert!(!paused(&mut two, sent.id)?, "resumed from shared data");
        assert_eq!(
            upstream_authorization(&mut two, sent.id)?.as_deref(),
            Some("Bearer payments.token.1")
        );
    }
    assert!(two.http_call_history().is_empty(), "worker two never asked");
    for sent in on_one {
        end(&mut one, sent.id)?;
    }
    for sent in on_two {
        end(&mut two, sent.id)?;
    }
    one.finish()?;
    two.finish()
}

#[test]
fn a_worker_takes_over_when_the_lease_holder_never_answers() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut one = worker(CONFIG, &shared)?;
    let mut two = worker(CONFIG, &shared)?;
    let user = bearer(USER_TOKEN);
    let stuck = send(&mut one, "payments.local", Some(&user))?;
    let waiting = send(&mut two, "payments.local", Some(&user))?;
    assert!(two.pending_http_calls().is_empty());
    // Worker one's request goes away with its call; its lease (3 s) runs out.
    let lost = token_call(&mut one)?;
    two.advance_time(Duration::from_millis(3_020))?;
    let call = token_call(&mut two)?;
    two.respond_to_http_call(call.token, token_answer("payments.token.2", 300))?;
    assert_eq!(
        upstream_authorization(&mut two, waiting.id)?.as_deref(),
        Some("Bearer payments.token.2")
    );
    end(&mut two, waiting.id)?;
    one.respond_to_http_call(lost.token, token_answer("payments.token.1", 300))?;
    end(&mut one, stuck.id)?;
    one.finish()?;
    two.finish()
}

#[test]
fn each_user_and_destination_gets_its_own_token() -> Result<(), HostError> {
    let mut vm = worker(CONFIG, &SharedStore::new())?;
    let alice = send(&mut vm, "payments.local", Some(&bearer("alice.t.1")))?;
    let bob = send(&mut vm, "payments.local", Some(&bearer("bob.t.1")))?;
    let ledger = send(&mut vm, "ledger.local", Some(&bearer("alice.t.1")))?;
    dispatch(&mut vm)?;
    let calls = vm.pending_http_calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let own = calls
        .iter()
        .find(|c| body_of(c).starts_with("grant_type=client_credentials"))
        .expect("a client credentials request for the ledger");
    assert!(!body_of(own).contains("subject_token"), "{}", body_of(own));
    assert!(body_of(own).contains("resource=urn%3Aledger"));
    for call in &calls {
        let body = body_of(call);
        let token = if body.contains("alice") {
            "for.alice"
        } else if body.contains("bob") {
            "for.bob"
        } else {
            "for.orders"
        };
        vm.respond_to_http_call(call.token, token_answer(token, 300))?;
    }
    for (sent, expected) in [
        (&alice, "for.alice"),
        (&bob, "for.bob"),
        (&ledger, "for.orders"),
    ] {
        assert_eq!(
            upstream_authorization(&mut vm, sent.id)?,
            Some(bearer(expected))
        );
        end(&mut vm, sent.id)?;
    }
    vm.finish()
}

#[test]
fn tokens_are_renewed_ahead_of_expiry_and_never_used_past_the_margin() -> Result<(), HostError> {
    let mut vm = worker(CONFIG, &SharedStore::new())?;
    let user = bearer(USER_TOKEN);
    let first = send(&mut vm, "payments.local", Some(&user))?;
    let call = token_call(&mut vm)?;
    vm.respond_to_http_call(call.token, token_answer("token.1", 120))?;
    end(&mut vm, first.id)?;

    // 30 s later: fresh, nothing asked.
    vm.advance_time(Duration::from_secs(30))?;
    let fresh = send(&mut vm, "payments.local", Some(&user))?;
    assert_eq!(fresh.action, Action::Continue);
    assert!(vm.pending_http_calls().is_empty());
    end(&mut vm, fresh.id)?;

    // 70 s in (renewal due from 60 s before exp): the request goes on with the cached token, and one renewal
    // starts.
    vm.advance_time(Duration::from_secs(40))?;
    let due = send(&mut vm, "payments.local", Some(&user))?;
    assert_eq!(due.action, Action::Continue);
    assert_eq!(
        upstream_authorization(&mut vm, due.id)?,
        Some(bearer("token.1"))
    );
    let again = send(&mut vm, "payments.local", Some(&user))?;
    assert_eq!(again.action, Action::Continue);
    let renewal = token_call(&mut vm)?;
    vm.respond_to_http_call(renewal.token, token_answer("token.2", 120))?;
    let renewed = send(&mut vm, "payments.local", Some(&user))?;
    assert_eq!(
        upstream_authorization(&mut vm, renewed.id)?,
        Some(bearer("token.2"))
    );
    for id in [due.id, again.id, renewed.id] {
        end(&mut vm, id)?;
    }

    // Past exp - margin of token.2 (exp at +190 s, margin 10 s): the request waits for a new token.
    vm.advance_time(Duration::from_secs(111))?;
    let late = send(&mut vm, "payments.local", Some(&user))?;
    assert_eq!(late.action, Action::Pause);
    let call = token_call(&mut vm)?;
    vm.respond_to_http_call(call.token, token_answer("token.3", 120))?;
    assert_eq!(
        upstream_authorization(&mut vm, late.id)?,
        Some(bearer("token.3"))
    );
    end(&mut vm, late.id)?;
    vm.finish()
}

#[test]
fn shared_data_never_holds_the_users_token() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut vm = worker(CONFIG, &shared)?;
    let sent = send(&mut vm, "payments.local", Some(&bearer(USER_TOKEN)))?;
    let call = token_call(&mut vm)?;
    vm.respond_to_http_call(call.token, token_answer("payments.token.1", 300))?;
    end(&mut vm, sent.id)?;
    let key = keymesh_core_key();
    let stored = String::from_utf8(shared.get(&key).expect("token entry")).unwrap();
    assert!(stored.ends_with("payments.token.1"), "{stored}");
    assert!(!key.contains("alice") && !stored.contains(USER_TOKEN));
    vm.finish()
}

/// The shared-data key of the payments token for [`USER_TOKEN`], as core computes it for the filter.
fn keymesh_core_key() -> String {
    let config = keymesh_core::egress::EgressConfig::parse(CONFIG.as_bytes()).unwrap();
    let destination = config.destination("payments.local").unwrap();
    let key = keymesh_core::egress::CacheKey::new(destination, Some(USER_TOKEN));
    format!("keymesh_egress.token.{}", key.id())
}

#[test]
fn the_token_reaches_every_waiter_when_the_request_that_asked_for_it_is_reset(
) -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut one = worker(CONFIG, &shared)?;
    let mut two = worker(CONFIG, &shared)?;
    let user = bearer(USER_TOKEN);
    let first = send(&mut one, "payments.local", Some(&user))?;
    let same_worker = send(&mut one, "payments.local", Some(&user))?;
    let other_worker = send(&mut two, "payments.local", Some(&user))?;
    let call = token_call(&mut one)?;
    two.advance_time(Duration::from_millis(1))?;
    assert!(
        two.pending_http_calls().is_empty(),
        "one exchange per Envoy"
    );
    // The client of the first request goes away before the sidecar answers. The token request was made by
    // the root context, so Envoy does not cancel it with the stream, and the answer reaches the root.
    let cancelled = one.http_stream(first.id)?.reset_by_client()?;
    assert!(
        cancelled.is_empty(),
        "cancelled with the stream: {cancelled:?}"
    );
    one.respond_to_http_call(call.token, token_answer("payments.token.1", 300))?;
    assert!(!paused(&mut one, same_worker.id)?, "resumed at once");
    assert_eq!(
        upstream_authorization(&mut one, same_worker.id)?.as_deref(),
        Some("Bearer payments.token.1")
    );
    // The other worker finds it on its next tick, well inside the lease.
    two.advance_time(Duration::from_millis(20))?;
    assert_eq!(
        upstream_authorization(&mut two, other_worker.id)?.as_deref(),
        Some("Bearer payments.token.1")
    );
    assert_eq!(one.http_call_history().len(), 1);
    assert!(two.http_call_history().is_empty());
    end(&mut one, same_worker.id)?;
    end(&mut two, other_worker.id)?;
    one.finish()?;
    two.finish()
}
