//! A full resync of many API keys. Sent whole (by a sidecar that does not page), the fetching VM reads the body
//! from the host in chunks and stores the keys in batches; sent in pages, the host (Envoy) also never holds more
//! than one page, and no worker sees any of the new version until its last page is stored.

use crate::{request, tick_and_answer, vm, SIDECAR};
use keymesh_core::delivery::paging::{by_hash_bytes, page_end, PAGE_BYTES};
use keymesh_testkit::{fixture, key_hash, ISSUER, SCENARIO_CONFIG};
use keymesh_wasm_host::{HostError, HttpResponse, SharedStore, Vm};
use serde_json::{json, Value};

fn key(i: usize) -> String {
    format!("km_{i:0>43}")
}

/// The entries of keys `range`, in the order the sidecar serves them (by hash bytes).
fn entries(range: std::ops::Range<usize>) -> Vec<Value> {
    let mut keys: Vec<(String, usize)> = range.map(|i| (key_hash(&key(i)), i)).collect();
    keys.sort_by(|a, b| by_hash_bytes(&a.0, &b.0));
    keys.into_iter()
        .map(|(hash, i)| {
            json!({"hash": hash, "id": format!("ak_{i}"), "owner": format!("user{i}"),
                   "resources": ["https://orders.local"], "scopes": ["orders:read"]})
        })
        .collect()
}

fn issuers() -> Value {
    json!([{"issuer": ISSUER, "jwks": fixture().jwks()}])
}

/// A full bundle of keys `range` at `version`, sent whole.
fn full(version: u64, range: std::ops::Range<usize>) -> String {
    json!({"version": version, "issuers": issuers(),
           "api_keys": {"put": entries(range), "delete": []}})
    .to_string()
}

/// The full bundle of keys `range` at `version` in pages, cut as the sidecar cuts it: (from, body) each.
fn pages(version: u64, range: std::ops::Range<usize>) -> Vec<(usize, String)> {
    let keys = entries(range);
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let end = page_end(&keys, from, |key| key).unwrap_or(keys.len());
        let mut page = json!({"version": version, "issuers": [],
            "api_keys": {"put": &keys[from..end]},
            "page": {"from": from, "keys": keys.len()}});
        if from == 0 {
            page["issuers"] = issuers();
        }
        if end < keys.len() {
            page["page"]["next"] = json!(end);
        }
        out.push((from, page.to_string()));
        if end >= keys.len() {
            return out;
        }
        from = end;
    }
}

/// Answers the next calls with `pages`, each call asking for the page due. Returns the largest page answered.
fn answer_pages(vm: &mut Vm, version: u64, pages: &[(usize, String)]) -> Result<usize, HostError> {
    let mut largest = 0;
    for (from, body) in pages {
        let call = vm.next_http_call(SIDECAR)?;
        let expected = if *from == 0 {
            call.path().ends_with("page=0")
        } else {
            call.path() == format!("/v1/bundle?page={from}&version={version}")
        };
        if !expected {
            return Err(HostError::Expectation(format!(
                "asked for {} where page {from} was due",
                call.path()
            )));
        }
        largest = largest.max(body.len());
        vm.respond_to_http_call(call.token, HttpResponse::new(200).body(body.clone()))?;
    }
    Ok(largest)
}

fn key_status(vm: &mut Vm, i: usize) -> Result<u16, HostError> {
    let header = format!("apikey {}", key(i));
    Ok(request(vm, "/reports/1", &[("authorization", &header)])?.status())
}

/// A VM's linear memory after it applied a full bundle of `count` keys sent whole, the bundle's size, and the VM.
fn after_whole(count: usize) -> Result<(usize, usize, Vm), HostError> {
    let body = full(1, 0..count);
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(body.clone()))?;
    Ok((body.len(), vm.linear_memory_bytes(), vm))
}

/// A VM's linear memory after it applied `count` keys in pages, the largest page, and the VM.
fn after_pages(count: usize) -> Result<(usize, usize, Vm), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    let period = vm.tick_period().unwrap_or(crate::STARTUP_TICK);
    vm.advance_time(period)?;
    let largest = answer_pages(&mut vm, 1, &pages(1, 0..count))?;
    Ok((largest, vm.linear_memory_bytes(), vm))
}

#[test]
fn a_large_full_bundle_does_not_grow_the_fetching_vm_with_its_size() -> Result<(), HostError> {
    let (small_body, small, small_vm) = after_whole(100)?;
    let (large_body, large, mut large_vm) = after_whole(60_000)?;
    eprintln!(
        "linear memory after a full bundle sent whole: {small} bytes for {small_body} bytes of bundle, {large} \
         bytes for {large_body} bytes"
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

#[test]
fn a_paged_resync_bounds_both_the_host_buffer_and_the_fetching_vm() -> Result<(), HostError> {
    let (small_page, small, small_vm) = after_pages(100)?;
    let (large_page, large, mut large_vm) = after_pages(60_000)?;
    eprintln!(
        "linear memory after a paged resync: {small} bytes for 100 keys (largest page {small_page} bytes), \
         {large} bytes for 60000 keys (largest page {large_page} bytes)"
    );
    assert!(
        large_page <= PAGE_BYTES + 4096,
        "a page of {large_page} bytes"
    );
    assert!(
        large.saturating_sub(small) < 1 << 20,
        "{} bytes more for 600 times the keys",
        large.saturating_sub(small)
    );
    for i in [0, 29_999, 59_999] {
        assert_eq!(key_status(&mut large_vm, i)?, 200, "key {i}");
    }
    assert_eq!(key_status(&mut large_vm, 60_000)?, 401);
    crate::finish(small_vm)?;
    crate::finish(large_vm)
}

#[test]
fn a_half_done_resync_is_invisible_to_every_worker_and_a_failed_one_exposes_nothing(
) -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut fetcher = vm(SCENARIO_CONFIG, &shared)?;
    let mut worker = vm(SCENARIO_CONFIG, &shared)?;
    // v1 holds keys 0..100, sent whole.
    tick_and_answer(&mut fetcher, HttpResponse::new(200).body(full(1, 0..100)))?;
    let v1_only = |worker: &mut Vm| -> Result<(), HostError> {
        assert_eq!(key_status(worker, 10)?, 200, "v1's key");
        assert_eq!(key_status(worker, 2_000)?, 401, "not in force yet");
        Ok(())
    };
    v1_only(&mut worker)?;
    // The sidecar answers the next poll with the first page of v2: keys 50..4000, several pages.
    let v2 = pages(2, 50..4_000);
    assert!(v2.len() >= 3, "{} pages", v2.len());
    answer_pages(&mut fetcher, 2, &v2[..2])?;
    v1_only(&mut worker)?;
    // The sidecar has let v2 go: the resync ends, nothing was switched.
    let call = fetcher.next_http_call(SIDECAR)?;
    assert_eq!(
        call.path(),
        format!("/v1/bundle?page={}&version=2", v2[2].0)
    );
    fetcher.respond_to_http_call(
        call.token,
        HttpResponse::new(410).body("{\"error\":\"version_gone\"}"),
    )?;
    v1_only(&mut worker)?;
    assert_eq!(worker.gauge("keymesh.authn.bundle_version"), Some(1));
    // The next attempt starts from the first page, at v3, and switches once its last page is in.
    fetcher.advance_time(std::time::Duration::from_millis(1000))?;
    let v3 = pages(3, 50..4_000);
    answer_pages(&mut fetcher, 3, &v3[..v3.len() - 1])?;
    v1_only(&mut worker)?;
    answer_pages(&mut fetcher, 3, &v3[v3.len() - 1..])?;
    assert_eq!(key_status(&mut worker, 10)?, 401, "deleted in v3");
    assert_eq!(key_status(&mut worker, 2_000)?, 200);
    assert_eq!(key_status(&mut worker, 3_999)?, 200);
    crate::finish(worker)?;
    crate::finish(fetcher)
}
