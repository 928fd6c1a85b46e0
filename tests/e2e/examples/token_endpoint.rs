//! Token endpoint throughput: `client_credentials` tokens per second and latency at the real release sidecar, with
//! real Redis, measured with wrk.
//!
//! Starts Redis and the sidecar (no Envoy), registers one confidential client with a generated secret (stored as
//! SHA-256, as `keymesh client create` does by default), checks that one request returns a token verifying
//! against the sidecar's JWKS, then runs wrk with HTTP Basic client authentication and two `resource` parameters,
//! for each connection count given. Every response must be 200: wrk's non-2xx count is reported and fails the run.
//!
//!   cargo run --release -p keymesh-e2e --example token_endpoint -- [SECONDS] [CONNECTIONS...]
//!
//! (`scripts/bench.sh --token-endpoint` installs wrk and runs this.)
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
    let created = stack.keymesh(&[
        "client",
        "create",
        "--id",
        "bench",
        "--resource",
        "https://orders.local",
        "--resource",
        "https://payments.local",
        "--scope",
        "orders:read",
        "--json",
    ]);
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let form = "grant_type=client_credentials&resource=https%3A%2F%2Forders.local\
                &resource=https%3A%2F%2Fpayments.local&scope=orders%3Aread";

    // One request by hand: the answer is a token for both APIs.
    let one = stack.token_response("bench", &secret, form);
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(one.json()["access_token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));

    let load = TokenLoad {
        client_id: "bench",
        secret: &secret,
        form,
        per_sec_label: "tokens/s",
        what: "some token requests failed",
    };
    measure_token_requests(&mut stack, &load, secs, &connections);
}
