//! Token exchange throughput (RFC 8693): exchanged tokens per second and latency at the real release sidecar, with
//! real Redis, measured with wrk.
//!
//! Starts Redis and the sidecar (no Envoy), registers a caller (`web`, client credentials for orders) and a
//! workload (`orders`, allowed to exchange for payments), gets one subject token for orders, checks that one
//! exchange answers a token for payments with `act.sub = orders`, then runs wrk exchanging that same subject token
//! for each connection count given. Each exchange verifies the subject token, checks its revocation in Redis,
//! signs, and records the new token in the subject's revocation family (one Lua script). Every response must be
//! 200: wrk's non-2xx count is reported and fails the run.
//!
//!   cargo run --release -p keymesh-e2e --example token_exchange -- [SECONDS] [CONNECTIONS...]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{measure_token_requests, Stack, TokenLoad};
use serde_json::Value;
use std::process::Command;

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut connections: Vec<u32> = args.filter_map(|a| a.parse().ok()).collect();
    if connections.is_empty() {
        connections = vec![16, 64];
    }
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is not installed (scripts/bench.sh --token-endpoint installs it)"
    );

    let mut stack = Stack::new();
    stack.start_redis();
    stack.start_sidecar();
    let secret_of = |out: std::process::Output| -> String {
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        created["client_secret"].as_str().unwrap().to_owned()
    };
    let web = secret_of(stack.keymesh(&[
        "client",
        "create",
        "--id",
        "web",
        "--resource",
        "https://orders.local",
        "--scope",
        "orders:read",
        "--json",
    ]));
    let secret = secret_of(stack.keymesh(&[
        "client",
        "create",
        "--id",
        "orders",
        "--resource",
        "https://orders.local",
        "--scope",
        "orders:read",
        "--exchange-resource",
        "https://payments.local",
        "--json",
    ]));
    let subject = stack.token_response(
        "web",
        &web,
        "grant_type=client_credentials&resource=https%3A%2F%2Forders.local&scope=orders%3Aread",
    );
    assert_eq!(subject.status, 200, "{}", subject.body);
    let subject = subject.json()["access_token"].as_str().unwrap().to_owned();
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={subject}\
         &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
         &resource=https%3A%2F%2Fpayments.local&scope=orders%3Aread"
    );

    // One exchange by hand: a token for payments, about web, with orders as the actor.
    let one = stack.token_response("orders", &secret, &form);
    assert_eq!(one.status, 200, "{}", one.body);
    let token = one.json()["access_token"].as_str().unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    use base64ct::{Base64UrlUnpadded, Encoding};
    let claims: Value =
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap();
    assert_eq!(claims["act"]["sub"], "orders", "{claims}");
    assert_eq!(claims["sub"], "web", "{claims}");

    let load = TokenLoad {
        client_id: "orders",
        secret: &secret,
        form: &form,
        per_sec_label: "exchanges/s",
        what: "some exchanges failed",
    };
    measure_token_requests(&mut stack, &load, secs, &connections);
}
