//! External identity providers: their tokens are trusted only at the APIs the operator listed, and a token
//! naming a `kid` the bundle lacks makes the filter ask the sidecar to refetch, at most once per interval per
//! Envoy.

use crate::{bearer, request, tick_and_answer, vm, SIDECAR};
use keymesh_testkit::{claims, fixture, with, Alg, ISSUER, OTHER_ISSUER, SCENARIO_CONFIG};
use keymesh_wasm_host::{HostError, HttpCall, HttpResponse, SharedStore, Vm};
use serde_json::{json, Value};
use std::time::Duration;

/// A bundle trusting the fixture issuer and [`OTHER_ISSUER`] as an external provider allowed at `audiences`.
fn bundle(version: u64, audiences: &[&str]) -> String {
    let other_key = json!({"kty":"OKP","crv":"Ed25519","kid":"other-ed-1","alg":"EdDSA",
        "x": other_issuer_x()});
    json!({"version": version, "issuers": [
        {"issuer": ISSUER, "jwks": fixture().jwks()},
        {"issuer": OTHER_ISSUER, "jwks": {"keys": [other_key]}, "audiences": audiences, "external": true},
    ]})
    .to_string()
}

/// The public key of the fixture's second issuer, as the fixture's own bundle publishes it.
fn other_issuer_x() -> Value {
    let full: Value = serde_json::from_str(&fixture().bundle(1)).unwrap_or_default();
    full["issuers"][1]["jwks"]["keys"][0]["x"].clone()
}

fn other_issuer_token(aud: &[&str]) -> String {
    bearer(&fixture().other_issuer_token(&with(
        claims(aud, "orders:read"),
        "iss",
        json!(OTHER_ISSUER),
    )))
}

/// A token that names a `kid` no bundle key has (signed by some key: it is refused before the signature).
fn rolled_key_token(kid: &str) -> String {
    let header = json!({"alg": "EdDSA", "kid": kid, "typ": "at+jwt"});
    let claims = with(
        claims(&["https://orders.local"], "orders:read"),
        "iss",
        json!(OTHER_ISSUER),
    );
    bearer(&fixture().sign_raw(Alg::EdDsa, &header, claims.to_string().as_bytes()))
}

fn refetch_calls(vm: &Vm) -> Vec<HttpCall> {
    vm.pending_http_calls()
        .into_iter()
        .filter(|call| call.upstream == SIDECAR && call.method() == "POST")
        .collect()
}

fn next_tick(vm: &mut Vm) -> Result<(), HostError> {
    let period = vm.tick_period().unwrap_or(Duration::from_secs(1));
    vm.advance_time(period).map(|_| ())
}

#[test]
fn an_external_issuer_is_trusted_only_at_the_apis_listed_for_it() -> Result<(), HostError> {
    let mut worker = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut worker,
        HttpResponse::new(200).body(bundle(1, &["https://billing.local"])),
    )?;
    // The token names the orders API, but its issuer is trusted only at billing.
    let token = other_issuer_token(&["https://orders.local", "https://billing.local"]);
    let out = request(&mut worker, "/orders/1", &[("authorization", &token)])?;
    assert_eq!(out.status(), 401, "{}", out.body());
    assert_eq!(out.challenge_error(), Some("invalid_token"));
    assert!(
        out.body().contains("issuer not trusted for this API"),
        "{}",
        out.body()
    );
    // The fixture issuer (no audiences listed) is still trusted everywhere.
    let own = bearer(&fixture().token(
        Alg::EdDsa,
        &claims(&["https://orders.local"], "orders:read"),
    ));
    assert_eq!(
        request(&mut worker, "/orders/1", &[("authorization", &own)])?.status(),
        200
    );

    // The operator adds the orders API to the provider's list: the same token passes.
    for call in worker.pending_http_calls() {
        worker.respond_to_http_call(
            call.token,
            HttpResponse::new(200).body(bundle(
                2,
                &["https://billing.local", "https://orders.local"],
            )),
        )?;
    }
    let out = request(&mut worker, "/orders/1", &[("authorization", &token)])?;
    assert_eq!(out.status(), 200, "{}", out.body());
    assert_eq!(out.upstream_header("x-keymesh-issuer"), Some(OTHER_ISSUER));
    crate::finish(worker)
}

#[test]
fn an_unknown_kid_asks_the_sidecar_to_refetch_once_per_interval_per_envoy() -> Result<(), HostError>
{
    let shared = SharedStore::new();
    let mut first = vm(SCENARIO_CONFIG, &shared)?;
    let mut second = vm(SCENARIO_CONFIG, &shared)?;
    tick_and_answer(
        &mut first,
        HttpResponse::new(200).body(bundle(1, &["https://orders.local"])),
    )?;

    let rolled = rolled_key_token("other-ed-2");
    let out = request(&mut first, "/orders/1", &[("authorization", &rolled)])?;
    assert_eq!(out.status(), 401);
    assert!(refetch_calls(&first).is_empty(), "asked before the tick");
    next_tick(&mut first)?;
    let calls = refetch_calls(&first);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path(), "/v1/issuers/refetch");
    assert_eq!(
        calls[0].headers.get("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(String::from_utf8_lossy(&calls[0].body), "kid=other-ed-2");
    first.respond_to_http_call(calls[0].token, HttpResponse::new(202))?;

    // Another worker of the same Envoy sees the same kid within the interval: it does not ask again.
    second.advance_time(Duration::from_secs(1))?;
    assert_eq!(
        request(&mut second, "/orders/1", &[("authorization", &rolled)])?.status(),
        401
    );
    next_tick(&mut second)?;
    assert!(
        refetch_calls(&second).is_empty(),
        "second worker asked within the interval"
    );

    // Once the interval has passed it may.
    second.advance_time(Duration::from_secs(5))?;
    request(&mut second, "/orders/1", &[("authorization", &rolled)])?;
    next_tick(&mut second)?;
    let calls = refetch_calls(&second);
    assert_eq!(calls.len(), 1, "{calls:?}");
    second.respond_to_http_call(calls[0].token, HttpResponse::new(202))?;
    crate::finish(first)?;
    crate::finish(second)
}

#[test]
fn unknown_kids_ask_nothing_without_external_issuers_or_from_absurd_tokens() -> Result<(), HostError>
{
    let mut worker = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut worker,
        HttpResponse::new(200).body(fixture().bundle(1)),
    )?;
    let rolled = rolled_key_token("other-ed-2");
    assert_eq!(
        request(&mut worker, "/orders/1", &[("authorization", &rolled)])?.status(),
        401
    );
    next_tick(&mut worker)?;
    assert!(
        refetch_calls(&worker).is_empty(),
        "no external issuer, yet it asked"
    );

    // With an external issuer, a kid of 129 characters or with spaces is not passed on.
    for call in worker.pending_http_calls() {
        worker.respond_to_http_call(
            call.token,
            HttpResponse::new(200).body(bundle(2, &["https://orders.local"])),
        )?;
    }
    for kid in ["k".repeat(129), "a kid".to_owned()] {
        request(
            &mut worker,
            "/orders/1",
            &[("authorization", &rolled_key_token(&kid))],
        )?;
        next_tick(&mut worker)?;
        assert!(refetch_calls(&worker).is_empty(), "asked for {kid:?}");
    }
    crate::finish(worker)
}
