//! API keys end to end: created with the CLI while everything runs, used at the API they are for, refused at the
//! other, regenerated (old 401, new 200), revoked (401) and expired (401) — on real Envoy, Redis and sidecar.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{wait_for, Stack};
use serde_json::Value;
use std::time::Duration;

fn apikey(key: &str) -> String {
    format!("apikey {key}")
}

fn create(stack: &Stack, owner: &str, resource: &str, scope: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "apikey",
        "create",
        "--owner",
        owner,
        "--label",
        "e2e",
        "--resource",
        resource,
    ];
    args.extend(["--scope", scope, "--json"]);
    args.extend_from_slice(extra);
    let out = stack.keymesh(&args);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until `port` answers `status` for `key` (changes travel sidecar → Envoy asynchronously).
fn eventually(stack: &Stack, port: u16, key: &str, status: u16) {
    let auth = apikey(key);
    wait_for(
        &format!("{status} for the key at :{port}"),
        Duration::from_secs(5),
        || (stack.get(port, "/x", &[("authorization", &auth)]).status == status).then_some(()),
    );
}

#[test]
fn api_key_lifecycle_through_envoy() {
    let stack = Stack::start();
    let p = stack.ports;
    let created = create(&stack, "alice", "https://orders.local", "orders:read", &[]);
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("km_"), "{created}");

    // Used at the API it is for; the upstream sees the owner and the key id, never the key.
    eventually(&stack, p.orders, &key, 200);
    let resp = stack.responds_with(200, p.orders, "/orders/1", &[("x-api-key", &key)]);
    let echo = resp.json();
    assert_eq!(echo["identity"]["x-keymesh-subject"], "alice", "{echo}");
    assert_eq!(
        echo["identity"]["x-keymesh-client-id"],
        id.as_str(),
        "{echo}"
    );
    assert_eq!(
        echo["identity"]["x-keymesh-credential"], "api_key",
        "{echo}"
    );
    assert!(!resp.body.contains(&key), "the key reached the upstream");

    // Refused at the other API: a valid key, but not for payments.
    let other = stack.responds_with(
        403,
        p.payments,
        "/payments/1",
        &[("authorization", &apikey(&key))],
    );
    assert!(other
        .header("www-authenticate")
        .unwrap_or_default()
        .starts_with("apikey realm=\"keymesh\""));

    // Listing never shows the key.
    let list = stack.keymesh(&["apikey", "list", "--owner", "alice", "--json"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains(&id) && !listed.contains(&key), "{listed}");

    // Regenerate: the old secret stops working, the new one works, same id.
    let regenerated: Value = serde_json::from_slice(
        &stack
            .keymesh(&["apikey", "regenerate", &id, "--json"])
            .stdout,
    )
    .unwrap();
    let new_key = regenerated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(regenerated["id"], id.as_str());
    eventually(&stack, p.orders, &key, 401);
    eventually(&stack, p.orders, &new_key, 200);

    // Revoke.
    stack.keymesh(&["apikey", "revoke", &id]);
    eventually(&stack, p.orders, &new_key, 401);
    let revoked = stack.responds_with(
        401,
        p.orders,
        "/orders/1",
        &[("authorization", &apikey(&new_key))],
    );
    assert!(revoked
        .header("www-authenticate")
        .unwrap_or_default()
        .contains("error=\"invalid_key\""));

    // Expiry: a key that expires in 2 s works, then does not.
    let short = create(
        &stack,
        "bob",
        "https://payments.local",
        "payments:read",
        &["--expires-in", "2s"],
    );
    let short_key = short["key"].as_str().unwrap().to_owned();
    eventually(&stack, p.payments, &short_key, 200);
    std::thread::sleep(Duration::from_millis(2100));
    stack.responds_with(
        401,
        p.payments,
        "/payments/1",
        &[("authorization", &apikey(&short_key))],
    );
}
