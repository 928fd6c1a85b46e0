//! How fast a change in Redis reaches every proxy, and what one change costs on the wire (issue 6).
//!
//! Two Envoys (each `--concurrency 2`, two listeners) run against one sidecar and Redis. The example creates
//! `--keys N` API keys (default 100) plus `--background M` more that just sit in the set (default 10 000), waits
//! until both Envoys accept every measured key, then revokes the measured keys one by one with the **CLI**
//! (`keymesh apikey revoke`, a separate process writing to Redis) and polls both Envoys until each answers 401.
//! It also fetches the delta a proxy receives for one revocation and the full bundle, and prints their sizes.
//!
//!   cargo run --release -p keymesh-e2e --example propagation -- [--keys N] [--background M]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{request, sidecar_bin, wait_for, Stack, ADMIN_TOKEN};
use std::process::Command;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (n, background) = (arg("--keys", 100), arg("--background", 10_000));
    let mut stack = Stack::start();
    let second = stack.start_extra_envoy("envoy-b", &[]);
    let p = stack.ports;
    let admin = keymesh_e2e::bearer(ADMIN_TOKEN);
    let json = [
        ("authorization", admin.as_str()),
        ("content-type", "application/json"),
    ];
    let create = |owner: &str| {
        let body = format!(
            r#"{{"owner":"{owner}","label":"propagation","resources":["https://orders.local"],"scopes":["orders:read"]}}"#
        );
        let resp = request("POST", p.sidecar, "/v1/admin/apikeys", &json, Some(&body)).unwrap();
        assert_eq!(resp.status, 201, "{}", resp.body);
        let v = resp.json();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    };
    let started = Instant::now();
    for i in 0..background {
        create(&format!("background{i}"));
    }
    eprintln!(
        "{background} background keys created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let keys: Vec<(String, String)> = (0..n).map(|i| create(&format!("measured{i}"))).collect();
    let envoys = [("envoy-a", p.orders), ("envoy-b", second.orders)];
    for (_, key) in &keys {
        let auth = format!("apikey {key}");
        for (name, port) in envoys {
            wait_for(
                &format!("{name} to accept every key"),
                Duration::from_secs(60),
                || (stack.get(port, "/x", &[("authorization", &auth)]).status == 200).then_some(()),
            );
        }
    }

    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut delta_bytes = Vec::new();
    for (id, key) in &keys {
        let version = bundle_version(&stack);
        let auth = format!("apikey {key}");
        let start = Instant::now();
        let out = Command::new(sidecar_bin())
            .args(["apikey", "revoke", id])
            .envs(stack.sidecar_env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut seen: [Option<Duration>; 2] = [None, None];
        while seen.iter().any(Option::is_none) {
            for (i, (_, port)) in envoys.iter().enumerate() {
                if seen[i].is_none()
                    && stack.get(*port, "/x", &[("authorization", &auth)]).status == 401
                {
                    seen[i] = Some(start.elapsed());
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{id} still accepted after 10 s"
            );
        }
        for (i, s) in seen.into_iter().enumerate() {
            latencies[i].push(s.unwrap());
        }
        let tag = format!("\"{version}\"");
        let delta = request(
            "GET",
            p.sidecar,
            "/v1/bundle",
            &[("if-none-match", &tag)],
            None,
        )
        .unwrap();
        assert_eq!(delta.status, 200);
        delta_bytes.push(delta.body.len());
    }
    let full = request("GET", p.sidecar, "/v1/bundle", &[], None).unwrap();
    for (i, (name, _)) in envoys.iter().enumerate() {
        report(
            &format!("CLI revoke started -> first 401 at {name}"),
            &mut latencies[i],
        );
    }
    delta_bytes.sort_unstable();
    println!(
        "one revocation on the wire: delta body {}..{} bytes (median {}); full bundle with {} keys: {} bytes",
        delta_bytes[0],
        delta_bytes[delta_bytes.len() - 1],
        delta_bytes[delta_bytes.len() / 2],
        background,
        full.body.len()
    );
    drop(stack);
}

fn bundle_version(stack: &Stack) -> u64 {
    let resp = request("GET", stack.ports.sidecar, "/healthz", &[], None).unwrap();
    resp.json()["version"].as_u64().unwrap()
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what}: n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
}
