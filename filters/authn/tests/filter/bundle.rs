//! Bundle delivery: fail closed before the first bundle, conditional refresh, key retirement, and keeping the
//! last good bundle when the sidecar misbehaves.

use crate::{bearer, request, tick_and_answer, vm, SIDECAR, STARTUP_TICK};
use keymesh_testkit::{claims, fixture, Alg, SCENARIO_CONFIG};
use keymesh_wasm_host::{HostError, HttpResponse, LogLevel, SharedStore};
use std::time::Duration;

fn orders_token(alg: Alg) -> String {
    bearer(&fixture().token(alg, &claims(&["https://orders.local"], "orders:read")))
}

#[test]
fn fails_closed_with_503_before_the_first_bundle() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    let out = request(
        &mut vm,
        "/orders/1",
        &[("authorization", &orders_token(Alg::EdDsa))],
    )?;
    assert_eq!(out.status(), 503);
    assert!(out.body().contains("key material"), "{}", out.body());
    crate::flush_metrics(&mut vm)?;
    assert_eq!(vm.counter("keymesh.authn.denied.no_key_material"), Some(1));
    crate::finish(vm)
}

#[test]
fn first_fetch_is_a_plain_get_to_the_sidecar_cluster() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    assert_eq!(
        vm.tick_period(),
        Some(STARTUP_TICK),
        "should tick fast until the first bundle"
    );
    assert!(
        vm.pending_http_calls().is_empty(),
        "no call may be made during on_configure"
    );
    vm.advance_time(STARTUP_TICK)?;
    let call = vm.next_http_call(SIDECAR)?;
    assert_eq!((call.method(), call.path()), ("GET", "/v1/bundle?page=0"));
    assert_eq!(call.headers.get(":authority"), Some("keymesh-sidecar"));
    assert_eq!(call.headers.get("if-none-match"), None);
    assert_eq!(call.headers.get("x-keymesh-proxy"), Some("test-node"));
    assert_eq!(call.timeout, Duration::from_millis(2000));
    vm.respond_to_http_call(call.token, HttpResponse::new(200).body(fixture().bundle(1)))?;
    assert_eq!(vm.gauge("keymesh.authn.bundle_version"), Some(1));
    assert_eq!(
        request(
            &mut vm,
            "/orders/1",
            &[("authorization", &orders_token(Alg::EdDsa))]
        )?
        .status(),
        200
    );
    crate::finish(vm)
}

#[test]
fn refresh_is_conditional_and_304_keeps_the_keys() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(7)))?;
    // The next tick moves to the configured interval, and asks only for something newer than v7.
    vm.advance_time(STARTUP_TICK)?;
    let call = vm.next_http_call(SIDECAR)?;
    assert_eq!(call.headers.get("if-none-match"), Some("\"7\""));
    assert_eq!(vm.tick_period(), Some(Duration::from_millis(1000)));
    vm.respond_to_http_call(call.token, HttpResponse::new(304))?;
    assert_eq!(
        request(
            &mut vm,
            "/orders/1",
            &[("authorization", &orders_token(Alg::Es256))]
        )?
        .status(),
        200
    );
    assert_eq!(vm.counter("keymesh.authn.bundle_fetch_failures"), Some(0));
    crate::finish(vm)
}

#[test]
fn a_newer_bundle_retires_keys_at_once() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    let es = orders_token(Alg::Es256);
    assert_eq!(
        request(&mut vm, "/orders/1", &[("authorization", &es)])?.status(),
        200
    );
    let only_ed = serde_json::json!({"version": 2, "issuers": [
        {"issuer": keymesh_testkit::ISSUER, "jwks": {"keys": [fixture().public_jwk(Alg::EdDsa)]}}]});
    tick_and_answer(&mut vm, HttpResponse::new(200).body(only_ed.to_string()))?;
    let out = request(&mut vm, "/orders/1", &[("authorization", &es)])?;
    assert_eq!(
        (out.status(), out.challenge_error()),
        (401, Some("invalid_token"))
    );
    assert_eq!(
        request(
            &mut vm,
            "/orders/1",
            &[("authorization", &orders_token(Alg::EdDsa))]
        )?
        .status(),
        200
    );
    assert_eq!(vm.gauge("keymesh.authn.bundle_version"), Some(2));
    crate::finish(vm)
}

#[test]
fn an_older_bundle_never_replaces_a_newer_one() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(5)))?;
    let stale = serde_json::json!({"version": 4, "issuers": []});
    tick_and_answer(&mut vm, HttpResponse::new(200).body(stale.to_string()))?;
    assert_eq!(
        request(
            &mut vm,
            "/orders/1",
            &[("authorization", &orders_token(Alg::EdDsa))]
        )?
        .status(),
        200
    );
    crate::finish(vm)
}

#[test]
fn malformed_or_truncated_bundles_keep_the_last_good_one() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    let good = fixture().bundle(2);
    for broken in [
        "not json".to_owned(),
        good[..good.len() / 2].to_owned(),
        String::new(),
        r#"{"issuers":[]}"#.into(),
    ] {
        tick_and_answer(&mut vm, HttpResponse::new(200).body(broken))?;
    }
    assert_eq!(vm.counter("keymesh.authn.bundle_rejected"), Some(4));
    assert!(vm
        .find_log(LogLevel::Warn, "keeping the last good one")
        .is_some());
    assert_eq!(vm.gauge("keymesh.authn.bundle_version"), Some(1));
    assert_eq!(
        request(
            &mut vm,
            "/orders/1",
            &[("authorization", &orders_token(Alg::Rs256))]
        )?
        .status(),
        200
    );
    crate::finish(vm)
}

#[test]
fn an_issuer_with_an_unsafe_key_set_is_dropped_alone() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    let ed = fixture().public_jwk(Alg::EdDsa);
    let bundle = serde_json::json!({"version": 3, "issuers": [
        {"issuer": keymesh_testkit::ISSUER, "jwks": {"keys": [ed]}},
        {"issuer": "https://broken.example", "jwks": {"keys": [ed, ed]}}]});
    tick_and_answer(&mut vm, HttpResponse::new(200).body(bundle.to_string()))?;
    assert!(
        vm.find_log(LogLevel::Warn, "duplicate kid").is_some(),
        "{:?}",
        vm.logs()
    );
    assert_eq!(
        request(
            &mut vm,
            "/orders/1",
            &[("authorization", &orders_token(Alg::EdDsa))]
        )?
        .status(),
        200
    );
    crate::finish(vm)
}

#[test]
fn one_unusable_key_costs_only_itself() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    // An Ed25519 `x` that is not a curve point (y = 2), next to the issuer's good keys.
    let not_a_point = serde_json::json!({"kty":"OKP","crv":"Ed25519","kid":"sloppy",
        "x":"AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    let bundle = serde_json::json!({"version": 3, "issuers": [
        {"issuer": keymesh_testkit::ISSUER, "jwks": {"keys": [
            fixture().public_jwk(Alg::EdDsa), not_a_point, fixture().public_jwk(Alg::Rs256)]}}]});
    tick_and_answer(&mut vm, HttpResponse::new(200).body(bundle.to_string()))?;
    assert!(
        vm.find_log(LogLevel::Warn, "sloppy").is_some(),
        "{:?}",
        vm.logs()
    );
    assert_eq!(vm.gauge("keymesh.authn.bundle_keys_refused"), Some(1));
    for alg in [Alg::EdDsa, Alg::Rs256] {
        let out = request(
            &mut vm,
            "/orders/1",
            &[("authorization", &orders_token(alg))],
        )?;
        assert_eq!(out.status(), 200, "{alg:?}");
    }
    // A later bundle without the bad key clears the gauge.
    let clean = serde_json::json!({"version": 4, "issuers": [
        {"issuer": keymesh_testkit::ISSUER, "jwks": {"keys": [fixture().public_jwk(Alg::EdDsa)]}}]});
    tick_and_answer(&mut vm, HttpResponse::new(200).body(clean.to_string()))?;
    assert_eq!(vm.gauge("keymesh.authn.bundle_keys_refused"), Some(0));
    crate::finish(vm)
}

#[test]
fn sidecar_timeouts_and_errors_are_counted_and_retried() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    // Unreachable before the first bundle: still fail closed, and keep trying on every tick.
    vm.advance_time(STARTUP_TICK)?;
    let call = vm.next_http_call(SIDECAR)?;
    vm.reset_http_call(call.token)?;
    assert!(vm
        .find_log(LogLevel::Warn, "unreachable or timed out")
        .is_some());
    assert_eq!(
        request(
            &mut vm,
            "/orders/1",
            &[("authorization", &orders_token(Alg::EdDsa))]
        )?
        .status(),
        503
    );
    tick_and_answer(&mut vm, HttpResponse::new(500).body("oops"))?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    assert_eq!(vm.counter("keymesh.authn.bundle_fetch_failures"), Some(2));
    // Once keys are held, a failing sidecar does not take them away.
    vm.advance_time(Duration::from_millis(1000))?;
    let call = vm.next_http_call(SIDECAR)?;
    vm.reset_http_call(call.token)?;
    assert_eq!(
        request(
            &mut vm,
            "/orders/1",
            &[("authorization", &orders_token(Alg::EdDsa))]
        )?
        .status(),
        200
    );
    assert_eq!(vm.counter("keymesh.authn.bundle_fetch_failures"), Some(3));
    crate::finish(vm)
}

#[test]
fn one_fetch_at_a_time() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    vm.advance_time(STARTUP_TICK)?;
    let first = vm.next_http_call(SIDECAR)?;
    // Ticks while the call is outstanding dispatch nothing more.
    vm.advance_time(STARTUP_TICK * 3)?;
    assert_eq!(
        vm.pending_http_calls().len(),
        1,
        "{:?}",
        vm.pending_http_calls()
    );
    vm.respond_to_http_call(
        first.token,
        HttpResponse::new(200).body(fixture().bundle(1)),
    )?;
    crate::finish(vm)
}

#[test]
fn stale_key_material_fails_closed_and_recovers() -> Result<(), HostError> {
    let config = r#"{"sidecar":{"cluster":"keymesh_sidecar","max_age_secs":60},"routes":[
        {"prefix":"/strict","audience":"https://orders.local"},
        {"prefix":"/lenient","audience":"https://orders.local","when_stale":"last_known_keys"}]}"#;
    let mut vm = vm(config, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    let token = bearer(&fixture().token(Alg::EdDsa, &claims(&["https://orders.local"], "")));
    // The sidecar goes away: every long poll and every retry fails for a little over a minute.
    for _ in 0..62 {
        for call in vm.pending_http_calls() {
            vm.reset_http_call(call.token)?;
        }
        vm.advance_time(Duration::from_secs(1))?;
    }
    for call in vm.pending_http_calls() {
        vm.reset_http_call(call.token)?;
    }
    assert!(vm
        .gauge("keymesh.authn.bundle_age_ms")
        .is_some_and(|age| age > 60_000));
    let strict = request(&mut vm, "/strict/1", &[("authorization", &token)])?;
    assert_eq!(strict.status(), 503);
    assert!(strict.body().contains("stale"), "{}", strict.body());
    assert_eq!(
        request(&mut vm, "/lenient/1", &[("authorization", &token)])?.status(),
        200
    );
    // The sidecar is back: the next answer makes the material fresh again.
    tick_and_answer(&mut vm, HttpResponse::new(304))?;
    assert_eq!(
        request(&mut vm, "/strict/1", &[("authorization", &token)])?.status(),
        200
    );
    crate::finish(vm)
}

#[test]
fn damaged_answers_do_not_keep_key_material_fresh() -> Result<(), HostError> {
    let config = r#"{"sidecar":{"cluster":"keymesh_sidecar","max_age_secs":60},"routes":[
        {"prefix":"/strict","audience":"https://orders.local"}]}"#;
    let mut vm = vm(config, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    let token = bearer(&fixture().token(Alg::EdDsa, &claims(&["https://orders.local"], "")));
    // The sidecar answers every fetch for a little over a minute, but with a body that is not a bundle: it has not
    // confirmed the keys held, so they go stale as if it had not answered at all.
    for _ in 0..62 {
        for call in vm.pending_http_calls() {
            vm.respond_to_http_call(call.token, HttpResponse::new(200).body("not json"))?;
        }
        vm.advance_time(Duration::from_secs(1))?;
    }
    for call in vm.pending_http_calls() {
        vm.respond_to_http_call(call.token, HttpResponse::new(200).body("not json"))?;
    }
    assert!(vm
        .counter("keymesh.authn.bundle_rejected")
        .is_some_and(|n| n > 1));
    assert_eq!(
        request(&mut vm, "/strict/1", &[("authorization", &token)])?.status(),
        503
    );
    tick_and_answer(&mut vm, HttpResponse::new(304))?;
    assert_eq!(
        request(&mut vm, "/strict/1", &[("authorization", &token)])?.status(),
        200
    );
    crate::finish(vm)
}
