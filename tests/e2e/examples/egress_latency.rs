//! The egress filter's added latency per request with a cached token, against no egress filter, in one run.
//!
//! Starts the demo mesh (`envoy/demo.yaml`: Redis, the release sidecar, the echo upstreams, Envoy) plus one extra
//! listener, `orders_egress_baseline`: the same route to payments as orders' egress listener, without the egress
//! filter. The same client request, `GET /payments/42` with `Host: payments.local`, then goes
//!   - with the filter: the caller's token, which the filter replaces with the exchanged payments token from its
//!     cache (filled by one request before measuring);
//!   - without it: the exchanged payments token itself, as an application attaching the right token would send it.
//!
//! Both paths are then the same Envoy hops (egress listener → payments listener with the authn filter → upstream),
//! so the difference is the egress filter's work per request: a shared-data lookup and a header rewrite. wrk runs
//! each variant for SECONDS at each connection count, alternating which goes first, ROUNDS times; the table gives
//! the median of the rounds. Every response must be 2xx.
//!
//!   cargo run --release -p keymesh-e2e --example egress_latency -- [SECONDS] [ROUNDS] [CONNECTIONS...]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{bearer, form_urlencode, free_port, request, wait_for, Stack};
use std::process::Command;
use std::time::Duration;

const ORDERS: &str = "https://orders.local";
const PAYMENTS: &str = "https://payments.local";

/// One wrk run.
#[derive(Debug, Clone, Copy)]
struct Run {
    per_sec: f64,
    avg_us: f64,
    p50_us: f64,
    p99_us: f64,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut connections: Vec<u32> = args.filter_map(|a| a.parse().ok()).collect();
    if connections.is_empty() {
        connections = vec![1, 16];
    }
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is not installed (scripts/bench.sh installs it)"
    );

    let baseline = free_port();
    let mut stack = Stack::new();
    stack.start_redis();
    stack.start_sidecar();
    stack.create_client(
        "demo",
        "demo-secret",
        &[ORDERS, PAYMENTS],
        &["orders:read", "payments:read"],
    );
    stack.keymesh(&[
        "client",
        "create",
        "--id",
        "orders",
        "--secret",
        "orders-secret",
        "--resource",
        ORDERS,
        "--scope",
        "payments:read",
        "--exchange-resource",
        PAYMENTS,
    ]);
    let listener = baseline_listener(baseline);
    stack.start_mesh_with(&[("\n  clusters:\n", &format!("\n{listener}  clusters:\n"))]);
    let p = stack.ports;

    let caller = stack.token(
        "demo",
        "demo-secret",
        &[ORDERS],
        "orders:read payments:read",
    );
    let form = format!(
        "grant_type={}&subject_token={caller}&subject_token_type={}&resource={}&scope=payments%3Aread",
        form_urlencode("urn:ietf:params:oauth:grant-type:token-exchange"),
        form_urlencode("urn:ietf:params:oauth:token-type:access_token"),
        form_urlencode(PAYMENTS),
    );
    let exchanged = stack.token_response("orders", "orders-secret", &form);
    assert_eq!(exchanged.status, 200, "{}", exchanged.body);
    let exchanged = exchanged.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Both paths answer 200 before measuring (the first request through the filter fills its cache).
    let variants = [
        ("egress filter", p.orders_egress, bearer(&caller)),
        ("no egress filter", baseline, bearer(&exchanged)),
    ];
    for (name, port, auth) in &variants {
        wait_for(name, Duration::from_secs(20), || {
            let resp = request(
                "GET",
                *port,
                "/payments/42",
                &[("host", "payments.local"), ("authorization", auth)],
                None,
            )
            .ok()?;
            (resp.status == 200).then_some(())
        });
    }
    for (_, port, auth) in &variants {
        wrk(*port, auth, 2, 4);
    }

    println!("egress filter vs none: {secs} s per cell, {rounds} rounds, median of rounds");
    println!("| connections | variant | requests/s | avg | p50 | p99 |");
    println!("|---:|---|---:|---:|---:|---:|");
    let mut added = Vec::new();
    for &c in &connections {
        let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let (_, port, auth) = &variants[i];
                runs[i].push(wrk(*port, auth, secs, c));
            }
        }
        let medians: Vec<Run> = runs.iter().map(|r| median(r)).collect();
        for (i, m) in medians.iter().enumerate() {
            println!(
                "| {c} | {} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs |",
                variants[i].0, m.per_sec, m.avg_us, m.p50_us, m.p99_us
            );
        }
        added.push((
            c,
            medians[0].p50_us - medians[1].p50_us,
            medians[0].p99_us - medians[1].p99_us,
        ));
    }
    for (c, p50, p99) in added {
        println!(
            "added by the egress filter at {c} connection(s): p50 {p50:+.0} µs, p99 {p99:+.0} µs"
        );
    }
}

/// orders' egress listener without the egress filter.
fn baseline_listener(port: u16) -> String {
    format!(
        r#"  - name: orders_egress_baseline
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: orders_egress_baseline
          route_config:
            virtual_hosts:
            - name: payments
              domains: ["payments.local", "payments.local:*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: payments_mesh }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

/// The run whose p50 is the median (its other figures come with it).
fn median(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.p50_us.total_cmp(&b.p50_us));
    sorted[sorted.len() / 2]
}

fn wrk(port: u16, authorization: &str, secs: u32, connections: u32) -> Run {
    let out = Command::new("wrk")
        .args([
            "-t",
            &connections.min(2).to_string(),
            "-c",
            &connections.to_string(),
        ])
        .args(["-d", &format!("{secs}s"), "--latency"])
        .args([
            "-H",
            "Host: payments.local",
            "-H",
            &format!("Authorization: {authorization}"),
        ])
        .arg(format!("http://127.0.0.1:{port}/payments/42"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(!text.contains("Non-2xx"), "some requests failed:\n{text}");
    let field = |prefix: &str| -> String {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            .unwrap_or_else(|| panic!("no `{prefix}` in wrk's output:\n{text}"))
    };
    Run {
        per_sec: field("Requests/sec:").parse().unwrap(),
        avg_us: micros(&field("Latency")),
        p50_us: micros(&field("50%")),
        p99_us: micros(&field("99%")),
    }
}

/// wrk's `1.23ms` / `456.00us` / `1.50s` in microseconds.
fn micros(value: &str) -> f64 {
    let (number, factor) = if let Some(n) = value.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        panic!("unknown latency unit in `{value}`")
    };
    number.parse::<f64>().unwrap() * factor
}
