//! What the authorization server promises as a whole, against a real Redis: its RFC 8414 metadata, one client
//! authentication method per request, throttling of failed client authentication shared by replicas, and the CLI
//! that creates users and OAuth clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::oauth::*;
use support::*;

const P: &str = "as:";
const BIN: &str = env!("CARGO_BIN_EXE_keymesh");

#[tokio::test]
async fn metadata_lists_what_is_supported_and_nothing_else() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let metadata = get(&app.router, "/.well-known/oauth-authorization-server", &[])
        .await
        .json();
    assert_eq!(metadata["issuer"], ISSUER);
    for (field, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("jwks_uri", "/.well-known/jwks.json"),
    ] {
        assert_eq!(metadata[field], format!("{ISSUER}{path}"), "{field}");
    }
    assert_eq!(metadata["response_types_supported"], json!(["code"]));
    assert_eq!(metadata["response_modes_supported"], json!(["query"]));
    assert_eq!(
        metadata["grant_types_supported"],
        json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        metadata["revocation_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        metadata["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );
}

#[tokio::test]
async fn two_authentication_methods_in_one_request_are_refused_everywhere() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let client = web_client(&redis, P, "web").await;
    let both = basic("web", &client.client_secret);
    for (path, body) in [
        ("/oauth/token", "grant_type=client_credentials"),
        ("/oauth/revoke", "token=x"),
        ("/oauth/introspect", "token=x"),
    ] {
        let body = format!(
            "{body}&client_id=web&client_secret={}",
            client.client_secret
        );
        let reply = call(
            &app.router,
            "POST",
            path,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &both),
            ],
            Some(&body),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.json()["error"], "invalid_request", "{path}");
    }
}

#[tokio::test]
async fn repeated_failed_client_authentication_is_throttled_across_replicas() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let replica = start_app(&redis, P).await;
    let client = web_client(&redis, P, "web").await;
    let bystander = web_client(&redis, P, "bystander").await;
    let cc = "grant_type=client_credentials";
    let wrong = basic("web", "not-the-secret");

    // Ten failures, spread over two replicas and three endpoints.
    for i in 0..10 {
        let router = if i % 2 == 0 {
            &app.router
        } else {
            &replica.router
        };
        let path = ["/oauth/token", "/oauth/revoke", "/oauth/introspect"][i % 3];
        let body = if path == "/oauth/token" {
            cc
        } else {
            "token=x"
        };
        let reply = call(
            router,
            "POST",
            path,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &wrong),
            ],
            Some(body),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "attempt {i} at {path}"
        );
    }
    // Now even the right secret is refused for a while, on either replica; other clients are not affected.
    for router in [&app.router, &replica.router] {
        let reply = post_token(router, Some(&basic("web", &client.client_secret)), cc).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(reply.json()["error"], "temporarily_unavailable");
    }
    let reply = post_token(
        &app.router,
        Some(&basic("bystander", &bystander.client_secret)),
        cc,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    // The window ends.
    redis::cmd("DEL")
        .arg(format!("{P}authfail:client:web"))
        .arg(format!("{P}authfail:client:web:from:unknown"))
        .query_async::<()>(&mut redis.conn().await)
        .await
        .unwrap();
    let reply = post_token(&app.router, Some(&basic("web", &client.client_secret)), cc).await;
    assert_eq!(reply.status, StatusCode::OK);
}

fn keymesh(redis: &RedisServer, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("KEYMESH_REDIS_URL", redis.url())
        .env("KEYMESH_KEY_PREFIX", P)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_cli_creates_users_and_public_or_confidential_clients() {
    let redis = RedisServer::start();
    let created = keymesh(
        &redis,
        &["user", "create", "--username", "alice", "--password-stdin"],
        Some("s3cret-passw0rd\n"),
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let raw: String = redis::cmd("GET")
        .arg(format!("{P}user:alice"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(!raw.contains("s3cret"), "{raw}");
    let record: Value = serde_json::from_str(&raw).unwrap();
    let hash = record["password_hash"].as_str().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(keymesh::support::secret::verify("s3cret-passw0rd", hash));

    let again = keymesh(
        &redis,
        &[
            "user",
            "create",
            "--username",
            "alice",
            "--password",
            "another-one",
        ],
        None,
    );
    assert!(!again.status.success(), "exists");
    let short = keymesh(
        &redis,
        &["user", "create", "--username", "bob", "--password", "short"],
        None,
    );
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password"));
    let listed = keymesh(&redis, &["user", "list", "--json"], None);
    let users: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(users[0]["username"], "alice");
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("argon2"));

    let public = keymesh(
        &redis,
        &[
            "client",
            "create",
            "--id",
            "cli",
            "--public",
            "--name",
            "Command line",
            "--resource",
            ORDERS,
            "--scope",
            "read",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--json",
        ],
        None,
    );
    assert!(
        public.status.success(),
        "{}",
        String::from_utf8_lossy(&public.stderr)
    );
    let public: Value = serde_json::from_slice(&public.stdout).unwrap();
    assert_eq!(public["public"], true);
    assert!(public.get("client_secret").is_none(), "{public}");
    assert_eq!(
        public["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        public["redirect_uris"],
        json!(["http://127.0.0.1/callback"])
    );

    let web = keymesh(
        &redis,
        &[
            "client",
            "create",
            "--id",
            "web",
            "--resource",
            ORDERS,
            "--redirect-uri",
            WEB_CALLBACK,
            "--redirect-uri",
            "https://app.test/other",
            "--json",
        ],
        None,
    );
    let web: Value = serde_json::from_slice(&web.stdout).unwrap();
    assert_eq!(web["client_secret"].as_str().unwrap().len(), 43);
    assert_eq!(
        web["grant_types"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    let machine = keymesh(
        &redis,
        &[
            "client",
            "create",
            "--id",
            "m",
            "--resource",
            ORDERS,
            "--json",
        ],
        None,
    );
    let machine: Value = serde_json::from_slice(&machine.stdout).unwrap();
    assert_eq!(
        machine["grant_types"],
        json!(["client_credentials"]),
        "existing usage unchanged"
    );

    for (args, message) in [
        (vec!["--public", "--secret", "x"], "cannot be used with"),
        (vec!["--redirect-uri", "http://app.test/cb"], "use https"),
        (
            vec!["--redirect-uri", "https://app.test/cb#x"],
            "without fragment",
        ),
        (
            vec!["--public"],
            "authorization_code needs at least one --redirect-uri",
        ),
        (
            vec!["--grant-type", "authorization_code"],
            "authorization_code needs at least one --redirect-uri",
        ),
        (vec!["--grant-type", "password"], "unknown grant type"),
    ] {
        let mut full = vec!["client", "create", "--id", "bad", "--resource", ORDERS];
        full.extend(args.iter().copied());
        let out = keymesh(&redis, &full, None);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let listed = keymesh(&redis, &["client", "list"], None);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("cli\tpublic\t"), "{listed}");
    assert!(listed.contains("web\tconfidential\t"), "{listed}");
}
