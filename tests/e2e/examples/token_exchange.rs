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

    let script = stack.dir.path().join("token.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{form}\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"{}\"\n",
            basic("orders", &secret)
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
    println!("| connections | exchanges/s | p50 | p99 | non-2xx | sidecar CPU s per 1k tokens |");
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
        "some exchanges failed"
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
