//! The real binary on a real socket: `keymesh serve`, `keymesh client create --json`, a token over HTTP, API keys
//! from the admin API and the CLI, `keymesh health`, and on SIGTERM: readiness failing at once, long polls answered
//! `304` with `Connection: close` during the drain, and a clean exit right after it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use keymesh_test_support::Process;
use support::{basic, free_port, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_keymesh");
const ADMIN_TOKEN: &str = "serve-admin-token-0123456789abcdef";

fn keymesh(env: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

#[test]
fn serve_issues_tokens_to_cli_created_clients_and_stops_on_sigterm() {
    let redis = RedisServer::start();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("serve.log");
    let env = [
        ("KEYMESH_REDIS_URL", redis.url()),
        ("KEYMESH_LISTEN", format!("127.0.0.1:{port}")),
        ("KEYMESH_ISSUER", base.clone()),
        ("KEYMESH_KEY_PREFIX", "serve:".to_owned()),
        ("KEYMESH_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("KEYMESH_KEK", support::TEST_KEK.to_owned()),
        ("KEYMESH_SHUTDOWN_DRAIN_SECS", "1".to_owned()),
        // Debug for keymesh, so the most talkative logging is the one checked for secrets.
        ("RUST_LOG", "info,keymesh=debug".to_owned()),
    ];
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("KEYMESH_CONFIG");
    // Stopped on drop, so a failing assertion does not leave it running; its output goes to `serve.log`.
    let mut server = Process::start("serve", logs.path(), command).unwrap();
    let dump =
        |what: &str| -> String { format!("{what}\n--- server log ---\n{}", read(&log_path)) };

    let http = agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http
            .get(format!("{base}/healthz"))
            .call()
            .is_ok_and(|r| r.status() == 200);
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            dump("server never became healthy")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let created = keymesh(
        &env,
        &[
            "client",
            "create",
            "--id",
            "e2e",
            "--resource",
            "https://a.test",
            "https://b.test",
            "--scope",
            "read",
            "--json",
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(
        created["resources"],
        serde_json::json!(["https://a.test", "https://b.test"])
    );
    let secret = created["client_secret"].as_str().unwrap();

    let mut response = http
        .post(format!("{base}/oauth/token"))
        .header("Authorization", &basic("e2e", secret))
        .send_form([
            ("grant_type", "client_credentials"),
            ("resource", "https://b.test"),
        ])
        .unwrap();
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{}", dump(&body));
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["scope"], "read");
    let kid = jwt_compact::UntrustedToken::new(token["access_token"].as_str().unwrap())
        .unwrap()
        .header()
        .key_id
        .clone()
        .unwrap();
    let jwks = http
        .get(format!("{base}/.well-known/jwks.json"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(jwks.contains(&kid));

    let duplicate = keymesh(
        &env,
        &[
            "client",
            "create",
            "--id",
            "e2e",
            "--resource",
            "https://a.test",
        ],
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    let listed = keymesh(&env, &["client", "list"]);
    assert!(listed.status.success());
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.starts_with("e2e\t"), "{listed}");
    assert!(!listed.contains(secret));

    // API keys: one from the admin API, one from the CLI; both reach the bundle.
    let mut response = http
        .post(format!("{base}/v1/admin/apikeys"))
        .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .header("Content-Type", "application/json")
        .send(r#"{"owner":"portal-user","label":"from the portal","resources":["https://a.test"]}"#)
        .unwrap();
    let body = response.body_mut().read_to_string().unwrap();
    assert_eq!(response.status(), 201, "{}", dump(&body));
    let portal: serde_json::Value = serde_json::from_str(&body).unwrap();
    let portal_key = portal["key"].as_str().unwrap().to_owned();
    let cli_key = keymesh(
        &env,
        &[
            "apikey",
            "create",
            "--owner",
            "ops",
            "--label",
            "cron",
            "--resource",
            "https://b.test",
            "--json",
        ],
    );
    assert!(
        cli_key.status.success(),
        "{}",
        String::from_utf8_lossy(&cli_key.stderr)
    );
    let cli_key: serde_json::Value = serde_json::from_slice(&cli_key.stdout).unwrap();
    let cli_key = cli_key["key"].as_str().unwrap().to_owned();
    let hashes = [&portal_key, &cli_key].map(|key| keymesh_core::apikey::hash_key(key));
    let deadline = Instant::now() + Duration::from_secs(5);
    let etag = loop {
        let mut response = http
            .get(format!("{base}/v1/bundle"))
            .header("x-keymesh-proxy", "envoy-test")
            .call()
            .unwrap();
        let etag = response
            .headers()
            .get("etag")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let bundle = response.body_mut().read_to_string().unwrap();
        if hashes.iter().all(|hash| bundle.contains(hash.as_str())) {
            break etag;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            dump("api keys never reached the bundle")
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // The health subcommand reaches the server at its configured listen address.
    let ready = keymesh(&env, &["health", "--ready"]);
    assert!(ready.status.success(), "{}", dump("health --ready"));
    assert_eq!(
        String::from_utf8_lossy(&ready.stdout).trim(),
        format!("ok {base}/healthz")
    );

    // A long poll held open does not hold up the shutdown: it is answered 304 when the drain begins.
    let poll = std::thread::spawn({
        let (http, url) = (http.clone(), format!("{base}/v1/bundle?wait=60"));
        let etag = etag.clone();
        move || {
            http.get(url)
                .header("If-None-Match", &etag)
                .header("x-keymesh-proxy", "envoy-test")
                .call()
                .map(|response| response.status().as_u16())
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !poll.is_finished(),
        "{}",
        dump("the long poll was not held")
    );

    server.signal("TERM").unwrap();
    let signalled = Instant::now();
    assert_eq!(
        poll.join().unwrap().ok(),
        Some(304),
        "{}",
        dump("long poll")
    );
    assert!(
        signalled.elapsed() < Duration::from_millis(800),
        "{}",
        dump(&format!(
            "held poll answered after {:?}",
            signalled.elapsed()
        ))
    );
    // During the drain: not ready, still alive, and a new long poll is answered at once, closing its connection.
    assert_eq!(
        http.get(format!("{base}/healthz")).call().unwrap().status(),
        503
    );
    assert_eq!(
        http.get(format!("{base}/livez")).call().unwrap().status(),
        200
    );
    assert!(!keymesh(&env, &["health", "--ready"]).status.success());
    assert!(keymesh(&env, &["health"]).status.success());
    let asked = Instant::now();
    let late = http
        .get(format!("{base}/v1/bundle?wait=60"))
        .header("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(late.status(), 304);
    assert!(asked.elapsed() < Duration::from_millis(500));
    assert_eq!(late.headers().get("connection").unwrap(), "close");
    let status = server
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap_or_else(|| panic!("{}", dump("no exit")));
    let stopped = signalled.elapsed();
    assert!(
        stopped >= Duration::from_secs(1) && stopped < Duration::from_secs(3),
        "{}",
        dump(&format!("exit {stopped:?} after SIGTERM with a 1 s drain"))
    );
    assert!(
        status.success(),
        "{}",
        dump(&format!("exit status {status}"))
    );
    let log = read(&log_path);
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(
        !log.contains(secret) && !log.contains(token["access_token"].as_str().unwrap()),
        "secrets logged"
    );
    assert!(log.contains("envoy-test"), "debug logging was on: {log}");
    for (what, value) in [
        ("admin token", ADMIN_TOKEN),
        ("portal api key", portal_key.as_str()),
        ("cli api key", cli_key.as_str()),
    ] {
        assert!(!log.contains(value), "{what} logged:\n{log}");
    }
}

#[test]
fn a_bad_setting_stops_the_binary_with_the_field_named() {
    let output = keymesh(
        &[("KEYMESH_TOKEN_TTL_SECS", "soon".to_owned())],
        &["client", "list"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("token_ttl_secs") && stderr.contains("KEYMESH_TOKEN_TTL_SECS"),
        "{stderr}"
    );
}

#[test]
fn a_config_file_is_used_by_the_cli() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keymesh.toml");
    std::fs::write(
        &file,
        format!("redis_url = \"{}\"\nkey_prefix = \"file:\"\n", redis.url()),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let created = keymesh(
        &[],
        &[
            "--config",
            file,
            "client",
            "create",
            "--id",
            "f",
            "--resource",
            "urn:x",
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let listed = keymesh(
        &[("KEYMESH_CONFIG", file.to_owned())],
        &["client", "list", "--json"],
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"f\""));
    // The environment overrides the file: another prefix sees no clients.
    let other = keymesh(
        &[
            ("KEYMESH_CONFIG", file.to_owned()),
            ("KEYMESH_KEY_PREFIX", "else:".to_owned()),
        ],
        &["client", "list", "--json"],
    );
    assert_eq!(String::from_utf8_lossy(&other.stdout).trim(), "[]");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
