//! The login and consent pages in headless Chromium (Debian's chromium and chromium-driver, driven by Selenium
//! from tests/e2e/python/browser_consent.py): log in, approve, land on the app's redirect URI with a code and the
//! original state; deny, land there with error=access_denied. The code then buys a token that works at Envoy. The
//! consent page's screenshot is kept in target/test-artifacts/consent.png.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oauth_support;

use std::path::Path;
use std::time::Duration;

use keymesh_e2e::{workspace, Stack};
use oauth_support::*;

#[test]
fn a_user_logs_in_and_consents_in_a_real_browser() {
    for binary in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(binary).exists(),
            "no {binary}: run scripts/setup.sh"
        );
    }
    let stack = Stack::start();
    let p = stack.ports;
    stack.keymesh(&[
        "client",
        "create",
        "--id",
        "cli",
        "--public",
        "--name",
        "Keymesh CLI",
        "--resource",
        ORDERS,
        "--resource",
        PAYMENTS,
        "--scope",
        "orders:read",
        "--scope",
        "payments:read",
        "--redirect-uri",
        "http://127.0.0.1/callback",
    ]);
    create_user(&stack, "alice");
    let screenshot = workspace().join("target/test-artifacts/consent.png");
    let _ = std::fs::remove_file(&screenshot);

    let env = vec![
        ("KEYMESH_URL", format!("http://127.0.0.1:{}", p.sidecar)),
        ("CLIENT_ID", "cli".to_owned()),
        ("CLIENT_NAME", "Keymesh CLI".to_owned()),
        ("USERNAME", "alice".to_owned()),
        ("PASSWORD", PASSWORD.to_owned()),
        ("RESOURCES", format!("{ORDERS} {PAYMENTS}")),
        ("SCOPE", "orders:read payments:read".to_owned()),
        ("SCREENSHOT", screenshot.display().to_string()),
    ];
    let out = run_python("browser_consent.py", &[], &env, Duration::from_secs(60));
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    let field = |name: &str| result[name].as_str().unwrap().to_owned();

    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );
    println!("consent page screenshot: {}", screenshot.display());

    // The app's callback server saw both answers.
    let callbacks = result["callbacks"].to_string();
    assert!(callbacks.contains("/callback?code="), "{callbacks}");
    assert!(
        callbacks.contains("/callback?error=access_denied"),
        "{callbacks}"
    );
    assert!(field("denied_url").contains("error=access_denied"));

    // The code from the browser, with the app's PKCE verifier, buys a token that works at Envoy.
    let form = format!(
        "grant_type=authorization_code&client_id=cli&code={}&redirect_uri={}&code_verifier={}",
        encode(&field("code")),
        encode(&field("redirect_uri")),
        field("code_verifier")
    );
    let response = post_form(&stack, "/oauth/token", &form);
    assert_eq!(response.status, 200, "{}", response.body);
    let token = response.json()["access_token"].as_str().unwrap().to_owned();
    wait_for_first_bundle(&stack, &token);
    for port in [p.orders, p.payments] {
        let echo = stack
            .responds_with(200, port, "/x", &[("authorization", &bearer(&token))])
            .json();
        assert_eq!(echo["identity"]["x-keymesh-subject"], "alice", "{echo}");
        assert_eq!(echo["identity"]["x-keymesh-client-id"], "cli", "{echo}");
    }
    // A code is good once.
    let again = post_form(&stack, "/oauth/token", &form);
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"], "invalid_grant");
}
