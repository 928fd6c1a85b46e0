//! API keys delivered as changes: bucketed shared-data entries, deltas, full resyncs that retire keys deleted
//! while out of the sidecar's window, the long poll, and revocation seen by every worker at once.

use crate::{request, tick_and_answer, vm, SIDECAR};
use keymesh_testkit::{
    api_key_entries, fixture, key_hash, ISSUER, KEY_ORDERS, KEY_UNKNOWN, SCENARIO_CONFIG,
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

fn key_status(vm: &mut Vm, key: &str) -> Result<u16, HostError> {
    Ok(request(
        vm,
        "/reports/1",
        &[("authorization", &format!("apikey {key}"))],
    )?
    .status())
}

/// Answers the pending long poll (dispatched right after the last stored bundle) with `body`.
fn push(vm: &mut Vm, body: String) -> Result<(), HostError> {
    let call = vm.next_http_call(SIDECAR)?;
    vm.respond_to_http_call(call.token, HttpResponse::new(200).body(body))
}

#[test]
fn after_a_change_the_filter_long_polls_for_the_next_one() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut vm,
        HttpResponse::new(200).body(full(4, api_key_entries())),
    )?;
    // Right after storing v4 the root asks again, and the sidecar may hold the request until something changes.
    let call = vm.next_http_call(SIDECAR)?;
    assert_eq!(call.path(), "/v1/bundle?wait=25&page=0");
    assert_eq!(call.headers.get("if-none-match"), Some("\"4\""));
    assert_eq!(call.timeout, Duration::from_millis(2000 + 25_000));
    vm.respond_to_http_call(call.token, HttpResponse::new(304))?;
    crate::finish(vm)
}

#[test]
fn a_delta_revokes_and_adds_keys() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut vm,
        HttpResponse::new(200).body(full(1, api_key_entries())),
    )?;
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 200);
    assert_eq!(key_status(&mut vm, KEY_UNKNOWN)?, 401);
    // v2: KEY_ORDERS revoked, KEY_UNKNOWN issued (a regenerate looks exactly like this).
    let new_entry = json!([{"hash": key_hash(KEY_UNKNOWN), "id": "ak_new", "owner": "alice",
                            "resources": ["https://orders.local"], "scopes": ["orders:read"]}]);
    push(
        &mut vm,
        delta(2, 1, new_entry, json!([key_hash(KEY_ORDERS)])),
    )?;
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 401);
    let out = request(&mut vm, "/reports/1", &[("x-api-key", KEY_UNKNOWN)])?;
    assert_eq!(
        (out.status(), out.upstream_header("x-keymesh-client-id")),
        (200, Some("ak_new"))
    );
    assert_eq!(
        out.upstream_header("x-api-key"),
        None,
        "the key was forwarded upstream"
    );
    assert_eq!(vm.gauge("keymesh.authn.bundle_version"), Some(2));
    crate::finish(vm)
}

#[test]
fn a_delta_for_another_version_is_ignored_and_a_full_bundle_requested() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut vm,
        HttpResponse::new(200).body(full(1, api_key_entries())),
    )?;
    push(
        &mut vm,
        delta(5, 3, json!([]), json!([key_hash(KEY_ORDERS)])),
    )?;
    assert_eq!(
        key_status(&mut vm, KEY_ORDERS)?,
        200,
        "a delta from v3 was applied to v1"
    );
    // The filter asks again at once, without If-None-Match: it wants everything.
    let call = vm.next_http_call(SIDECAR)?;
    assert_eq!(call.headers.get("if-none-match"), None);
    vm.respond_to_http_call(call.token, HttpResponse::new(200).body(full(5, json!([]))))?;
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 401);
    crate::finish(vm)
}

#[test]
fn a_full_resync_retires_keys_deleted_while_away() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut vm,
        HttpResponse::new(200).body(full(1, api_key_entries())),
    )?;
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 200);
    // The sidecar's change log no longer reaches v1: it sends the whole set at v9, without KEY_ORDERS. Nothing
    // explicitly deletes its entry, yet it must stop working.
    let others: Vec<Value> = api_key_entries()
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["hash"] != key_hash(KEY_ORDERS))
        .cloned()
        .collect();
    push(&mut vm, full(9, Value::Array(others)))?;
    assert_eq!(key_status(&mut vm, KEY_ORDERS)?, 401);
    crate::finish(vm)
}

#[test]
fn a_revocation_reaches_every_worker_at_once() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut fetcher = vm(SCENARIO_CONFIG, &shared)?;
    let mut other = vm(SCENARIO_CONFIG, &shared)?;
    tick_and_answer(
        &mut fetcher,
        HttpResponse::new(200).body(full(1, api_key_entries())),
    )?;
    assert_eq!(key_status(&mut other, KEY_ORDERS)?, 200);
    push(
        &mut fetcher,
        delta(2, 1, json!([]), json!([key_hash(KEY_ORDERS)])),
    )?;
    // No tick, no fetch on the other worker: the entry in shared data is gone for everyone.
    assert_eq!(key_status(&mut other, KEY_ORDERS)?, 401);
    crate::finish(fetcher)?;
    crate::finish(other)
}

#[test]
fn api_key_lookups_do_not_copy_the_key_set() -> Result<(), HostError> {
    // 2000 keys: a request reads one entry, so the worker never parses or holds the whole set.
    let mut keys: Vec<Value> = (0..2000)
        .map(|i| {
            let key = format!("km_{:0>43}", i);
            json!({"hash": key_hash(&key), "id": format!("ak_{i}"), "owner": format!("user{i}"),
                   "resources": ["https://orders.local"], "scopes": ["orders:read"]})
        })
        .collect();
    keys.extend(api_key_entries().as_array().unwrap().iter().cloned());
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(
        &mut vm,
        HttpResponse::new(200).body(full(1, Value::Array(keys))),
    )?;
    // A full resync writes the slot not in force, then switches to it: the bundle is in one of the two.
    let bundle = ["s0", "s1"]
        .iter()
        .filter_map(|slot| {
            vm.shared().get(&format!(
                "keymesh.authn.v3/keymesh_sidecar/v1/bundle/{slot}/bundle"
            ))
        })
        .max_by_key(Vec::len)
        .unwrap_or_default();
    assert!(!bundle.is_empty(), "no issuers bundle in shared data");
    assert!(
        bundle.len() < 4096,
        "the issuers bundle carries the key set: {} bytes",
        bundle.len()
    );
    let key = format!("km_{:0>43}", 1234);
    let out = request(
        &mut vm,
        "/reports/1",
        &[("authorization", &format!("apikey {key}"))],
    )?;
    assert_eq!(
        (out.status(), out.upstream_header("x-keymesh-subject")),
        (200, Some("user1234"))
    );
    crate::finish(vm)
}

#[test]
fn a_token_revoked_in_a_delta_is_refused_by_every_worker() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut fetcher = vm(SCENARIO_CONFIG, &shared)?;
    let mut other = vm(SCENARIO_CONFIG, &shared)?;
    tick_and_answer(
        &mut fetcher,
        HttpResponse::new(200).body(full(1, api_key_entries())),
    )?;
    let claims = keymesh_testkit::with(
        keymesh_testkit::claims(&["https://orders.local"], "orders:read"),
        "jti",
        json!("jti-to-revoke"),
    );
    let token = format!(
        "Bearer {}",
        fixture().token(keymesh_testkit::Alg::EdDsa, &claims)
    );
    assert_eq!(
        request(&mut other, "/orders/1", &[("authorization", &token)])?.status(),
        200
    );
    let revocation = json!({"version": 2, "since": 1, "issuers": issuers(),
        "revoked_tokens": [{"jti": "jti-to-revoke", "exp": keymesh_testkit::NOW + 300}]});
    push(&mut fetcher, revocation.to_string())?;
    let out = request(&mut other, "/orders/1", &[("authorization", &token)])?;
    assert_eq!(
        (out.status(), out.challenge_error()),
        (401, Some("invalid_token"))
    );
    assert!(out
        .challenge()
        .unwrap_or_default()
        .contains("token revoked"));
    crate::flush_metrics(&mut other)?;
    assert_eq!(other.counter("keymesh.authn.denied.revoked"), Some(1));
    crate::finish(fetcher)?;
    crate::finish(other)
}
