//! What the sidecar reports about itself and its proxies (`/v1/status`, `/metrics`), a password-protected Redis
//! (whose password never reaches a log or an error), and the binary refusing to start without a key-encryption key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use keymesh::{AppState, Clock};
use keymesh_test_support::Process;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_keymesh");
const API: &str = "https://api.test";
const PASSWORD: &str = "pw-Zq8vTt3s-never-logged";

/// The `/metrics` sample named `name` (with its labels, e.g. `m{kind="full"}`), if present.
fn sample(metrics: &str, name: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series == name).then(|| value.parse().unwrap())
    })
}

#[tokio::test]
async fn status_and_metrics_describe_the_bundle_and_each_proxy() {
    let redis = RedisServer::start();
    let now = Arc::new(AtomicU64::new(NOW));
    let clock = {
        let now = Arc::clone(&now);
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    };
    let config = config(&redis, "st:");
    let state = AppState::start(config, clock).unwrap();
    tokio::time::timeout(Duration::from_secs(10), state.ready())
        .await
        .unwrap();
    let router = keymesh::app(state.clone());
    let app = TestApp {
        config: state.config().clone(),
        state,
        router,
    };
    let v1 = mirrored(&app, 1).await;

    // envoy-a: a full bundle; envoy-b: up to date (304); envoy-a again behind a change (delta, long poll).
    get(&app.router, "/v1/bundle", &[("x-keymesh-proxy", "envoy-a")]).await;
    let held = format!("\"{v1}\"");
    let reply = get(
        &app.router,
        "/v1/bundle",
        &[("x-keymesh-proxy", "envoy-b"), ("if-none-match", &held)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    create_key(&redis, "st:", "owner", &[API]).await;
    let v2 = mirrored(&app, v1 + 1).await;
    now.store(NOW + 5, Ordering::SeqCst);
    let reply = get(
        &app.router,
        "/v1/bundle?wait=5",
        &[("x-keymesh-proxy", "envoy-a"), ("if-none-match", &held)],
    )
    .await;
    assert_eq!(bundle_of(&reply).since, Some(v1));
    // Requests without the header are answered and counted, but name no proxy.
    get(&app.router, "/v1/bundle", &[]).await;
    let secret = register(&redis, "st:", "svc", None, &[API], &[])
        .await
        .client_secret;
    let ok = post_token(
        &app.router,
        Some(&basic("svc", &secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let refused = post_token(
        &app.router,
        Some(&basic("svc", "wrong")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let status = get(&app.router, "/v1/status", &[]).await;
    assert_eq!(status.status, StatusCode::OK);
    let status = status.json();
    assert_eq!(status["sidecar_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["redis_connected"], true);
    assert_eq!(status["bundle_version"], v2);
    assert_eq!(
        status["proxies"],
        serde_json::json!([
            {"id": "envoy-a", "version": v1, "behind_by": v2 - v1, "last_seen": NOW + 5, "long_poll": true},
            {"id": "envoy-b", "version": v1, "behind_by": v2 - v1, "last_seen": NOW, "long_poll": false},
        ])
    );

    let metrics = get(&app.router, "/metrics", &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    for (series, value) in [
        ("keymesh_bundle_version", v2),
        ("keymesh_proxy_bundle_version{proxy=\"envoy-a\"}", v1),
        ("keymesh_proxy_bundle_version{proxy=\"envoy-b\"}", v1),
        (
            "keymesh_proxy_last_seen_seconds{proxy=\"envoy-a\"}",
            NOW + 5,
        ),
        ("keymesh_proxy_last_seen_seconds{proxy=\"envoy-b\"}", NOW),
        ("keymesh_api_keys", 1),
        ("keymesh_signing_keys", 1),
        ("keymesh_tokens_issued_total", 1),
        ("keymesh_bundle_requests_total{kind=\"full\"}", 2),
        ("keymesh_bundle_requests_total{kind=\"delta\"}", 1),
        ("keymesh_bundle_requests_total{kind=\"not_modified\"}", 1),
        ("keymesh_redis_connected", 1),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(
        text.contains("# TYPE keymesh_tokens_issued_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE keymesh_bundle_version gauge"),
        "{text}"
    );

    // Ten minutes after its last request a proxy drops out of both.
    now.store(NOW + 600, Ordering::SeqCst);
    let status = get(&app.router, "/v1/status", &[]).await.json();
    let ids: Vec<&str> = status["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["envoy-a"]);
    now.store(NOW + 605, Ordering::SeqCst);
    let text = String::from_utf8(get(&app.router, "/metrics", &[]).await.body.to_vec()).unwrap();
    assert!(!text.contains("envoy-"), "{text}");
    assert_eq!(
        get(&app.router, "/v1/status", &[]).await.json()["proxies"],
        serde_json::json!([])
    );

    // Redis gone: reported at once.
    drop(redis);
    let disconnected = eventually(Duration::from_secs(10), || async {
        let status = get(&app.router, "/v1/status", &[]).await.json();
        (status["redis_connected"] == false).then_some(status)
    })
    .await
    .expect("disconnect reported");
    assert_eq!(
        disconnected["bundle_version"], v2,
        "the last snapshot is still served"
    );
    let text = String::from_utf8(get(&app.router, "/metrics", &[]).await.body.to_vec()).unwrap();
    assert_eq!(sample(&text, "keymesh_redis_connected"), Some(0));
}

#[tokio::test]
async fn a_password_protected_redis_works_and_its_password_is_never_shown() {
    let redis = RedisServer::start_with_password(PASSWORD);
    assert!(redis.url().contains(PASSWORD));
    let app = start_app(&redis, "pw:").await;
    let secret = register(&redis, "pw:", "svc", None, &[API], &[])
        .await
        .client_secret;
    let reply = post_token(
        &app.router,
        Some(&basic("svc", &secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let key = create_key(&redis, "pw:", "owner", &[API]).await;
    let version = redis_version(&redis, "pw:").await;
    mirrored(&app, version).await;
    assert!(
        String::from_utf8_lossy(&get(&app.router, "/v1/bundle", &[]).await.body)
            .contains(&keymesh_core::apikey::hash_key(&key.key))
    );
    let debug = format!("{:?} {:?}", app.config, app.state);
    assert!(
        !debug.contains(PASSWORD) && debug.contains("redis://:***@"),
        "{debug}"
    );

    // Without the password, or with a wrong one, the CLI fails and says why without echoing either.
    let plain = redis.url().replace(&format!(":{PASSWORD}@"), "");
    let wrong = redis.url().replace(PASSWORD, "wrong-Qx7-password");
    for (url, secret) in [(plain, PASSWORD), (wrong, "wrong-Qx7-password")] {
        let output = Command::new(BIN)
            .args(["client", "list"])
            .env("KEYMESH_REDIS_URL", &url)
            .env_remove("KEYMESH_CONFIG")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("redis"), "{stderr}");
        assert!(
            !stderr.contains(secret) && !stderr.contains(PASSWORD),
            "{stderr}"
        );
    }
    // A malformed URL with a password is refused without echoing it.
    let output = Command::new(BIN)
        .args(["client", "list"])
        .env(
            "KEYMESH_REDIS_URL",
            format!("redis://:{PASSWORD}@127.0.0.1:notaport/"),
        )
        .env_remove("KEYMESH_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("redis_url"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    // The real server, logging at debug: it works, and neither the password nor the URL in clear is logged.
    let port = free_port();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("serve.log");
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .env("KEYMESH_REDIS_URL", redis.url())
        .env("KEYMESH_LISTEN", format!("127.0.0.1:{port}"))
        .env("KEYMESH_ISSUER", format!("http://127.0.0.1:{port}"))
        .env("KEYMESH_KEY_PREFIX", "pw:")
        .env("KEYMESH_KEK", TEST_KEK)
        .env("RUST_LOG", "debug")
        .env_remove("KEYMESH_CONFIG");
    // Output in `serve.log`; stopped on drop.
    let mut server = Process::start("serve", logs.path(), command).unwrap();
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = http
            .get(format!("http://127.0.0.1:{port}/v1/status"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok());
        if let Some(status) = status.filter(|s| s["redis_connected"] == true) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status["bundle_version"].as_u64().unwrap() >= version);
    server.signal("TERM").unwrap();
    assert!(
        server
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .is_some(),
        "no exit after SIGTERM"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("redis://:***@127.0.0.1"),
        "the redacted URL is logged: {log}"
    );
    assert!(!log.contains(PASSWORD), "password logged:\n{log}");
}

#[test]
fn serve_and_key_rotate_refuse_to_start_without_a_kek_and_say_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("kek");
    std::fs::write(&junk, "not-a-key-Ue93\n").unwrap();
    // (arguments, environment, what stderr must say)
    type Case<'a> = (&'a [&'a str], Vec<(&'a str, String)>, &'a [&'a str]);
    let cases: [Case<'_>; 4] = [
        (
            &["serve"],
            vec![],
            &["KEYMESH_KEK", "KEYMESH_KEK_FILE", "kek_file"],
        ),
        (&["key", "rotate"], vec![], &["KEYMESH_KEK"]),
        (
            &["serve"],
            vec![("KEYMESH_KEK_FILE", junk.display().to_string())],
            &["key-encryption key", "32 bytes"],
        ),
        (
            &["serve"],
            vec![("KEYMESH_KEK", "c2hvcnQ=".to_owned())],
            &["kek", "KEYMESH_KEK", "32 bytes"],
        ),
    ];
    for (args, env, expected) in cases {
        let started = Instant::now();
        let output = Command::new(BIN)
            .args(args)
            // Nothing listens here: the refusal must come before any attempt to connect.
            .env(
                "KEYMESH_REDIS_URL",
                format!("redis://127.0.0.1:{}/", free_port()),
            )
            .env("KEYMESH_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env_remove("KEYMESH_KEK")
            .env_remove("KEYMESH_KEK_FILE")
            .env_remove("KEYMESH_CONFIG")
            .envs(env)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} did not refuse at once"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        for text in expected {
            assert!(stderr.contains(text), "{args:?}: {text:?} not in {stderr}");
        }
        assert!(
            !stderr.contains("not-a-key-Ue93") && !stderr.contains("c2hvcnQ="),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
