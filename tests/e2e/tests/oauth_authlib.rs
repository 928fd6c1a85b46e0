//! A third-party OAuth2 client library (Python Authlib 1.x, tests/e2e/python/authlib_flows.py) against the real
//! sidecar: client credentials for two resources, authorization code with PKCE for a confidential web app and a
//! public native app, refresh, introspection and revocation. The tokens it obtains are then used at real Envoy,
//! and revoked ones are refused there within a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod oauth_support;

use std::time::Duration;

use keymesh_e2e::Stack;
use oauth_support::*;

const WEB_REDIRECT: &str = "https://webapp.example/callback";

#[test]
fn authlib_obtains_tokens_that_work_at_envoy_until_revoked() {
    let stack = Stack::start();
    let p = stack.ports;
    // A generated secret (stored as SHA-256), a public client with a loopback redirect URI, and a user.
    let web = stack.keymesh(&[
        "client",
        "create",
        "--id",
        "webapp",
        "--name",
        "Web app",
        "--resource",
        ORDERS,
        "--resource",
        PAYMENTS,
        "--scope",
        "orders:read",
        "--scope",
        "payments:read",
        "--redirect-uri",
        WEB_REDIRECT,
        "--json",
    ]);
    let web: serde_json::Value = serde_json::from_slice(&web.stdout).unwrap();
    let secret = web["client_secret"].as_str().unwrap().to_owned();
    stack.keymesh(&[
        "client",
        "create",
        "--id",
        "cli",
        "--public",
        "--resource",
        ORDERS,
        "--scope",
        "orders:read",
        "--redirect-uri",
        "http://127.0.0.1/callback",
    ]);
    create_user(&stack, "alice");

    let env = vec![
        ("KEYMESH_URL", format!("http://127.0.0.1:{}", p.sidecar)),
        ("WEB_CLIENT_ID", "webapp".to_owned()),
        ("WEB_CLIENT_SECRET", secret.clone()),
        ("WEB_REDIRECT_URI", WEB_REDIRECT.to_owned()),
        ("NATIVE_CLIENT_ID", "cli".to_owned()),
        (
            "NATIVE_REDIRECT_URI",
            "http://127.0.0.1:53682/callback".to_owned(),
        ),
        ("USERNAME", "alice".to_owned()),
        ("PASSWORD", PASSWORD.to_owned()),
        ("ORDERS", ORDERS.to_owned()),
        ("PAYMENTS", PAYMENTS.to_owned()),
    ];
    let out = run_python(
        "authlib_flows.py",
        &["obtain"],
        &env,
        Duration::from_secs(30),
    );
    let tokens: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = |name: &str| {
        tokens[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {tokens}"))
            .to_owned()
    };
    let (cc, code, narrow, native) = (
        token("client_credentials"),
        token("authorization_code"),
        token("refreshed_orders_only"),
        token("native"),
    );
    wait_for_first_bundle(&stack, &cc);

    // Client credentials with two resources: both APIs, as the client itself.
    for port in [p.orders, p.payments] {
        let echo = stack
            .responds_with(200, port, "/x", &[("authorization", &bearer(&cc))])
            .json();
        assert_eq!(echo["identity"]["x-keymesh-subject"], "webapp", "{echo}");
    }
    // The user's token from the code flow: both APIs, as alice, through the web app.
    for port in [p.orders, p.payments] {
        let echo = stack
            .responds_with(200, port, "/x", &[("authorization", &bearer(&code))])
            .json();
        assert_eq!(echo["identity"]["x-keymesh-subject"], "alice", "{echo}");
        assert_eq!(echo["identity"]["x-keymesh-client-id"], "webapp", "{echo}");
        assert_eq!(
            echo["identity"]["x-keymesh-scope"], "orders:read payments:read",
            "{echo}"
        );
    }
    // The refreshed token was narrowed to orders.
    stack.responds_with(200, p.orders, "/x", &[("authorization", &bearer(&narrow))]);
    stack.responds_with(
        401,
        p.payments,
        "/x",
        &[("authorization", &bearer(&narrow))],
    );
    // Authlib revoked the native app's refresh token: the access token issued with it is refused too.
    let refused = stack.responds_with(401, p.orders, "/x", &[("authorization", &bearer(&native))]);
    assert!(refused.body.contains("revoked"), "{}", refused.body);

    // Revoking an access token at the sidecar: the next requests at Envoy get 401 within a second.
    let revoked = post_form(
        &stack,
        "/oauth/revoke",
        &format!(
            "token={code}&client_id=webapp&client_secret={}",
            encode(&secret)
        ),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let took = time_until_refused(&stack, p.orders, &code, Duration::from_secs(1));
    eprintln!("revocation reached Envoy in {took:?}");
    stack.responds_with(401, p.payments, "/x", &[("authorization", &bearer(&code))]);
    // Only that token: the others still work.
    stack.responds_with(200, p.orders, "/x", &[("authorization", &bearer(&cc))]);
    stack.responds_with(200, p.orders, "/x", &[("authorization", &bearer(&narrow))]);

    // The same through Authlib's revoke_token.
    run_python(
        "authlib_flows.py",
        &["revoke", &cc],
        &env,
        Duration::from_secs(20),
    );
    let took = time_until_refused(&stack, p.payments, &cc, Duration::from_secs(1));
    eprintln!("revocation through Authlib reached Envoy in {took:?}");
}
