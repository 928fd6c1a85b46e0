//! `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662) against a real Redis, and revoked
//! access tokens reaching the bundle: full, delta, after a restart, and forgotten after they expire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use keymesh::oauth::clients::RegisteredClient;
use keymesh::oauth::revocation::REVOCATION_GRACE_SECS;
use serde_json::{json, Value};
use support::oauth::*;
use support::*;

const P: &str = "ri:";

async fn code_tokens(app: &TestApp, client: &RegisteredClient) -> Value {
    let mut browser = Browser::new(&app.router);
    let code = browser
        .code(
            &AuthorizeRequest::new(&client.client_id, WEB_CALLBACK, None),
            "alice",
        )
        .await;
    exchange(&app.router, client, &code, WEB_CALLBACK, None, "")
        .await
        .json()
}

async fn revoke(app: &TestApp, client: &RegisteredClient, token: &str) -> Reply {
    client_post(
        &app.router,
        "/oauth/revoke",
        client,
        &format!("token={}", form_urlencode(token)),
    )
    .await
}

async fn introspect(app: &TestApp, client: &RegisteredClient, token: &str) -> Value {
    let reply = client_post(
        &app.router,
        "/oauth/introspect",
        client,
        &format!("token={}", form_urlencode(token)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    reply.json()
}

fn access(response: &Value) -> String {
    response["access_token"].as_str().unwrap().to_owned()
}

fn jti_of(token: &str) -> String {
    claims(token)["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn introspection_answers_active_only_for_the_callers_live_tokens() {
    let redis = RedisServer::start();
    let (app, clock) = start_app_with_clock(&redis, P).await;
    let web = web_client(&redis, P, "web").await;
    let other = web_client(&redis, P, "other").await;
    let cli = native_client(&redis, P, "cli").await;
    create_user(&redis, P, "alice").await;
    let granted = code_tokens(&app, &web).await;
    let token = access(&granted);
    let refresh_token = granted["refresh_token"].as_str().unwrap().to_owned();

    let active = introspect(&app, &web, &token).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], "alice");
    assert_eq!(active["client_id"], "web");
    assert_eq!(active["aud"], json!([ORDERS, BILLING]));
    assert_eq!(active["scope"], "read write");
    assert_eq!(active["iss"], ISSUER);
    assert_eq!(active["exp"], NOW + 300);
    assert_eq!(active["jti"], jti_of(&token));
    let refresh_info = introspect(&app, &web, &refresh_token).await;
    assert_eq!(refresh_info["active"], true);
    assert_eq!(refresh_info["sub"], "alice");

    let inactive = json!({"active": false});
    // Another client's token, garbage, a tampered signature: exactly {"active":false}.
    assert_eq!(introspect(&app, &other, &token).await, inactive);
    assert_eq!(introspect(&app, &other, &refresh_token).await, inactive);
    assert_eq!(introspect(&app, &web, "garbage").await, inactive);
    let mut tampered = token.clone();
    tampered.push('A');
    assert_eq!(introspect(&app, &web, &tampered).await, inactive);

    // The caller must authenticate, as a confidential client.
    let reply = call(
        &app.router,
        "POST",
        "/oauth/introspect",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(&format!("token={token}")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = client_post(
        &app.router,
        "/oauth/introspect",
        &cli,
        &format!("token={token}"),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "public clients prove nothing"
    );

    // A rotated refresh token is inactive; the new one is active.
    let rotated = refresh(&app.router, &web, &refresh_token, "").await.json();
    assert_eq!(introspect(&app, &web, &refresh_token).await, inactive);
    let newer = rotated["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&app, &web, newer).await["active"], true);

    // Expired.
    clock.advance(300);
    assert_eq!(introspect(&app, &web, &token).await, inactive);
}

#[tokio::test]
async fn revoking_an_access_token_lists_it_in_the_bundle_until_it_expires() {
    let redis = RedisServer::start();
    let (app, clock) = start_app_with_clock(&redis, P).await;
    let web = web_client(&redis, P, "web").await;
    let other = web_client(&redis, P, "other").await;
    create_user(&redis, P, "alice").await;
    let machine = register(&redis, P, "machine", None, &[ORDERS], &["read"]).await;
    let granted = code_tokens(&app, &web).await;
    let token = access(&granted);
    let jti = jti_of(&token);

    // Unauthenticated → 401; unknown token → 200; another client's token → 200, and nothing happens.
    let reply = call(
        &app.router,
        "POST",
        "/oauth/revoke",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(&format!("token={token}")),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        revoke(&app, &web, "no-such-token").await.status,
        StatusCode::OK
    );
    assert_eq!(revoke(&app, &other, &token).await.status, StatusCode::OK);
    assert_eq!(introspect(&app, &web, &token).await["active"], true);
    let reply = client_post(
        &app.router,
        "/oauth/revoke",
        &web,
        "token_type_hint=access_token",
    )
    .await;
    assert_eq!(reply.json()["error"], "invalid_request", "no token");

    let before = app.state.mirror().snapshot().unwrap().version();
    let reply = revoke(&app, &web, &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        introspect(&app, &web, &token).await,
        json!({"active": false})
    );
    wait_revoked(&app, &jti).await;
    // The delta from before carries exactly this revocation; the full bundle lists it with its exp.
    let delta = bundle_of(
        &get(
            &app.router,
            "/v1/bundle",
            &[("if-none-match", &format!("\"{before}\""))],
        )
        .await,
    );
    assert_eq!(delta.since, Some(before));
    assert_eq!(delta.revoked_tokens.len(), 1);
    assert_eq!(delta.revoked_tokens[0].jti, jti);
    assert_eq!(
        delta.revoked_tokens[0].exp,
        i64::try_from(NOW + 300).unwrap()
    );
    // The change log entry the mirror applied.
    let mut conn = redis.conn().await;
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(format!("{P}changelog"))
        .arg(before + 1)
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].1,
        [
            "kind",
            "token_revoke",
            "jti",
            &jti,
            "exp",
            &(NOW + 300).to_string()
        ]
    );
    // Revoking again changes nothing.
    assert_eq!(revoke(&app, &web, &token).await.status, StatusCode::OK);
    assert_eq!(redis_version(&redis, P).await, before + 1);

    // Client credentials tokens can be revoked by their client too.
    let cc = post_token(
        &app.router,
        Some(&basic("machine", &machine.client_secret)),
        "grant_type=client_credentials",
    )
    .await;
    let cc = access(&cc.json());
    assert_eq!(revoke(&app, &machine, &cc).await.status, StatusCode::OK);
    wait_revoked(&app, &jti_of(&cc)).await;

    // A restarted sidecar finds the revocations with its full load; once the tokens are long expired they are
    // forgotten (and the markers expire in Redis by themselves).
    let restarted = start_app(&redis, P).await;
    let listed = revoked_in_bundle(&restarted.router).await;
    assert!(
        listed.contains(&jti) && listed.contains(&jti_of(&cc)),
        "{listed:?}"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{P}revoked:{jti}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 300 && ttl <= i64::try_from(300 + REVOCATION_GRACE_SECS).unwrap(),
        "{ttl}"
    );
    clock.advance(300 + REVOCATION_GRACE_SECS);
    let (later, _) = start_app_at(&redis, P, clock.now()).await;
    assert!(
        revoked_in_bundle(&later.router).await.is_empty(),
        "skipped by the full load"
    );
    // Any change makes the mirror forget what has lapsed.
    create_key(&redis, P, "someone", &[ORDERS]).await;
    let version = redis_version(&redis, P).await;
    mirrored(&app, version).await;
    assert!(!app.state.mirror().snapshot().unwrap().is_revoked(&jti));
    assert!(revoked_in_bundle(&app.router).await.is_empty());
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_family_and_their_access_tokens() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let web = web_client(&redis, P, "web").await;
    let other = web_client(&redis, P, "other").await;
    create_user(&redis, P, "alice").await;
    let first = code_tokens(&app, &web).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let second = refresh(&app.router, &web, &r1, "").await.json();
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    let unrelated = code_tokens(&app, &web).await;

    // Another client cannot.
    assert_eq!(revoke(&app, &other, &r2).await.status, StatusCode::OK);
    assert_eq!(introspect(&app, &web, &r2).await["active"], true);

    assert_eq!(revoke(&app, &web, &r2).await.status, StatusCode::OK);
    assert_eq!(
        refresh(&app.router, &web, &r2, "").await.json()["error"],
        "invalid_grant"
    );
    for response in [&first, &second] {
        let jti = jti_of(&access(response));
        wait_revoked(&app, &jti).await;
        assert_eq!(
            introspect(&app, &web, &access(response)).await["active"],
            false
        );
    }
    // Another grant of the same user and client is untouched.
    assert_eq!(
        introspect(&app, &web, &access(&unrelated)).await["active"],
        true
    );
    let still = refresh(
        &app.router,
        &web,
        unrelated["refresh_token"].as_str().unwrap(),
        "",
    )
    .await;
    assert_eq!(still.status, StatusCode::OK);
}
