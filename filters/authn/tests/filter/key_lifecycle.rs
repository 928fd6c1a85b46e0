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
