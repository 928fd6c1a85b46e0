//! The authorization code grant at `POST /oauth/token` against a real Redis: one redemption per code, replay
//! revocation, PKCE, and the bindings to client, redirect URI, lifetime and resources.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::oauth::*;
use support::*;

const P: &str = "cg:";

#[tokio::test]
async fn a_code_is_redeemed_once_and_a_replay_revokes_what_it_issued() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let client = web_client(&redis, P, "web").await;
    create_user(&redis, P, "alice").await;
    let mut browser = Browser::new(&app.router);
    let mut request = AuthorizeRequest::new("web", WEB_CALLBACK, None);
    request.scope = Some("read write".into());
    let code = browser.code(&request, "alice").await;

    let reply = exchange(&app.router, &client, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let tokens = reply.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "read write");
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(
        refresh_token.len() >= 43 && !refresh_token.contains('.'),
        "opaque: {refresh_token}"
    );
    let access = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["sub"], "alice");
    assert_eq!(access["client_id"], "web");
    assert_eq!(access["aud"], json!([ORDERS, BILLING]));
    assert_eq!(access["scope"], "read write");
    assert_eq!(access["iss"], ISSUER);
    let jti = access["jti"].as_str().unwrap().to_owned();

    // The second redemption fails, and revokes the access token and refresh token of the first.
    let replay = exchange(&app.router, &client, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.json()["error"], "invalid_grant");
    wait_revoked(&app, &jti).await;
    assert!(revoked_in_bundle(&app.router).await.contains(&jti));
    let refreshed = refresh(&app.router, &client, &refresh_token, "").await;
    assert_eq!(refreshed.json()["error"], "invalid_grant");

    // A code never issued.
    let unknown = exchange(
        &app.router,
        &client,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        WEB_CALLBACK,
        None,
        "",
    )
    .await;
    assert_eq!(unknown.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn pkce_verifiers_are_required_checked_and_refused_without_a_challenge() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let web = web_client(&redis, P, "web").await;
    let cli = native_client(&redis, P, "cli").await;
    create_user(&redis, P, "alice").await;
    let mut browser = Browser::new(&app.router);
    let native_uri = "http://127.0.0.1:61000/callback";
    let (verifier, challenge) = pkce_pair();
    let (other_verifier, _) = pkce_pair();

    // (name, verifier sent, expected status, expected error); each attempt spends a fresh code.
    let cases: [(&str, Option<&str>, StatusCode, &str); 4] = [
        (
            "no verifier",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "another verifier",
            Some(&other_verifier),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            "too short",
            Some(&verifier[..42]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "bad character",
            Some("+".repeat(43).leak()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (name, sent, status, error) in cases {
        let code = browser
            .code(
                &AuthorizeRequest::new("cli", native_uri, Some(&challenge)),
                "alice",
            )
            .await;
        let reply = exchange(&app.router, &cli, &code, native_uri, sent, "").await;
        assert_eq!(reply.status, status, "{name}: {}", text(&reply));
        assert_eq!(reply.json()["error"], error, "{name}");
    }
    let code = browser
        .code(
            &AuthorizeRequest::new("cli", native_uri, Some(&challenge)),
            "alice",
        )
        .await;
    let ok = exchange(&app.router, &cli, &code, native_uri, Some(&verifier), "").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", text(&ok));
    assert_eq!(
        claims(ok.json()["access_token"].as_str().unwrap())["client_id"],
        "cli"
    );

    // A code issued without a challenge cannot be redeemed with a verifier (a code injection attempt).
    let code = browser
        .code(&AuthorizeRequest::new("web", WEB_CALLBACK, None), "alice")
        .await;
    let reply = exchange(&app.router, &web, &code, WEB_CALLBACK, Some(&verifier), "").await;
    assert_eq!(reply.json()["error"], "invalid_grant");
    // A confidential client may use PKCE too.
    let code = browser
        .code(
            &AuthorizeRequest::new("web", WEB_CALLBACK, Some(&challenge)),
            "alice",
        )
        .await;
    let reply = exchange(&app.router, &web, &code, WEB_CALLBACK, Some(&verifier), "").await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn codes_are_bound_to_client_redirect_uri_lifetime_and_resources() {
    let redis = RedisServer::start();
    let (app, clock) = start_app_with_clock(&redis, P).await;
    let web = web_client(&redis, P, "web").await;
    let other = web_client(&redis, P, "other").await;
    create_user(&redis, P, "alice").await;
    let mut browser = Browser::new(&app.router);
    let request = AuthorizeRequest::new("web", WEB_CALLBACK, None);

    let code = browser.code(&request, "alice").await;
    let reply = exchange(&app.router, &other, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(reply.json()["error"], "invalid_grant", "another client");
    // Another client holding the code did not burn it: it still works, once, for the client it was issued to.
    let reply = exchange(&app.router, &web, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    let reply = exchange(&app.router, &other, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(
        reply.json()["error"],
        "invalid_grant",
        "another client, after use"
    );
    let reply = exchange(&app.router, &web, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(reply.json()["error"], "invalid_grant", "the owner's replay");

    let code = browser.code(&request, "alice").await;
    let reply = exchange(
        &app.router,
        &web,
        &code,
        "https://app.test/callback/",
        None,
        "",
    )
    .await;
    assert_eq!(
        reply.json()["error"],
        "invalid_grant",
        "another redirect URI"
    );

    let code = browser.code(&request, "alice").await;
    let body = format!("grant_type=authorization_code&code={code}");
    let reply = client_post(&app.router, "/oauth/token", &web, &body).await;
    assert_eq!(
        reply.json()["error"],
        "invalid_grant",
        "redirect_uri left out"
    );

    let code = browser.code(&request, "alice").await;
    clock.advance(60);
    let reply = exchange(&app.router, &web, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(reply.json()["error"], "invalid_grant", "60 s later");

    let code = browser.code(&request, "alice").await;
    clock.advance(59);
    let extra = format!("&resource={}", form_urlencode(BILLING));
    let reply = exchange(&app.router, &web, &code, WEB_CALLBACK, None, &extra).await;
    assert_eq!(reply.status, StatusCode::OK, "59 s later: {}", text(&reply));
    assert_eq!(
        claims(reply.json()["access_token"].as_str().unwrap())["aud"],
        json!([BILLING])
    );

    // A resource outside what the user approved.
    let mut narrow = AuthorizeRequest::new("web", WEB_CALLBACK, None);
    narrow.resources = vec![ORDERS.into()];
    let code = browser.code(&narrow, "alice").await;
    let reply = exchange(&app.router, &web, &code, WEB_CALLBACK, None, &extra).await;
    assert_eq!(reply.json()["error"], "invalid_target");

    // Without redirect_uri in the request (one registered), the token request may leave it out.
    let mut implicit_uri = AuthorizeRequest::new("web", WEB_CALLBACK, None);
    implicit_uri.redirect_uri = None;
    let code = browser.code(&implicit_uri, "alice").await;
    let body = format!("grant_type=authorization_code&code={code}");
    let reply = client_post(&app.router, "/oauth/token", &web, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
}

#[tokio::test]
async fn clients_use_only_their_grant_types_and_authentication() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let cli = native_client(&redis, P, "cli").await;
    let machine = register(&redis, P, "machine", None, &[ORDERS], &["read"]).await;
    create_user(&redis, P, "alice").await;
    let mut browser = Browser::new(&app.router);

    // A public client cannot use client credentials, nor present a secret.
    let reply = client_post(
        &app.router,
        "/oauth/token",
        &cli,
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.json()["error"], "unauthorized_client");
    let reply = post_token(
        &app.router,
        Some(&basic("cli", "anything")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A confidential client cannot authenticate with its id alone.
    let reply = post_token(
        &app.router,
        None,
        "grant_type=client_credentials&client_id=machine",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // A client-credentials client has no authorization code grant.
    let (_, challenge) = pkce_pair();
    let code = browser
        .code(
            &AuthorizeRequest::new("cli", "http://127.0.0.1:9/callback", Some(&challenge)),
            "alice",
        )
        .await;
    let reply = exchange(
        &app.router,
        &machine,
        &code,
        "http://127.0.0.1:9/callback",
        None,
        "",
    )
    .await;
    assert_eq!(reply.json()["error"], "unauthorized_client");
    // The password grant does not exist.
    let reply = post_token(
        &app.router,
        Some(&basic("machine", &machine.client_secret)),
        "grant_type=password&username=alice&password=x",
    )
    .await;
    assert_eq!(reply.json()["error"], "unsupported_grant_type");
    // Missing code.
    let reply = client_post(
        &app.router,
        "/oauth/token",
        &cli,
        "grant_type=authorization_code",
    )
    .await;
    assert_eq!(reply.json()["error"], "invalid_request");
}
