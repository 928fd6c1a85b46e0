//! The key lifecycle at the filter: rate tiers forwarded (and never taken from the client), disabled keys
//! refused once a delta removes them and accepted again when it puts them back, and a regenerated key's old
//! secret accepted until its grace period ends and refused after it with no further delivery.

use crate::{bearer, request, tick_and_answer, vm, SIDECAR};
use keymesh_testkit::{
    claims, fixture, key_hash, with, Alg, ISSUER, KEY_ORDERS, KEY_UNKNOWN, NOW, SCENARIO_CONFIG,
};
use keymesh_wasm_host::{HostError, HttpResponse, SharedStore, Vm};
use serde_json::{json, Value};
use std::time::Duration;

fn issuers() -> Value {
    json!([{"issuer": ISSUER, "jwks": fixture().jwks()}])
}

fn full(version: u64, keys: Value) -> String {
    json!({"version": version, "issuers": issuers(), "api_keys": {"put": keys, "delete": []}})
        .to_string()
}

fn delta(version: u64, since: u64, put: Value, delete: Value) -> String {
    json!({"version": version, "since": since, "issuers": issuers(), "api_keys": {"put": put, "delete": delete}})
        .to_string()
}

/// Answers the pending long poll (dispatched right after the last stored bundle) with `body`.
fn push(vm: &mut Vm, body: String) -> Result<(), HostError> {
    let call = vm.next_http_call(SIDECAR)?;
    vm.respond_to_http_call(call.token, HttpResponse::new(200).body(body))
}

/// The bundle entry of `key`: id `ak_life`, owned by alice, good for `/reports`.
fn entry(key: &str, extra: &[(&str, Value)]) -> Value {
    let mut entry = json!({"hash": key_hash(key), "id": "ak_life", "owner": "alice",
                           "resources": ["https://orders.local"], "scopes": ["orders:read"]});
    for (name, value) in extra {
        entry[*name] = value.clone();
    }
    entry
}

fn key_status(vm: &mut Vm, key: &str) -> Result<u16, HostError> {
    Ok(request(vm, "/reports/1", &[("x-api-key", key)])?.status())
}

#[test]
fn a_keys_tier_is_forwarded_and_a_clients_own_tier_header_never_is() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    let keys = json!([entry(KEY_ORDERS, &[("tier", json!("pro"))]),
                      {"hash": key_hash(KEY_UNKNOWN), "id": "ak_plain", "owner": "bob",
                       "resources": ["https://orders.local"], "scopes": ["orders:read"]}]);
    tick_and_answer(&mut vm, HttpResponse::new(200).body(full(1, keys)))?;
    // The client claims a tier of its own: the key's tier replaces it.
    let pro = request(
        &mut vm,
        "/reports/1",
        &[("x-api-key", KEY_ORDERS), ("x-keymesh-tier", "enterprise")],
    )?;
    assert_eq!(pro.status(), 200);
    assert_eq!(pro.upstream_header("x-keymesh-tier"), Some("pro"));
    // A key without a tier: the client's header is removed, none is added.
    let plain = request(
        &mut vm,
        "/reports/1",
        &[("x-api-key", KEY_UNKNOWN), ("x-keymesh-tier", "enterprise")],
    )?;
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.upstream_header("x-keymesh-tier"), None);
    // A bundle entry whose tier could not be forwarded safely is refused rather than passed on.
    push(
        &mut vm,
        delta(
            2,
            1,
            json!([entry(KEY_ORDERS, &[("tier", json!("pro\r\nx-admin: 1"))])]),
            json!([]),
        ),
    )?;
    let bad = request(&mut vm, "/reports/1", &[("x-api-key", KEY_ORDERS)])?;
    assert_eq!(bad.status(), 401);
    crate::finish(vm)
}

#[test]
fn a_tokens_tier_claim_is_forwarded_and_a_malformed_one_refused() -> Result<(), HostError> {
    let mut vm = crate::ready_vm()?;
    let token = |tier: Value| {
        fixture().token(
            Alg::EdDsa,
            &with(
                claims(&["https://orders.local"], "orders:read"),
                "keymesh_tier",
                tier,
            ),
        )
    };
    let gold = request(
        &mut vm,
        "/orders/1",
        &[
            ("authorization", &bearer(&token(json!("gold")))),
            ("x-keymesh-tier", "free"),
        ],
    )?;
    assert_eq!(gold.status(), 200);
    assert_eq!(gold.upstream_header("x-keymesh-tier"), Some("gold"));
    let none = request(
        &mut vm,
        "/orders/1",
        &[
            ("authorization", &bearer(&token(Value::Null))),
            ("x-keymesh-tier", "free"),
        ],
    )?;
    assert_eq!(none.status(), 200);
    assert_eq!(none.upstream_header("x-keymesh-tier"), None);
    for bad in [json!("two words"), json!(7), json!("x".repeat(33))] {
        let out = request(
            &mut vm,
            "/orders/1",
            &[("authorization", &bearer(&token(bad.clone())))],
        )?;
        assert_eq!(out.status(), 401, "{bad}");
    }
    crate::finish(vm)
}

#[test]
fn a_disabled_key_is_refused_after_the_delta_and_works_again_once_enabled() -> Result<(), HostError>
{
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut vm,
        HttpResponse::new(200).body(full(1, json!([entry(KEY_ORDERS, &[])]))),
    )?;
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 200);
    // Disabling delivers the key's removal.
    push(
        &mut vm,
        delta(2, 1, json!([]), json!([key_hash(KEY_ORDERS)])),
    )?;
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 401);
    // Enabling puts the same entry (same hash) back.
    push(
        &mut vm,
        delta(3, 2, json!([entry(KEY_ORDERS, &[])]), json!([])),
    )?;
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 200);
    crate::finish(vm)
}

#[test]
fn an_old_secret_works_until_its_grace_ends_then_is_refused_without_a_delivery(
) -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut vm,
        HttpResponse::new(200).body(full(1, json!([entry(KEY_ORDERS, &[])]))),
    )?;
    // Regenerated with 60 s of grace: the new secret is put, the old one put again with its grace end as expiry.
    let grace_end = NOW + 60;
    push(
        &mut vm,
        delta(
            2,
            1,
            json!([
                entry(KEY_UNKNOWN, &[]),
                entry(KEY_ORDERS, &[("expires_at", json!(grace_end))])
            ]),
            json!([]),
        ),
    )?;
    assert_eq!(
        key_status(&mut vm, KEY_ORDERS)?,
        200,
        "old secret within grace"
    );
    assert_eq!(key_status(&mut vm, KEY_UNKNOWN)?, 200, "new secret");
    let out = request(&mut vm, "/reports/1", &[("x-api-key", KEY_ORDERS)])?;
    assert_eq!(
        out.upstream_header("x-keymesh-client-id"),
        Some("ak_life"),
        "same id for both"
    );
    // Time passes; the sidecar says nothing new (the long poll ends empty).
    let call = vm.next_http_call(SIDECAR)?;
    vm.respond_to_http_call(call.token, HttpResponse::new(304))?;
    vm.advance_time(Duration::from_secs(61))?;
    let history = vm.http_call_history().len();
    assert_eq!(
        key_status(&mut vm, KEY_ORDERS)?,
        401,
        "old secret after grace"
    );
    assert_eq!(
        key_status(&mut vm, KEY_UNKNOWN)?,
        200,
        "new secret after grace"
    );
    assert_eq!(
        vm.http_call_history().len(),
        history,
        "no call needed to refuse it"
    );
    crate::finish(vm)
}

/// The unanswered usage report, if the filter has sent one.
fn usage_report(vm: &Vm) -> Option<keymesh_wasm_host::HttpCall> {
    vm.pending_http_calls()
        .into_iter()
        .find(|call| call.path() == "/v1/usage")
}

/// Counts per id in a usage report's body (empty if it is not a report).
fn counts(call: &keymesh_wasm_host::HttpCall) -> std::collections::BTreeMap<String, u64> {
    let body: Value = serde_json::from_slice(&call.body).unwrap_or_default();
    body["uses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| Some((u["id"].as_str()?.to_owned(), u["count"].as_u64()?)))
        .collect()
}

/// A VM holding `ak_life` (KEY_ORDERS) and `ak_other` (KEY_UNKNOWN), both good for `/reports`.
fn two_key_vm() -> Result<Vm, HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    let mut other = entry(KEY_UNKNOWN, &[]);
    other["id"] = json!("ak_other");
    tick_and_answer(
        &mut vm,
        HttpResponse::new(200).body(full(1, json!([entry(KEY_ORDERS, &[]), other]))),
    )?;
    Ok(vm)
}

#[test]
fn uses_are_counted_in_memory_and_reported_in_one_batch_per_period() -> Result<(), HostError> {
    let mut vm = two_key_vm()?;
    let calls_before = vm.http_call_history().len();
    for key in [KEY_ORDERS, KEY_ORDERS, KEY_UNKNOWN, KEY_ORDERS] {
        assert_eq!(key_status(&mut vm, key)?, 200);
    }
    // Refused requests are not uses.
    assert_eq!(
        request(&mut vm, "/orders/1", &[("x-api-key", KEY_ORDERS)])?.status(),
        401
    );
    assert_eq!(
        vm.http_call_history().len(),
        calls_before,
        "no host call per request"
    );
    assert!(usage_report(&vm).is_none());
    // Within one report period (10 s by default) the worker sends one report with every count.
    vm.advance_time(Duration::from_secs(11))?;
    let report = usage_report(&vm).expect("a usage report after the period");
    assert_eq!(
        (report.method(), report.upstream.as_str()),
        ("POST", SIDECAR)
    );
    assert_eq!(report.headers.get("content-type"), Some("application/json"));
    assert_eq!(
        counts(&report),
        [("ak_life".to_owned(), 3), ("ak_other".to_owned(), 1)].into()
    );
    vm.respond_to_http_call(report.token, HttpResponse::new(204))?;
    // Nothing used since: nothing sent.
    vm.advance_time(Duration::from_secs(11))?;
    assert!(usage_report(&vm).is_none());
    crate::finish(vm)
}

#[test]
fn a_report_that_fails_loses_its_counts_never_a_request() -> Result<(), HostError> {
    let mut vm = two_key_vm()?;
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 200);
    vm.advance_time(Duration::from_secs(11))?;
    let report = usage_report(&vm).expect("first report");
    // The sidecar is down: the report fails, and requests go on regardless.
    vm.respond_to_http_call(report.token, HttpResponse::new(503))?;
    assert_eq!(key_status(&mut vm, KEY_UNKNOWN)?, 200);
    assert_eq!(vm.counter("keymesh.authn.usage_report_failures"), Some(1));
    // While the host refuses calls altogether, counts are dropped the same way and requests still pass.
    vm.refuse_http_calls(true);
    vm.advance_time(Duration::from_secs(11))?;
    assert!(usage_report(&vm).is_none());
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 200);
    vm.refuse_http_calls(false);
    vm.advance_time(Duration::from_secs(11))?;
    // The next report has only what came after: the failed counts were not kept for a retry.
    let report = usage_report(&vm).expect("report after recovery");
    assert_eq!(counts(&report), [("ak_life".to_owned(), 1)].into());
    vm.respond_to_http_call(report.token, HttpResponse::new(204))?;
    crate::finish(vm)
}

#[test]
fn the_count_map_is_bounded_and_a_full_map_drops_counts_not_requests() -> Result<(), HostError> {
    const KEYS: usize = keymesh_core_capacity() + 4;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("km_{:0>43}", i)).collect();
    let entries: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            json!({"hash": key_hash(key), "id": format!("ak_many{i}"), "owner": "o",
                   "resources": ["https://orders.local"], "scopes": ["orders:read"]})
        })
        .collect();
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut vm,
        HttpResponse::new(200).body(full(1, Value::Array(entries))),
    )?;
    for key in &keys {
        assert_eq!(
            key_status(&mut vm, key)?,
            200,
            "every request passes, counted or not"
        );
    }
    vm.advance_time(Duration::from_secs(11))?;
    let report = usage_report(&vm).expect("report");
    assert_eq!(counts(&report).len(), keymesh_core_capacity());
    assert_eq!(vm.counter("keymesh.authn.usage_dropped"), Some(4));
    vm.respond_to_http_call(report.token, HttpResponse::new(204))?;
    crate::finish(vm)
}

/// The filter's bound on distinct keys counted between reports (`keymesh_core::usage::DEFAULT_CAPACITY`).
const fn keymesh_core_capacity() -> usize {
    4096
}
