//! The refresh token grant against a real Redis: rotation, reuse detection revoking the family, narrowing of scope
//! and resources, client binding, expiry, and storage of hashes only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use keymesh::oauth::digest;
use serde_json::{json, Value};
use support::oauth::*;
use support::*;

const P: &str = "rf:";

/// Logs alice in for `client`, redeems the code; returns the token response.
async fn tokens(app: &TestApp, client: &keymesh::oauth::clients::RegisteredClient) -> Value {
    let mut browser = Browser::new(&app.router);
    let code = browser
        .code(
            &AuthorizeRequest::new(&client.client_id, WEB_CALLBACK, None),
            "alice",
        )
        .await;
    let reply = exchange(&app.router, client, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    reply.json()
}

fn jti(response: &Value) -> String {
    claims(response["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let client = web_client(&redis, P, "web").await;
    create_user(&redis, P, "alice").await;
    let first = tokens(&app, &client).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();

    let second = refresh(&app.router, &client, &r1, "").await;
    assert_eq!(second.status, StatusCode::OK, "{}", text(&second));
    let second = second.json();
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated");
    assert_eq!(
        claims(second["access_token"].as_str().unwrap())["sub"],
        "alice"
    );
    let third = refresh(&app.router, &client, &r2, "").await.json();
    let r3 = third["refresh_token"].as_str().unwrap().to_owned();

    // r1 was rotated away: presenting it again means it leaked. The whole family goes, access tokens included.
    let reuse = refresh(&app.router, &client, &r1, "").await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    for token in [&r2, &r3] {
        assert_eq!(
            refresh(&app.router, &client, token, "").await.json()["error"],
            "invalid_grant"
        );
    }
    for response in [&first, &second, &third] {
        wait_revoked(&app, &jti(response)).await;
    }
    let listed = revoked_in_bundle(&app.router).await;
    for response in [&first, &second, &third] {
        assert!(listed.contains(&jti(response)));
    }
}

#[tokio::test]
async fn scope_and_resources_can_be_narrowed_never_widened() {
    let redis = RedisServer::start();
    let (app, clock) = start_app_with_clock(&redis, P).await;
    let client = web_client(&redis, P, "web").await;
    let other = web_client(&redis, P, "other").await;
    create_user(&redis, P, "alice").await;
    let mut browser = Browser::new(&app.router);
    let mut request = AuthorizeRequest::new("web", WEB_CALLBACK, None);
    request.scope = Some("read".into());
    let code = browser.code(&request, "alice").await;
    let granted = exchange(&app.router, &client, &code, WEB_CALLBACK, None, "")
        .await
        .json();
    let mut token = granted["refresh_token"].as_str().unwrap().to_owned();

    // Wider scope than granted: refused, and the token stays usable.
    let reply = refresh(&app.router, &client, &token, "&scope=read+write").await;
    assert_eq!(reply.json()["error"], "invalid_scope");
    let reply = refresh(
        &app.router,
        &client,
        &token,
        "&resource=https%3A%2F%2Felsewhere.test",
    )
    .await;
    assert_eq!(reply.json()["error"], "invalid_target");
    // Another client cannot use it.
    let reply = refresh(&app.router, &other, &token, "").await;
    assert_eq!(reply.json()["error"], "invalid_grant");

    // A narrower access token: one API.
    let extra = format!("&scope=read&resource={}", form_urlencode(ORDERS));
    let narrow = refresh(&app.router, &client, &token, &extra).await;
    assert_eq!(narrow.status, StatusCode::OK, "{}", text(&narrow));
    let narrow = narrow.json();
    assert_eq!(narrow["scope"], "read");
    assert_eq!(
        claims(narrow["access_token"].as_str().unwrap())["aud"],
        json!([ORDERS])
    );
    token = narrow["refresh_token"].as_str().unwrap().to_owned();
    // The grant is unchanged: the next refresh may ask for both APIs again.
    let wide = refresh(&app.router, &client, &token, "").await.json();
    assert_eq!(
        claims(wide["access_token"].as_str().unwrap())["aud"],
        json!([ORDERS, BILLING])
    );
    token = wide["refresh_token"].as_str().unwrap().to_owned();

    // The grant expires 30 days after consent, however often it is refreshed.
    clock.advance(30 * 86_400);
    let reply = refresh(&app.router, &client, &token, "").await;
    assert_eq!(reply.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_hashed_and_die_with_their_user() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let client = web_client(&redis, P, "web").await;
    create_user(&redis, P, "alice").await;
    let granted = tokens(&app, &client).await;
    let token = granted["refresh_token"].as_str().unwrap().to_owned();

    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("rf:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.contains(&format!("rf:refresh:{}", digest(&token))),
        "{keys:?}"
    );
    for key in &keys {
        assert!(!key.contains(&token), "{key}");
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let dump: String = match kind.as_str() {
            "string" => redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "hash" => format!(
                "{:?}",
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
                    .unwrap()
            ),
            _ => String::new(),
        };
        assert!(!dump.contains(&token), "{key}: {dump}");
    }

    redis::cmd("DEL")
        .arg("rf:user:alice")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let reply = refresh(&app.router, &client, &token, "").await;
    assert_eq!(reply.json()["error"], "invalid_grant", "the user is gone");
}
