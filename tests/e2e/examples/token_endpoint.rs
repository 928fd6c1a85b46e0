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

use keymesh_e2e::{basic, Stack};
use serde_json::Value;
use std::process::Command;

struct Measured {
    connections: u32,
    per_sec: f64,
    p50: String,
    p99: String,
    non_2xx: u64,
    sidecar_cpu_secs: f64,
}

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
    let p = stack.ports;
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

    let script = stack.dir.path().join("token.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{form}\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"{}\"\n",
            basic("bench", &secret)
        ),
    )
    .unwrap();
    let sidecar_pid = stack.process("sidecar").pid();
    let url = format!("http://127.0.0.1:{}/oauth/token", p.sidecar);

    // Warm up (connection setup, allocator), then measure.
    run_wrk(&script, &url, 2, 16, sidecar_pid);
    let mut results = Vec::new();
    for &c in &connections {
        results.push(run_wrk(&script, &url, secs, c, sidecar_pid));
    }
    println!("| connections | tokens/s | p50 | p99 | non-2xx | sidecar CPU s per 1k tokens |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        let per_1k = r.sidecar_cpu_secs / (r.per_sec * f64::from(secs)) * 1000.0;
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.3} |",
            r.connections, r.per_sec, r.p50, r.p99, r.non_2xx, per_1k
        );
    }
    assert!(
        results.iter().all(|r| r.non_2xx == 0),
        "some token requests failed"
    );
}

fn cpu_secs(pid: u32) -> f64 {
    // utime + stime from /proc/<pid>/stat, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn run_wrk(script: &std::path::Path, url: &str, secs: u32, connections: u32, pid: u32) -> Measured {
    let cpu_before = cpu_secs(pid);
    let out = Command::new("wrk")
        .args([
            "-t",
            "2",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .unwrap();
    let sidecar_cpu_secs = cpu_secs(pid) - cpu_before;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
    };
    Measured {
        connections,
        per_sec: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
        non_2xx: field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        sidecar_cpu_secs,
    }
}
