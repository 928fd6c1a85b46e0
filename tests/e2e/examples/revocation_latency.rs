//! How long a revocation takes to reach Envoy, on the real stack (Redis, sidecar, Envoy with `--concurrency 2`).
//!
//! Creates N API keys through the admin API, waits until Envoy accepts all of them, then for each key in turn
//! revokes it (odd keys) or regenerates it (even keys) through the admin API and polls the orders listener with
//! the old key until it gets 401. Reports p50/p99/max from the moment the admin call is sent, and from the moment
//! the sidecar acknowledged the write.
//!
//!   cargo run --release -p keymesh-e2e --example revocation_latency -- [N]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{request, wait_for, Stack, ADMIN_TOKEN};
use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let stack = Stack::start();
    let p = stack.ports;
    let admin = keymesh_e2e::bearer(ADMIN_TOKEN);
    let json = [
        ("authorization", admin.as_str()),
        ("content-type", "application/json"),
    ];

    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let body = format!(
            r#"{{"owner":"bench{i}","label":"latency","resources":["https://orders.local"],"scopes":["orders:read"]}}"#
        );
        let resp = request("POST", p.sidecar, "/v1/admin/apikeys", &json, Some(&body)).unwrap();
        assert_eq!(resp.status, 201, "{}", resp.body);
        let v = resp.json();
        keys.push((
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        ));
    }
    for (_, key) in &keys {
        let auth = format!("apikey {key}");
        wait_for("every key to be accepted", Duration::from_secs(20), || {
            (stack
                .get(p.orders, "/x", &[("authorization", &auth)])
                .status
                == 200)
                .then_some(())
        });
    }

    let mut from_call = Vec::with_capacity(n);
    let mut from_ack = Vec::with_capacity(n);
    for (i, (id, key)) in keys.iter().enumerate() {
        let auth = format!("apikey {key}");
        let start = Instant::now();
        let resp = if i % 2 == 0 {
            request(
                "POST",
                p.sidecar,
                &format!("/v1/admin/apikeys/{id}/regenerate"),
                &json,
                Some(""),
            )
            .unwrap()
        } else {
            request(
                "DELETE",
                p.sidecar,
                &format!("/v1/admin/apikeys/{id}"),
                &json,
                None,
            )
            .unwrap()
        };
        let acked = Instant::now();
        assert!(
            resp.status == 200 || resp.status == 204,
            "{} {}",
            resp.status,
            resp.body
        );
        let mut polls = 0u32;
        loop {
            polls += 1;
            if stack
                .get(p.orders, "/x", &[("authorization", &auth)])
                .status
                == 401
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "key {id} still accepted after 10 s"
            );
        }
        let done = Instant::now();
        if std::env::var_os("KEYMESH_BENCH_TRACE").is_some() {
            eprintln!("{id}: {polls} polls, {:?} after ack", done - acked);
        }
        from_call.push(done - start);
        from_ack.push(done - acked);
    }
    report("admin call sent -> first 401 at Envoy", &mut from_call);
    report("write acknowledged -> first 401 at Envoy", &mut from_ack);
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
