//! The API key lifecycle and rate tiers end to end, on real Envoy, Redis and sidecar: a disabled key is refused
//! and works again once enabled; a key regenerated with a grace period works with both secrets until the grace
//! ends, then only with the new one; last use shows in `apikey list`; and Envoy's own local rate limit, keyed on
//! the tier keymesh forwards, limits a "free" key while a "pro" key passes, a limited request never reaching the
//! upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{request, wait_for, Stack};
use serde_json::Value;
use std::time::{Duration, Instant};

const ORDERS: &str = "https://orders.local";

fn create(stack: &Stack, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "apikey",
        "create",
        "--owner",
        "alice",
        "--label",
        "e2e",
        "--resource",
        ORDERS,
        "--scope",
        "orders:read",
        "--json",
    ];
    args.extend_from_slice(extra);
    let created: Value = serde_json::from_slice(&stack.keymesh(&args).stdout).unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

fn status(stack: &Stack, key: &str) -> u16 {
    stack
        .get(stack.ports.orders, "/orders/1", &[("x-api-key", key)])
        .status
}

/// Waits until the orders API answers `expected` for `key` (changes travel sidecar → Envoy asynchronously).
fn eventually(stack: &Stack, key: &str, expected: u16) {
    wait_for(
        &format!("{expected} for key {}", &key[..7]),
        Duration::from_secs(5),
        || (status(stack, key) == expected).then_some(()),
    );
}

fn listed(stack: &Stack, id: &str) -> Value {
    let out = stack.keymesh(&["apikey", "list", "--owner", "alice", "--json"]);
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .unwrap()
}

#[test]
fn disable_enable_and_regenerate_with_grace_through_envoy() {
    let mut stack = Stack::new();
    stack.start_redis();
    stack.start_sidecar();
    // Report use every second, so the test need not wait the default 10 s.
    stack.start_mesh_with(&[(
        r#""refresh_interval_ms": 1000, "timeout_ms": 2000 }"#,
        r#""refresh_interval_ms": 1000, "timeout_ms": 2000, "usage_report_ms": 1000 }"#,
    )]);
    let (id, key) = create(&stack, &[]);
    eventually(&stack, &key, 200);

    // Disable → 401 at the proxy; the listing says so; enable → 200 again.
    stack.keymesh(&["apikey", "disable", &id]);
    eventually(&stack, &key, 401);
    assert_eq!(listed(&stack, &id)["state"], "disabled");
    stack.keymesh(&["apikey", "enable", &id]);
    eventually(&stack, &key, 200);
    assert_eq!(listed(&stack, &id)["state"], "active");

    // Last used: the proxies report use, and the listing shows it (to the minute).
    let used = wait_for("last use listed", Duration::from_secs(10), || {
        listed(&stack, &id)["last_used_at"].as_u64()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        used % 60 == 0 && used <= now && now - used < 180,
        "{used} vs {now}"
    );
    let table = String::from_utf8(
        stack
            .keymesh(&["apikey", "list", "--owner", "alice"])
            .stdout,
    )
    .unwrap();
    assert!(table.contains("last_used=20"), "{table}");

    // Regenerate with a 2 s grace period: both secrets work, then the old one is refused with no further write.
    let out = stack.keymesh(&["apikey", "regenerate", &id, "--grace", "2s", "--json"]);
    let regenerated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let started = Instant::now();
    let new_key = regenerated["key"].as_str().unwrap().to_owned();
    eventually(&stack, &new_key, 200);
    if started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            status(&stack, &key),
            200,
            "the old secret within its grace period"
        );
    }
    let version_before = redis_version(&stack);
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(started.elapsed()));
    eventually(&stack, &key, 401);
    assert_eq!(status(&stack, &new_key), 200);
    assert_eq!(
        redis_version(&stack),
        version_before,
        "nothing was written to end the grace period"
    );
}

fn redis_version(stack: &Stack) -> String {
    String::from_utf8(
        std::process::Command::new("redis-cli")
            .args([
                "-p",
                &stack.ports.redis.to_string(),
                "GET",
                "keymesh:version",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

/// Requests the upstream answered so far, for requests carrying `tier`.
fn answered(stack: &Stack, tier: &str) -> u64 {
    let resp = request(
        "GET",
        stack.ports.orders_upstream,
        "/__echo/requests",
        &[],
        None,
    )
    .unwrap();
    let counts: Value = serde_json::from_str(&resp.body).unwrap();
    counts[tier].as_u64().unwrap_or(0)
}

#[test]
fn envoy_rate_limits_a_free_key_but_not_a_pro_key() {
    let stack = Stack::start();
    let (_, free) = create(&stack, &["--tier", "free"]);
    let (_, pro) = create(&stack, &["--tier", "pro"]);
    // The pro key was created last: once it works, both are at the proxy (changes arrive in order). Waiting on
    // the pro key spends none of the free key's tokens.
    eventually(&stack, &pro, 200);
    let echo = stack
        .get(stack.ports.orders, "/orders/1", &[("x-api-key", &pro)])
        .json();
    assert_eq!(echo["identity"]["x-keymesh-tier"], "pro", "{echo}");

    let free_before = answered(&stack, "free");
    let statuses: Vec<u16> = (0..10).map(|_| status(&stack, &free)).collect();
    let passed = statuses.iter().filter(|s| **s == 200).count();
    let limited = stack.get(stack.ports.orders, "/orders/1", &[("x-api-key", &free)]);
    assert_eq!(
        passed, 3,
        "the free tier allows 3 requests a minute: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("x-keymesh-rate-limited"), Some("tier"));
    assert_eq!(
        answered(&stack, "free") - free_before,
        3,
        "a limited request reached the upstream"
    );
    // A client cannot pick its own tier: the header it sends is replaced by its key's.
    let spoofed = stack.get(
        stack.ports.orders,
        "/orders/1",
        &[("x-api-key", &free), ("x-keymesh-tier", "pro")],
    );
    assert_eq!(spoofed.status, 429);

    let pro_before = answered(&stack, "pro");
    for _ in 0..30 {
        assert_eq!(status(&stack, &pro), 200);
    }
    assert_eq!(answered(&stack, "pro") - pro_before, 30);
}
