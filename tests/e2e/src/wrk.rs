//! Load on the sidecar's token endpoint with wrk: the loop the token-endpoint and token-exchange benchmarks share.

use std::path::Path;
use std::process::Command;

use crate::{basic, Stack};

/// One wrk run at one connection count.
struct Measured {
    connections: u32,
    per_sec: f64,
    p50: String,
    p99: String,
    non_2xx: u64,
    sidecar_cpu_secs: f64,
}

/// One token request, as wrk sends it over and over.
pub struct TokenLoad<'a> {
    /// The client, authenticated with HTTP Basic.
    pub client_id: &'a str,
    /// Its secret.
    pub secret: &'a str,
    /// The form posted to `/oauth/token`.
    pub form: &'a str,
    /// The heading of the rate column (`tokens/s`).
    pub per_sec_label: &'a str,
    /// The failure message when a request was not answered 2xx.
    pub what: &'a str,
}

/// Posts the load's form to the sidecar's token endpoint, warms up, then runs wrk for `secs` at each connection
/// count and prints a Markdown table. Panics if any request was not answered 2xx.
pub fn measure_token_requests(
    stack: &mut Stack,
    load: &TokenLoad<'_>,
    secs: u32,
    connections: &[u32],
) {
    let TokenLoad {
        client_id,
        secret,
        form,
        per_sec_label,
        what,
    } = *load;
    let script = stack.dir.path().join("token.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{form}\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"{}\"\n",
            basic(client_id, secret)
        ),
    )
    .unwrap();
    let sidecar_pid = stack.process("sidecar").pid();
    let url = format!("http://127.0.0.1:{}/oauth/token", stack.ports.sidecar);

    // Warm up (connection setup, allocator), then measure.
    run_wrk(&script, &url, 2, 16, sidecar_pid);
    let mut results = Vec::new();
    for &c in connections {
        results.push(run_wrk(&script, &url, secs, c, sidecar_pid));
    }
    println!(
        "| connections | {per_sec_label} | p50 | p99 | non-2xx | sidecar CPU s per 1k tokens |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        let per_1k = r.sidecar_cpu_secs / (r.per_sec * f64::from(secs)) * 1000.0;
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.3} |",
            r.connections, r.per_sec, r.p50, r.p99, r.non_2xx, per_1k
        );
    }
    assert!(results.iter().all(|r| r.non_2xx == 0), "{what}");
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

fn run_wrk(script: &Path, url: &str, secs: u32, connections: u32, pid: u32) -> Measured {
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
