//! The account page in headless Chromium (tests/e2e/python/browser_account_keys.py, through Selenium) against the
//! real sidecar, Redis and Envoy: the operator allows users an API with `keymesh user policy set`; a user signs
//! in, creates a key, sees it once; the key works at Envoy; the page lists it by its prefix only; the user disables
//! it (401 at Envoy), enables it (200) and revokes it (401). Accessibility basics (labels, focus order, contrast) are checked on every page, and
//! screenshots are kept in target/test-artifacts/account-*.png.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oauth_support;

use std::path::Path;
use std::time::Duration;

use keymesh_e2e::{wait_for, workspace, Stack};
use oauth_support::*;

/// Waits until `port` answers `status` for `key` (changes travel sidecar → Envoy asynchronously).
fn eventually(stack: &Stack, port: u16, key: &str, status: u16) {
    let auth = format!("apikey {key}");
    wait_for(
        &format!("{status} for the key at :{port}"),
        Duration::from_secs(5),
        || (stack.get(port, "/x", &[("authorization", &auth)]).status == status).then_some(()),
    );
}

#[test]
fn a_user_creates_uses_and_revokes_a_key_on_the_account_page() {
    for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(binary).exists(),
            "no {binary}: run scripts/setup.sh"
        );
    }
    let stack = Stack::start();
    let p = stack.ports;
    create_user(&stack, "alice");
    stack.keymesh(&[
        "user",
        "policy",
        "set",
        "--default",
        "--resource",
        ORDERS,
        "--scope",
        "orders:read",
        "--max-keys",
        "3",
        "--max-lifetime",
        "30d",
        "--tier",
        "pro",
    ]);
    let shown = stack.keymesh(&["user", "policy", "show", "--user", "alice", "--json"]);
    let policy: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(policy["source"], "default", "{policy}");
    assert_eq!(policy["max_lifetime_secs"], 30 * 86_400, "{policy}");

    let artifacts = workspace().join("target/test-artifacts");
    for name in [
        "account-login.png",
        "account-new-key.png",
        "account-keys.png",
        "account-revoked.png",
        "account-disabled.png",
    ] {
        let _ = std::fs::remove_file(artifacts.join(name));
    }
    let env = |phase: &str, extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("KEYMESH_URL", format!("http://127.0.0.1:{}", p.sidecar)),
            ("USERNAME", "alice".to_owned()),
            ("PASSWORD", PASSWORD.to_owned()),
            ("RESOURCE", ORDERS.to_owned()),
            ("SCOPE", "orders:read".to_owned()),
            ("ARTIFACTS", artifacts.display().to_string()),
            ("PHASE", phase.to_owned()),
        ];
        env.extend_from_slice(extra);
        env
    };

    let out = run_python(
        "browser_account_keys.py",
        &[],
        &env("create", &[]),
        Duration::from_secs(90),
    );
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let field = |name: &str| created[name].as_str().unwrap().to_owned();
    let (key, id) = (field("key"), field("id"));

    // The key works at Envoy for the API it was made for, as alice; the upstream never sees it.
    eventually(&stack, p.orders, &key, 200);
    let echo = stack.responds_with(200, p.orders, "/orders/1", &[("x-api-key", &key)]);
    let identity = &echo.json()["identity"];
    assert_eq!(identity["x-keymesh-subject"], "alice", "{identity}");
    assert_eq!(identity["x-keymesh-client-id"], id.as_str(), "{identity}");
    // The policy's tier ("pro": the demo config limits "free" to 3 requests a minute, too few for this test).
    assert_eq!(identity["x-keymesh-tier"], "pro", "{identity}");
    assert!(!echo.body.contains(&key));
    // Not at the API the policy did not allow.
    stack.responds_with(
        403,
        p.payments,
        "/payments/1",
        &[("authorization", &format!("apikey {key}"))],
    );
    // The operator's listing shows it without its secret, with the policy's maximum lifetime.
    let listed = stack.keymesh(&["apikey", "list", "--owner", "alice", "--json"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(&id) && !listed.contains(&key), "{listed}");

    // Envoy reports the use (every 10 s by default); the sidecar records it to the minute.
    wait_for(
        "the key's last use to be recorded",
        Duration::from_secs(30),
        || {
            let out = stack.keymesh(&["apikey", "list", "--owner", "alice", "--json"]);
            let keys: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            keys[0]["last_used_at"].as_u64()
        },
    );

    // Disable (the page shows the last use), enable and revoke with the row's buttons; Envoy follows each.
    let press = |action: &str| {
        run_python(
            "browser_account_keys.py",
            &[],
            &env(
                "act",
                &[
                    ("COOKIE", field("cookie")),
                    ("KEY_ID", id.clone()),
                    ("ACTION", action.to_owned()),
                ],
            ),
            Duration::from_secs(60),
        );
    };
    press("disable");
    eventually(&stack, p.orders, &key, 401);
    press("enable");
    eventually(&stack, p.orders, &key, 200);
    press("revoke");
    eventually(&stack, p.orders, &key, 401);

    for name in [
        "account-login.png",
        "account-new-key.png",
        "account-keys.png",
        "account-revoked.png",
        "account-disabled.png",
    ] {
        let png = std::fs::read(artifacts.join(name)).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
            "{name}: {} bytes",
            png.len()
        );
    }
    println!(
        "account page screenshots: {}/account-*.png",
        artifacts.display()
    );
}
