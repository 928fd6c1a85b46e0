//! A full resync of many API keys: the fetching VM reads the body from the host in chunks and stores the keys in
//! batches, so its linear memory (which never shrinks) does not grow with the bundle.

use crate::{request, tick_and_answer, vm};
use keymesh_testkit::{fixture, key_hash, ISSUER, SCENARIO_CONFIG};
use keymesh_wasm_host::{HostError, HttpResponse, SharedStore, Vm};
use serde_json::json;

fn key(i: usize) -> String {
    format!("km_{i:0>43}")
}

/// A full bundle of `count` keys, in hash order as the sidecar serves it.
fn full(count: usize) -> String {
    let mut keys: Vec<(String, usize)> = (0..count).map(|i| (key_hash(&key(i)), i)).collect();
    keys.sort();
    let put: Vec<_> = keys
        .into_iter()
        .map(|(hash, i)| {
            json!({"hash": hash, "id": format!("ak_{i}"), "owner": format!("user{i}"),
                   "resources": ["https://orders.local"], "scopes": ["orders:read"]})
        })
        .collect();
    json!({"version": 1, "issuers": [{"issuer": ISSUER, "jwks": fixture().jwks()}],
           "api_keys": {"put": put, "delete": []}})
    .to_string()
}

/// A VM's linear memory after it applied a full bundle of `count` keys, and the VM.
fn after_full(count: usize) -> Result<(usize, usize, Vm), HostError> {
    let body = full(count);
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(body.clone()))?;
    Ok((body.len(), vm.linear_memory_bytes(), vm))
}

fn key_status(vm: &mut Vm, i: usize) -> Result<u16, HostError> {
    let header = format!("apikey {}", key(i));
    Ok(request(vm, "/reports/1", &[("authorization", &header)])?.status())
}

#[test]
fn a_large_full_bundle_does_not_grow_the_fetching_vm_with_its_size() -> Result<(), HostError> {
    let (small_body, small, small_vm) = after_full(100)?;
    let (large_body, large, mut large_vm) = after_full(60_000)?;
    eprintln!(
        "linear memory after a full bundle: {small} bytes for {small_body} bytes of bundle, {large} bytes for \
         {large_body} bytes"
    );
    assert!(
        large_body > 8 << 20,
        "the large bundle is {large_body} bytes"
    );
    // Before, the body and the parsed keys were held at once: memory grew by several times the body.
    assert!(
        large.saturating_sub(small) < 2 << 20,
        "{} bytes more for {} more bytes of bundle",
        large.saturating_sub(small),
        large_body - small_body
    );
    for i in [0, 29_999, 59_999] {
        assert_eq!(key_status(&mut large_vm, i)?, 200, "key {i}");
    }
    assert_eq!(key_status(&mut large_vm, 60_000)?, 401);
    crate::finish(small_vm)?;
    crate::finish(large_vm)
}
