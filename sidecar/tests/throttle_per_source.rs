//! Failed authentications are throttled per source address, so an attacker who knows a client id or a username
//! locks out only their own address; the client or user asking from elsewhere keeps working. Covers the token
//! endpoint, revocation and introspection (client secrets), the login form (passwords), when `x-forwarded-for`
//! counts (only from a trusted proxy), the per-client ceiling, and IPv6 sources counted per /64.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use keymesh::support::source_address::TrustedProxies;
use support::oauth::*;
use support::*;

const P: &str = "ts:";
const CC: &str = "grant_type=client_credentials";
const ATTACKER: &str = "203.0.113.66:40000";
const LEGITIMATE: &str = "198.51.100.7:50000";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn token_from(
    router: &axum::Router,
    peer: &str,
    auth: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut all = vec![FORM, ("authorization", auth)];
    all.extend_from_slice(headers);
    call_from(router, peer, "POST", "/oauth/token", &all, Some(CC)).await
}

#[tokio::test]
async fn an_attacker_cannot_lock_out_a_client_from_another_source() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let replica = start_app(&redis, P).await;
    let client = web_client(&redis, P, "web").await;
    let wrong = basic("web", "not-the-secret");
    let right = basic("web", &client.client_secret);

    // Fifteen wrong secrets from the attacker's address, over both replicas and all three endpoints.
    for i in 0..15 {
        let router = if i % 2 == 0 {
            &app.router
        } else {
            &replica.router
        };
        let path = ["/oauth/token", "/oauth/revoke", "/oauth/introspect"][i % 3];
        let body = if path == "/oauth/token" {
            CC
        } else {
            "token=x"
        };
        let reply = call_from(
            router,
            ATTACKER,
            "POST",
            path,
            &[FORM, ("authorization", &wrong)],
            Some(body),
        )
        .await;
        let expected = if i < 10 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(reply.status, expected, "attempt {i} at {path}");
    }
    // The attacker's source is locked, even with the right secret (they cannot test a guess by it).
    let reply = token_from(&app.router, ATTACKER, &right, &[]).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.json()["error"], "temporarily_unavailable");
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The client itself, from its own address, is not affected on either replica.
    for router in [&app.router, &replica.router] {
        let reply = token_from(router, LEGITIMATE, &right, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    }
    // A spoofed x-forwarded-for does not move the attacker to another source: no proxy is trusted.
    let reply = token_from(
        &app.router,
        ATTACKER,
        &wrong,
        &[("x-forwarded-for", "192.0.2.200")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    // Nor can the attacker frame the client's address by naming it.
    for _ in 0..12 {
        let spoofed = token_from(
            &app.router,
            "203.0.113.67:1",
            &wrong,
            &[("x-forwarded-for", "198.51.100.7")],
        )
        .await;
        assert_ne!(spoofed.status, StatusCode::OK);
    }
    let reply = token_from(&app.router, LEGITIMATE, &right, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_source() {
    let redis = RedisServer::start();
    let mut config = config(&redis, P);
    config.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    let app = start_app_with(config).await;
    let client = web_client(&redis, P, "web").await;
    let wrong = basic("web", "not-the-secret");
    let right = basic("web", &client.client_secret);
    const ENVOY: &str = "127.0.0.1:41000";

    // Every request arrives from the proxy; x-forwarded-for tells the attacker and the client apart.
    for _ in 0..10 {
        let reply = token_from(
            &app.router,
            ENVOY,
            &wrong,
            &[("x-forwarded-for", "203.0.113.66")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = token_from(
        &app.router,
        ENVOY,
        &right,
        &[("x-forwarded-for", "203.0.113.66")],
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker's address is locked"
    );
    let reply = token_from(
        &app.router,
        ENVOY,
        &right,
        &[("x-forwarded-for", "198.51.100.7")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    // The attacker prepends an address of its choice; the proxy appended the real one, which counts.
    let reply = token_from(
        &app.router,
        ENVOY,
        &right,
        &[("x-forwarded-for", "198.51.100.99, 203.0.113.66")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    // An untrusted peer's header is ignored: it is throttled under its own address.
    let reply = token_from(
        &app.router,
        "192.0.2.9:5",
        &right,
        &[("x-forwarded-for", "203.0.113.66")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
}

#[tokio::test]
async fn the_ceiling_refuses_failing_sources_but_not_the_client() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let client = web_client(&redis, P, "web").await;
    let wrong = basic("web", "not-the-secret");
    let right = basic("web", &client.client_secret);
    let ceiling = keymesh::oauth::throttle::CEILING.max_failures;
    // The failures of many sources, as an attacker with many addresses would leave them.
    redis::cmd("SET")
        .arg(format!("{P}authfail:client:web"))
        .arg(ceiling)
        .arg("EX")
        .arg(60)
        .query_async::<()>(&mut redis.conn().await)
        .await
        .unwrap();
    // A source that fails once more is refused at once; a fresh source still gets its answer; the client works.
    let reply = token_from(&app.router, ATTACKER, &wrong, &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = token_from(&app.router, ATTACKER, &wrong, &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "over the ceiling, one failure is enough"
    );
    let reply = token_from(&app.router, "203.0.113.70:1", &wrong, &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "a fresh source gets one try"
    );
    let reply = token_from(&app.router, LEGITIMATE, &right, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
}

#[tokio::test]
async fn ipv6_sources_are_one_source_per_64() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let client = web_client(&redis, P, "web").await;
    let wrong = basic("web", "not-the-secret");
    let right = basic("web", &client.client_secret);
    // Ten addresses of one /64 share one count.
    for i in 0..10 {
        let peer = format!("[2001:db8:0:1::{:x}]:443", i + 1);
        let reply = token_from(&app.router, &peer, &wrong, &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = token_from(&app.router, "[2001:db8:0:1::ffff]:443", &right, &[]).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let reply = token_from(&app.router, "[2001:db8:0:2::1]:443", &right, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
}

#[tokio::test]
async fn a_login_attacker_cannot_lock_out_the_user_from_another_source() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    web_client(&redis, P, "web").await;
    create_user(&redis, P, "alice").await;
    let request = AuthorizeRequest::new("web", WEB_CALLBACK, None);

    let mut attacker = Browser::new(&app.router);
    attacker.peer = Some(ATTACKER.into());
    let login = attacker.authorize(&request.query()).await;
    for _ in 0..10 {
        let wrong = attacker
            .submit(
                &login,
                "login",
                &[("username", "alice"), ("password", "guess-guess")],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::OK);
        assert!(text(&wrong).contains("Wrong username or password."));
    }
    let locked = attacker
        .submit(
            &login,
            "login",
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);

    // Alice, from her own address, logs in.
    let mut alice = Browser::new(&app.router);
    alice.peer = Some(LEGITIMATE.into());
    let page = alice.authorize(&request.query()).await;
    alice.log_in(&page, "alice").await;
}
