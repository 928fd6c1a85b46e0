//! Envoy runs one VM per worker; the bundle is fetched once per Envoy and shared through shared data.

use crate::{bearer, request, tick_and_answer, vm, SIDECAR, STARTUP_TICK};
use keymesh_testkit::{claims, fixture, Alg, SCENARIO_CONFIG};
use keymesh_wasm_host::{HostError, HttpResponse, SharedStore};

#[test]
fn one_worker_fetches_and_every_worker_uses_the_bundle() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut first = vm(SCENARIO_CONFIG, &shared)?;
    let mut second = vm(SCENARIO_CONFIG, &shared)?;
    // Both workers tick at the same moment; the lease lets only one of them fetch.
    first.advance_time(STARTUP_TICK)?;
    second.advance_time(STARTUP_TICK)?;
    let calls = first.pending_http_calls().len() + second.pending_http_calls().len();
    assert_eq!(calls, 1, "expected one fetch for two workers");
    let (fetcher, other) = if first.pending_http_calls().is_empty() {
        (&mut second, &mut first)
    } else {
        (&mut first, &mut second)
    };
    let call = fetcher.next_http_call(SIDECAR)?;
    fetcher.respond_to_http_call(call.token, HttpResponse::new(200).body(fixture().bundle(1)))?;

    let token = bearer(&fixture().token(
        Alg::EdDsa,
        &claims(&["https://orders.local"], "orders:read"),
    ));
    let out = request(other, "/orders/1", &[("authorization", &token)])?;
    assert_eq!(
        out.status(),
        200,
        "the worker that did not fetch has no keys: {}",
        out.body()
    );
    crate::finish(first)?;
    crate::finish(second)
}

#[test]
fn a_worker_picks_up_a_new_version_on_its_next_request() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut fetcher = vm(SCENARIO_CONFIG, &shared)?;
    let mut idle = vm(SCENARIO_CONFIG, &shared)?;
    tick_and_answer(
        &mut fetcher,
        HttpResponse::new(200).body(fixture().bundle(1)),
    )?;
    let es = bearer(&fixture().token(
        Alg::Es256,
        &claims(&["https://orders.local"], "orders:read"),
    ));
    assert_eq!(
        request(&mut idle, "/orders/1", &[("authorization", &es)])?.status(),
        200
    );

    let only_ed = serde_json::json!({"version": 2, "issuers": [
        {"issuer": keymesh_testkit::ISSUER, "jwks": {"keys": [fixture().public_jwk(Alg::EdDsa)]}}]});
    tick_and_answer(
        &mut fetcher,
        HttpResponse::new(200).body(only_ed.to_string()),
    )?;
    // No tick on the idle worker: its next request sees v2 already.
    assert_eq!(
        request(&mut idle, "/orders/1", &[("authorization", &es)])?.status(),
        401
    );
    crate::finish(fetcher)?;
    crate::finish(idle)
}

#[test]
fn a_worker_that_cannot_dispatch_does_not_keep_the_others_from_fetching() -> Result<(), HostError> {
    // At startup Envoy may refuse one worker's calls (its cluster manager is not ready yet). That worker must not
    // sit on the fetch lease for a whole fetch timeout while the others could fetch.
    let shared = SharedStore::new();
    let mut refused = vm(SCENARIO_CONFIG, &shared)?;
    let mut other = vm(SCENARIO_CONFIG, &shared)?;
    refused.refuse_http_calls(true);
    refused.advance_time(STARTUP_TICK)?;
    assert!(refused.pending_http_calls().is_empty());
    assert_eq!(
        refused.counter("keymesh.authn.bundle_fetch_failures"),
        Some(1)
    );
    // The other worker's next startup tick fetches.
    other.advance_time(STARTUP_TICK)?;
    let call = other.next_http_call(SIDECAR)?;
    other.respond_to_http_call(call.token, HttpResponse::new(200).body(fixture().bundle(1)))?;
    let token = bearer(&fixture().token(
        Alg::EdDsa,
        &claims(&["https://orders.local"], "orders:read"),
    ));
    refused.refuse_http_calls(false);
    assert_eq!(
        request(&mut refused, "/orders/1", &[("authorization", &token)])?.status(),
        200
    );
    crate::finish(refused)?;
    crate::finish(other)
}
