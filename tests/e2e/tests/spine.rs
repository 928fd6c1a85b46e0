//! The spine end to end: one token from the sidecar accepted by two APIs' Envoys, key material delivered from
//! Redis through the sidecar, on real Envoy, real Redis and the real sidecar.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{bearer, wait_for, Stack};
use std::time::Duration;

const ORDERS: &str = "https://orders.local";
const PAYMENTS: &str = "https://payments.local";

#[test]
fn one_token_many_apis_on_real_envoy() {
    let mut stack = Stack::start();
    let p = stack.ports;
    stack.create_client(
        "demo",
        "demo-secret",
        &[ORDERS, PAYMENTS],
        &["orders:read", "payments:read"],
    );
    let both = stack.token("demo", "demo-secret", &[ORDERS, PAYMENTS], "");

    // Until the filters hold a bundle they answer 503; wait for the first delivery.
    let auth = bearer(&both);
    wait_for(
        "Envoy to receive its first key bundle",
        Duration::from_secs(15),
        || {
            (stack
                .get(p.orders, "/orders/1", &[("authorization", &auth)])
                .status
                != 503)
                .then_some(())
        },
    );

    // One token, both APIs; the upstream sees who called, never the token, never a spoofed identity.
    for port in [p.orders, p.payments] {
        let resp = stack.responds_with(
            200,
            port,
            "/x",
            &[("authorization", &auth), ("x-keymesh-subject", "admin")],
        );
        let echo = resp.json();
        assert_eq!(echo["identity"]["x-keymesh-subject"], "demo", "{echo}");
        assert_eq!(echo["identity"]["x-keymesh-client-id"], "demo", "{echo}");
        assert_eq!(
            echo["identity"]["x-keymesh-scope"], "orders:read payments:read",
            "{echo}"
        );
        assert_eq!(echo["identity"]["x-keymesh-credential"], "jwt", "{echo}");
        assert_eq!(echo["authorization_forwarded"], false, "{echo}");
    }

    // A token for orders only is refused by payments, with an RFC 6750 challenge.
    let orders_only = bearer(&stack.token("demo", "demo-secret", &[ORDERS], ""));
    stack.responds_with(
        200,
        p.orders,
        "/orders/1",
        &[("authorization", &orders_only)],
    );
    let refused = stack.responds_with(
        401,
        p.payments,
        "/payments/1",
        &[("authorization", &orders_only)],
    );
    let challenge = refused.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"keymesh\""),
        "{challenge}"
    );
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(refused.json()["error"], "invalid_token");

    // No credential: a bare challenge for each scheme the route accepts (tokens and API keys).
    let none = stack.responds_with(401, p.orders, "/orders/1", &[]);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"keymesh\", apikey realm=\"keymesh\"")
    );

    // Tampered signature.
    let mut tampered = both.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    stack.responds_with(
        401,
        p.orders,
        "/orders/1",
        &[("authorization", &bearer(&tampered))],
    );

    // Missing scope: a payments-only scope at orders is 403 naming the scope orders needs.
    let payments_scope =
        bearer(&stack.token("demo", "demo-secret", &[ORDERS, PAYMENTS], "payments:read"));
    let forbidden = stack.responds_with(
        403,
        p.orders,
        "/orders/1",
        &[("authorization", &payments_scope)],
    );
    let challenge = forbidden.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"orders:read\""),
        "{challenge}"
    );

    // A client created by the CLI after the stack is up can get a token that works (Redis is mirrored).
    stack.create_client("late", "late-secret", &[PAYMENTS], &["payments:read"]);
    let late = bearer(&stack.token("late", "late-secret", &[PAYMENTS], ""));
    let resp = stack.responds_with(200, p.payments, "/payments/9", &[("authorization", &late)]);
    assert_eq!(resp.json()["identity"]["x-keymesh-subject"], "late");
    stack.responds_with(401, p.orders, "/orders/9", &[("authorization", &late)]);

    // Every process goes away on drop.
    let pids = stack.pids();
    assert!(
        stack.process("envoy").is_running(),
        "Envoy died during the test"
    );
    drop(stack);
    for pid in pids {
        let alive = std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(
            !alive,
            "process {pid} still running after the stack was dropped"
        );
    }
}

#[test]
fn filters_fail_closed_until_the_first_bundle_then_recover() {
    let mut stack = Stack::new();
    stack.start_redis();
    stack.start_mesh();
    let p = stack.ports;
    // No sidecar yet: Envoy has no key material, so even a well-formed token gets 503 with a clear body.
    for _ in 0..3 {
        let resp = stack.responds_with(
            503,
            p.orders,
            "/orders/1",
            &[("authorization", "Bearer a.b.c")],
        );
        assert!(resp.body.contains("key material"), "{}", resp.body);
        std::thread::sleep(Duration::from_millis(300));
    }
    // The sidecar comes up: the filters pick up the bundle on their next tick, without an Envoy restart.
    stack.start_sidecar();
    stack.create_client("demo", "demo-secret", &[ORDERS], &["orders:read"]);
    let auth = bearer(&stack.token("demo", "demo-secret", &[ORDERS], ""));
    wait_for("the filters to recover", Duration::from_secs(10), || {
        (stack
            .get(p.orders, "/orders/1", &[("authorization", &auth)])
            .status
            == 200)
            .then_some(())
    });
}
