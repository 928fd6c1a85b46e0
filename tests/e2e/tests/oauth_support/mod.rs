//! Shared by the OAuth end-to-end tests: the project's Python (`.venv`, with Authlib, requests and Selenium from
//! scripts/setup.sh), running a script under tests/e2e/python with a deadline, and users created with the CLI.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) use keymesh_e2e::bearer;
use keymesh_e2e::{request, sidecar_bin, wait_for, workspace, Response, Stack};

pub(crate) const ORDERS: &str = "https://orders.local";
pub(crate) const PAYMENTS: &str = "https://payments.local";
pub(crate) const PASSWORD: &str = "alice-correct-horse";

/// `.venv/bin/python`, which scripts/setup.sh provides with the pinned test packages.
pub(crate) fn python() -> PathBuf {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.exists(),
        "no {}: run scripts/setup.sh",
        python.display()
    );
    python
}

/// Runs `tests/e2e/python/<script> <args>` with `env`, in its own process group, killing the whole group if it
/// outlives `deadline`. Fails the test, with the script's output, if it does not exit 0. Returns its stdout.
pub(crate) fn run_python(
    script: &str,
    args: &[&str],
    env: &[(&str, String)],
    deadline: Duration,
) -> String {
    let path = workspace().join("tests/e2e/python").join(script);
    let mut child = Command::new(python())
        .arg(&path)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .status();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{script} did not finish within {deadline:?}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output: Output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{script} took {:?}\n{stderr}", started.elapsed());
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stderr}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    // Everything the script started (a browser, its driver) is gone with it.
    wait_for(
        "the script's process group to exit",
        Duration::from_secs(10),
        || {
            let alive = Command::new("kill")
                .args(["-0", "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            (!alive).then_some(())
        },
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `keymesh user create --username NAME --password-stdin` against the stack.
pub(crate) fn create_user(stack: &Stack, username: &str) {
    let mut child = Command::new(sidecar_bin())
        .args(["user", "create", "--username", username, "--password-stdin"])
        .envs(stack.sidecar_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A form POST to the sidecar.
pub(crate) fn post_form(stack: &Stack, path: &str, form: &str) -> Response {
    request(
        "POST",
        stack.ports.sidecar,
        path,
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form),
    )
    .unwrap()
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `Bearer TOKEN`.
/// Waits until Envoy holds its first bundle (it answers 503 until then).
pub(crate) fn wait_for_first_bundle(stack: &Stack, token: &str) {
    let auth = bearer(token);
    wait_for("Envoy's first key bundle", Duration::from_secs(15), || {
        (stack
            .get(stack.ports.orders, "/orders/1", &[("authorization", &auth)])
            .status
            != 503)
            .then_some(())
    });
}

/// Polls `port` with `token` until it is refused with 401; returns how long that took. Fails after `within`.
pub(crate) fn time_until_refused(
    stack: &Stack,
    port: u16,
    token: &str,
    within: Duration,
) -> Duration {
    let auth = bearer(token);
    let started = Instant::now();
    loop {
        let response = stack.get(port, "/orders/1", &[("authorization", &auth)]);
        if response.status == 401 {
            assert!(response.body.contains("revoked"), "{}", response.body);
            return started.elapsed();
        }
        assert_eq!(response.status, 200, "{}", response.body);
        assert!(
            started.elapsed() < within,
            "still accepted {:?} after revocation",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
