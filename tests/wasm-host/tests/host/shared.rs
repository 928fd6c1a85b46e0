//! Several worker VMs sharing one store: shared data with CAS, queues, metrics.

use crate::fixture_vm;
use keymesh_wasm_host::{HostError, HttpResponse, LogLevel, SharedStore, Vm};

fn worker(shared: &SharedStore) -> Result<Vm, HostError> {
    let mut vm = fixture_vm()?.shared(shared.clone()).build()?;
    vm.start()?;
    Ok(vm)
}

/// Runs a plain request on `vm` with `extra` headers and returns the request headers it ended with.
fn request(vm: &mut Vm, extra: &[(&str, &str)]) -> Result<keymesh_wasm_host::HeaderMap, HostError> {
    let mut headers = vec![(":path", "/")];
    headers.extend_from_slice(extra);
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&headers, true)?;
    let seen = stream.request_headers().clone();
    stream.finish()?;
    Ok(seen)
}

#[test]
fn workers_see_each_others_shared_data_with_cas() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut first = worker(&shared)?;
    let mut second = worker(&shared)?;

    // The first worker fetches the keys; the second one reads them.
    first
        .call_on_tick()
        .expect_http_call("keys")
        .returning(HttpResponse::new(200).body("k1"))
        .execute()?;
    let seen = request(&mut second, &[])?;
    assert_eq!(seen.get("x-fixture-keys"), Some("k1"));
    let cas = seen
        .get("x-fixture-keys-cas")
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        Some(cas.parse::<u32>().ok()),
        Some(shared.get_with_cas("fixture.keys").map(|(_, c)| c))
    );

    // Both read the same CAS; the first write wins, the stale one is refused.
    let won = request(&mut first, &[("x-fixture-cas-write", &cas)])?;
    assert_eq!(won.get("x-fixture-cas-result"), Some("ok"));
    let lost = request(&mut second, &[("x-fixture-cas-write", &cas)])?;
    assert_eq!(lost.get("x-fixture-cas-result"), Some("mismatch"));
    assert_eq!(
        shared.get("fixture.keys").as_deref(),
        Some(&b"written-by-request"[..])
    );

    // A write by "another worker" outside any VM is visible too.
    shared.set("fixture.keys", "k2");
    assert_eq!(request(&mut first, &[])?.get("x-fixture-keys"), Some("k2"));
    assert_eq!(
        first.counter("fixture.requests_total"),
        Some(4),
        "metrics are process-wide"
    );
    first.finish()?;
    second.finish()
}

#[test]
fn shared_queue_notifies_the_registering_vm() -> Result<(), HostError> {
    let shared = SharedStore::new();
    let mut owner = worker(&shared)?;
    let mut other = worker(&shared)?;
    // Both registered "fixture.queue" under vm_id ""; the last registration (other) owns it.
    request(&mut owner, &[("x-fixture-enqueue", "from-owner")])?;
    assert!(
        other.find_log(LogLevel::Info, "dequeued").is_none(),
        "not delivered before the owner runs"
    );
    other.deliver_queue_notifications()?;
    assert!(
        other
            .find_log(LogLevel::Info, "dequeued from-owner")
            .is_some(),
        "{:?}",
        other.logs()
    );
    assert_eq!(shared.queue_items("", "fixture.queue"), Some(vec![]));
    owner.finish()?;
    other.finish()
}
