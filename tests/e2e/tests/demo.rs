//! `scripts/demo.sh` works exactly as printed.
//!
//! The test starts the demo as a user would (but on shifted ports, in a temporary state directory, without the
//! setup step the suite has already run), takes the command lines from the demo's own output, runs them one after
//! the other in one clean shell (no keymesh variables inherited: the printed `export` must be enough), and checks
//! each line's documented result, read from its trailing comment: the HTTP status, which API saw which client, and
//! what a command prints. A printed command line with no check fails the test, so a new line needs one. The printed
//! load command must get no 5xx, from wrk's view and from Envoy's counters. Stopping the demo must free every port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{envoy_bin, request, wait_for, workspace};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The demo's fixed ports (shifted by the offset the test picks).
const DEMO_PORTS: [u16; 9] = [6380, 8080, 9001, 9002, 9901, 10001, 10002, 10003, 10004];

/// The demo running as a child; dropping it stops the demo the way Ctrl-C does, and dumps its logs on failure.
struct RunningDemo {
    child: Child,
    state: tempfile::TempDir,
    offset: u16,
    /// Everything the demo printed up to the end of its instructions.
    output: String,
}

impl RunningDemo {
    /// Starts `scripts/demo.sh` and waits for it to print its instructions.
    fn start(offset: u16) -> Self {
        let state = tempfile::tempdir().unwrap();
        let mut child = Command::new("bash")
            .arg(workspace().join("scripts/demo.sh"))
            .current_dir(workspace())
            .env("KEYMESH_DEMO_SETUP", "0")
            .env("KEYMESH_DEMO_PROFILE", "debug")
            .env("KEYMESH_DEMO_PORT_OFFSET", offset.to_string())
            .env("KEYMESH_DEMO_STATE", state.path())
            .env("KEYMESH_ENVOY", envoy_bin())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(state.path().join("demo.stderr")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = Self {
            child,
            state,
            offset,
            output: String::new(),
        };
        // The demo builds the sidecar and the echo upstream first (debug: the suite has built most of it already).
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains("Ctrl-C stops everything");
                    demo.output.push_str(&line);
                    demo.output.push('\n');
                    if done {
                        break;
                    }
                }
                Err(_) => panic!(
                    "the demo did not print its instructions; it printed:\n{}",
                    demo.output
                ),
            }
        }
        demo
    }

    fn port(&self, demo_port: u16) -> u16 {
        demo_port + self.offset
    }

    /// Stops the demo as Ctrl-C would (SIGTERM: the same trap stops every component) and waits for it to exit.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Last resort: the script's own process group (Envoy runs in its own session and is the trap's job).
        let _ = Command::new("kill")
            .args(["-KILL", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for RunningDemo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- the demo printed:\n{}", self.output);
            for entry in std::fs::read_dir(self.state.path()).into_iter().flatten() {
                let path = entry.unwrap().path();
                if path.is_file() && path.extension().is_some_and(|e| e != "toml") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let tail: String = text.lines().rev().take(60).collect::<Vec<_>>().join("\n");
                    eprintln!("---- {} (last lines, newest first)\n{tail}", path.display());
                }
            }
        }
        self.stop();
    }
}

/// A command line the demo printed, with the result its trailing comment documents.
#[derive(Debug)]
struct PrintedLine {
    command: String,
    comment: String,
}

/// The command lines of the demo's instructions: indented, not comments; a line ending in `\` continues.
fn printed_lines(output: &str) -> Vec<PrintedLine> {
    let start = output
        .find("keymesh demo is up")
        .expect("no instructions in the demo's output");
    let mut lines = Vec::new();
    let mut pending = String::new();
    for raw in output[start..].lines().skip(1) {
        if !raw.starts_with("  ") && pending.is_empty() {
            continue;
        }
        let trimmed = raw.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let (code, comment) = match raw.find("  # ") {
            Some(at) => (&raw[..at], raw[at + 4..].trim()),
            None => (raw, ""),
        };
        pending.push_str(code.trim_end());
        if let Some(stripped) = pending.strip_suffix('\\') {
            pending = format!("{stripped}\\\n");
            continue;
        }
        lines.push(PrintedLine {
            command: std::mem::take(&mut pending).trim().to_owned(),
            comment: comment.to_owned(),
        });
    }
    lines
}

/// What one printed line did: its exit status and everything it wrote, and the variable it set (if any).
struct Ran {
    exit: i32,
    output: String,
    assigned: Option<String>,
}

/// Runs every line in one clean shell, from the repository root, as a user in a new terminal would.
fn run_in_one_shell(lines: &[PrintedLine], log_dir: &Path) -> Vec<Ran> {
    let mut script = String::from("exec 2>&1\n");
    for (n, line) in lines.iter().enumerate() {
        script.push_str(&format!("printf '\\n@@begin {n}\\n'\n{}\n", line.command));
        script.push_str(&format!("printf '\\n@@end {n} %d\\n' $?\n"));
        if let Some(name) = assigned_variable(&line.command) {
            script.push_str(&format!("printf '@@value %s\\n' \"${name}\"\n"));
        }
    }
    std::fs::write(log_dir.join("printed-lines.sh"), &script).unwrap();
    let out = Command::new("timeout")
        .args(["300", "bash", "-c", &script])
        .current_dir(workspace())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(log_dir.join("printed-lines.out"), &text).unwrap();
    (0..lines.len())
        .map(|n| {
            let begin = format!("@@begin {n}\n");
            let end = format!("\n@@end {n} ");
            let from = text
                .find(&begin)
                .unwrap_or_else(|| panic!("line {n} did not run:\n{text}"))
                + begin.len();
            let to = from + text[from..].find(&end).unwrap();
            let rest = &text[to + end.len()..];
            let exit = rest.lines().next().unwrap().trim().parse().unwrap();
            let assigned = rest
                .lines()
                .nth(1)
                .and_then(|l| l.strip_prefix("@@value "))
                .map(str::to_owned);
            Ran {
                exit,
                output: text[from..to].to_owned(),
                assigned,
            }
        })
        .collect()
}

/// `NAME` of a printed `NAME=$(…)` line.
fn assigned_variable(command: &str) -> Option<&str> {
    let (name, rest) = command.split_once('=')?;
    (rest.starts_with("$(") && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .then_some(name)
}

/// The status, headers and JSON body of a `curl -si` output.
fn http_response(output: &str) -> (u16, String, Option<Value>) {
    let at = output.find("HTTP/1.1 ").expect("no HTTP status line");
    let response = &output[at..];
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).ok(),
    )
}

/// The value of a counter in Envoy's admin `/stats` text.
fn envoy_counter(admin: u16, name: &str) -> u64 {
    let stats = request("GET", admin, "/stats", &[], None).unwrap();
    stats
        .body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Checks one printed line's documented result (see the module comment).
fn check(line: &PrintedLine, ran: &Ran, demo: &RunningDemo) {
    let context = format!("printed line `{}`\noutput:\n{}", line.command, ran.output);
    assert_eq!(ran.exit, 0, "exit status {} of {context}", ran.exit);
    let command = line.command.as_str();
    let comment = line.comment.as_str();
    if command.starts_with("export ") {
        // Its effect is checked by the CLI lines after it, which run with nothing else to find the demo.
    } else if let Some(name) = assigned_variable(command) {
        let value = ran.assigned.as_deref().unwrap_or_default();
        assert!(
            value.split('.').count() == 3 && value.len() > 40,
            "{name} is not a JWT ({value:?}) after {context}"
        );
    } else if let Some(status) = comment.get(..3).and_then(|s| s.parse::<u16>().ok()) {
        let (got, head, body) = http_response(&ran.output);
        assert_eq!(got, status, "status of {context}");
        if let Some((api, client)) = comment.split_once(" sees client ") {
            let api = api.rsplit(' ').next().unwrap();
            let body = body
                .as_ref()
                .unwrap_or_else(|| panic!("no JSON body from the upstream: {context}"));
            assert_eq!(body["api"], api, "the wrong upstream answered {context}");
            assert_eq!(
                body["identity"]["x-keymesh-client-id"], client,
                "the upstream saw another client: {context}"
            );
            assert_eq!(
                body["authorization_forwarded"], false,
                "the token reached the upstream: {context}"
            );
        }
        if let Some((_, seen)) = comment.split_once(" sees subject ") {
            // The second hop: orders answered with what payments saw when orders called it for the caller.
            let (subject, actor) = seen
                .split_once(" acting through ")
                .unwrap_or_else(|| panic!("undocumented {context}"));
            let body = body
                .as_ref()
                .unwrap_or_else(|| panic!("no JSON body from orders: {context}"));
            assert_eq!(body["api"], "orders", "{context}");
            assert_eq!(
                body["payment"]["status"], 200,
                "payments refused: {context}"
            );
            let payments = &body["payment"]["body"];
            assert_eq!(payments["api"], "payments", "{context}");
            assert_eq!(
                payments["identity"]["x-keymesh-subject"], subject,
                "{context}"
            );
            assert_eq!(payments["identity"]["x-keymesh-actor"], actor, "{context}");
            assert_eq!(
                payments["authorization_forwarded"], false,
                "the token reached the payments upstream: {context}"
            );
        }
        if status == 401 {
            assert!(
                !ran.output.contains("\"api\""),
                "a refused request reached the upstream: {context}"
            );
            let challenge = head
                .lines()
                .find_map(|l| l.strip_prefix("www-authenticate: "))
                .unwrap_or_else(|| panic!("no challenge: {context}"));
            assert!(challenge.starts_with("bearer"), "{context}");
            if comment.contains("invalid_token") {
                assert!(challenge.contains("error=\"invalid_token\""), "{context}");
            }
        }
    } else if command.contains(" client create ") {
        let id = comment
            .strip_prefix("client_id: ")
            .unwrap_or_else(|| panic!("undocumented {context}"));
        assert!(
            ran.output
                .lines()
                .any(|l| l.starts_with("client_id:") && l.ends_with(&format!(" {id}"))),
            "{context}"
        );
    } else if command.ends_with(" key rotate") {
        assert!(ran.output.contains("published signing key"), "{context}");
    } else if command.ends_with(" key list") {
        assert!(
            ran.output.contains("state=active"),
            "no active key: {context}"
        );
        assert!(ran.output.contains("state=next"), "no next key: {context}");
    } else if command.contains("/v1/status") {
        let status: Value = serde_json::from_str(&ran.output).unwrap();
        let named: Vec<&str> = comment
            .strip_prefix("proxies: ")
            .unwrap_or_else(|| panic!("undocumented {context}"))
            .split(", ")
            .collect();
        let proxies: Vec<&str> = status["proxies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(proxies, named, "the proxies listed by {context}");
    } else if command.contains("/.well-known/jwks.json") {
        let jwks: Value = serde_json::from_str(&ran.output).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        // The active key and the one just rotated in are both published before the new one signs.
        assert!(keys.len() >= 2, "{context}");
        assert!(
            keys.iter()
                .all(|k| k["kid"].is_string() && k.get("d").is_none()),
            "a key without kid, or with private material: {context}"
        );
    } else if command.contains("/.well-known/oauth-authorization-server") {
        let metadata: Value = serde_json::from_str(&ran.output).unwrap();
        let issuer = format!("http://127.0.0.1:{}", demo.port(8080));
        assert_eq!(metadata["issuer"], issuer.as_str(), "{context}");
        assert_eq!(
            metadata["token_endpoint"],
            format!("{issuer}/oauth/token").as_str(),
            "{context}"
        );
    } else if command.contains("wrk ") {
        assert_eq!(comment, "no Non-2xx responses", "{context}");
        let runs = ran.output.matches("Requests/sec:").count();
        assert_eq!(
            runs, 2,
            "two load runs (with and without the filter): {context}"
        );
        assert!(!ran.output.contains("Non-2xx"), "{context}");
        assert!(!ran.output.contains("Socket errors"), "{context}");
        eprintln!("the printed load command:\n{}", ran.output);
    } else {
        panic!("no check for the printed line `{command}` (# {comment})");
    }
}

/// An offset that puts every demo port below the ephemeral range (where other tests' free ports come from) and on
/// a port nothing holds.
fn free_offset() -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    (0..50)
        .map(|n| {
            10_000
                + ((seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(n * 7919))
                    % 12_000) as u16
        })
        .find(|offset| {
            DEMO_PORTS
                .iter()
                .all(|p| TcpListener::bind(("127.0.0.1", p + offset)).is_ok())
        })
        .expect("no free set of demo ports")
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn every_printed_line_works_as_documented() {
    let mut demo = RunningDemo::start(free_offset());
    let lines = printed_lines(&demo.output);
    for expected in [
        "TOKEN=",
        "export KEYMESH_CONFIG=",
        " key rotate",
        "/v1/status",
        "/orders/42/payment",
        "wrk ",
    ] {
        assert!(
            lines.iter().any(|l| l.command.contains(expected)),
            "the demo no longer prints a `{expected}` line"
        );
    }

    let ran = run_in_one_shell(&lines, demo.state.path());
    // Every line is checked, and every failure reported, not only the first.
    let mut failures: Vec<String> = lines
        .iter()
        .zip(&ran)
        .filter_map(|(line, ran)| {
            std::panic::catch_unwind(AssertUnwindSafe(|| check(line, ran, &demo)))
                .err()
                .map(|panic| {
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default()
                })
        })
        .collect();
    // Envoy's view of the load: nothing answered 5xx, on either listener, and the upstream took every connection.
    let admin = demo.port(9901);
    for counter in [
        "http.orders.downstream_rq_5xx",
        "http.orders_unfiltered.downstream_rq_5xx",
        "cluster.orders_api.upstream_cx_connect_fail",
        "cluster.orders_api.upstream_rq_5xx",
    ] {
        let value = envoy_counter(admin, counter);
        if value != 0 {
            failures.push(format!(
                "Envoy counted {counter} = {value} under the printed load"
            ));
        }
    }
    for counter in [
        "http.orders.downstream_rq_2xx",
        "http.orders_unfiltered.downstream_rq_2xx",
    ] {
        let value = envoy_counter(admin, counter);
        if value < 100 {
            failures.push(format!(
                "only {value} answers counted in {counter}: did the load run?"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} check(s) of the printed lines failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );

    demo.stop();
    let ports: Vec<u16> = DEMO_PORTS.iter().map(|p| demo.port(*p)).collect();
    wait_for(
        "the demo to free its ports",
        Duration::from_secs(10),
        || ports.iter().all(|p| port_is_free(*p)).then_some(()),
    );
}

#[test]
fn printed_lines_are_split_into_commands_and_documented_results() {
    let output = "noise\nkeymesh demo is up. Run these:\n\n  # a heading\n  A=$(curl -s x \\\n      -d y | jq -r .t)\n  curl -si http://h/x     # 200, orders sees client demo\nTokens last\n";
    let lines = printed_lines(output);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].command, "A=$(curl -s x \\\n      -d y | jq -r .t)");
    assert_eq!(lines[0].comment, "");
    assert_eq!(lines[1].command, "curl -si http://h/x");
    assert_eq!(lines[1].comment, "200, orders sees client demo");
    assert_eq!(assigned_variable(&lines[0].command), Some("A"));
    assert_eq!(assigned_variable(&lines[1].command), None);
}
