//! What one worker VM holds in its linear memory: the figures behind "per-worker memory" in BENCHMARKS.md, and
//! guards on the two things that grow with traffic — the verified-token cache, bounded by `token_cache_size`, and
//! the cost of each token it remembers.
//!
//! The worker here is not the fetching one: it reads the bundle another VM stored, like every Envoy worker but one.
//! Linear memory never shrinks, so each reading is the high-water mark of the VM's heap (64 KiB pages).

use crate::{bearer, request, tick_and_answer, vm};
use keymesh_testkit::{claims, fixture, with, Alg, SCENARIO_CONFIG};
use keymesh_wasm_host::{HostError, HttpResponse, SharedStore, Vm};
use serde_json::json;

/// The cache size the test fills: small enough to sign and verify quickly, large enough to see the per-token cost
/// above the 64 KiB page granularity.
const CAPACITY: usize = 1024;

fn config() -> String {
    let mut config: serde_json::Value = serde_json::from_str(SCENARIO_CONFIG).unwrap_or_default();
    config["token_cache_size"] = json!(CAPACITY);
    config.to_string()
}

/// A token like the ones a real issuer mints (the fixture's claims, one `jti` per token), signed with EdDSA.
fn token(i: usize) -> String {
    let claims = with(
        claims(&["https://orders.local"], "orders:read"),
        "jti",
        json!(format!("0b6f2a4e-{i:0>4}-4c1d-9a3e-5f7d8c2b1a60")),
    );
    bearer(&fixture().token(Alg::EdDsa, &claims))
}

fn allowed(vm: &mut Vm, authorization: &str) -> Result<(), HostError> {
    let out = request(vm, "/orders/1", &[("authorization", authorization)])?;
    assert_eq!(out.status(), 200, "{}", out.body());
    Ok(())
}

#[test]
fn a_worker_holds_its_keys_and_at_most_token_cache_size_tokens() -> Result<(), HostError> {
    let config = config();
    let shared = SharedStore::new();
    let mut fetcher = vm(&config, &shared)?;
    tick_and_answer(
        &mut fetcher,
        HttpResponse::new(200).body(fixture().bundle(1)),
    )?;

    let mut worker = vm(&config, &shared)?;
    let started = worker.linear_memory_bytes();
    // One token of each algorithm: the worker parses the bundle's keys and verifies once per algorithm.
    for alg in [Alg::EdDsa, Alg::Es256, Alg::Rs256] {
        let one = bearer(&fixture().token(alg, &claims(&["https://orders.local"], "orders:read")));
        allowed(&mut worker, &one)?;
        allowed(&mut worker, &one)?;
    }
    let serving = worker.linear_memory_bytes();

    let tokens: Vec<String> = (0..CAPACITY * 3 / 2).map(token).collect();
    let token_bytes = tokens.iter().take(CAPACITY).map(String::len).sum::<usize>() / CAPACITY;
    for t in tokens.iter().take(CAPACITY - 3) {
        allowed(&mut worker, t)?;
    }
    let full = worker.linear_memory_bytes();
    // Past capacity the cache starts over: memory stays where a full cache put it.
    for t in tokens.iter().skip(CAPACITY - 3) {
        allowed(&mut worker, t)?;
    }
    for t in tokens.iter().skip(CAPACITY - 3) {
        allowed(&mut worker, t)?;
    }
    let after = worker.linear_memory_bytes();

    let per_token = full.saturating_sub(serving) / CAPACITY;
    eprintln!(
        "worker linear memory: {started} bytes started, {serving} serving (keys parsed, one token of each algorithm \
         cached), {full} with {CAPACITY} tokens cached ({per_token} bytes per cached token of {token_bytes} bytes), \
         {after} after {} more distinct tokens",
        CAPACITY / 2 + 3
    );
    assert!(
        after <= full + (64 << 10),
        "a full cache kept growing: {full} → {after} bytes"
    );
    // The cache keeps a 16-byte keyed hash of each token, its parsed claims and its rendered identity headers
    // (≈ 700 bytes here), not the token: holding the token too costs its length on top.
    assert!(
        per_token < token_bytes + 400,
        "{per_token} bytes per cached token of {token_bytes} bytes: is the token itself kept?"
    );
    crate::finish(fetcher)?;
    crate::finish(worker)
}
