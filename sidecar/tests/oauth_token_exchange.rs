//! RFC 8693 token exchange at `POST /oauth/token` against a real Redis: the exchanged token's claims, the client
//! policy, narrowing, and the attacks (expired, revoked, forged subject tokens; clients without rights; scope
//! widening; targets outside the policy; outliving the subject token). Revoking a subject token revokes what was
//! exchanged from it, down the chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use keymesh::oauth::clients::{ClientError, ClientStore, GrantType, NewClient, RegisteredClient};
use keymesh::store::names::KeyNames;
use serde_json::json;
use support::oauth::*;
use support::*;

const P: &str = "tx:";
const PAYMENTS: &str = "https://payments.test";
const LEDGER: &str = "https://ledger.test";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A user's token from the web client: aud orders and billing, scopes read and write, exp NOW + 300.
async fn user_token(app: &TestApp, web: &RegisteredClient) -> String {
    let mut browser = Browser::new(&app.router);
    let code = browser
        .code(
            &AuthorizeRequest::new(&web.client_id, WEB_CALLBACK, None),
            "alice",
        )
        .await;
    let reply = exchange(&app.router, web, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

/// A workload client that may exchange for `targets`, requesting `read` only.
async fn workload(redis: &RedisServer, id: &str, targets: &[&str]) -> RegisteredClient {
    register_client(
        redis,
        P,
        NewClient {
            client_id: id.into(),
            resources: vec![ORDERS.into()],
            scopes: vec!["read".into()],
            exchange_resources: targets.iter().map(|t| (*t).to_owned()).collect(),
            ..NewClient::default()
        },
    )
    .await
}

async fn setup() -> (RedisServer, TestApp, TestClock, RegisteredClient, String) {
    let redis = RedisServer::start();
    let (app, clock) = start_app_with_clock(&redis, P).await;
    let web = web_client(&redis, P, "web").await;
    create_user(&redis, P, "alice").await;
    let token = user_token(&app, &web).await;
    (redis, app, clock, web, token)
}

async fn exchange_token(
    app: &TestApp,
    client: &RegisteredClient,
    subject: &str,
    extra: &str,
) -> Reply {
    let body = format!(
        "grant_type={}&subject_token={}&subject_token_type={}{extra}",
        form_urlencode(GRANT),
        form_urlencode(subject),
        form_urlencode(ACCESS)
    );
    client_post(&app.router, "/oauth/token", client, &body).await
}

fn resource(uri: &str) -> String {
    format!("&resource={}", form_urlencode(uri))
}

fn error_of(reply: &Reply) -> (StatusCode, String) {
    (
        reply.status,
        reply.json()["error"].as_str().unwrap_or("").to_owned(),
    )
}

fn bad(code: &str) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, code.to_owned())
}

#[tokio::test]
async fn exchanged_token_is_about_the_user_with_the_client_as_actor() {
    let (redis, app, _clock, _web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS]).await;
    let reply = exchange_token(&app, &orders, &user, &resource(PAYMENTS)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["issued_token_type"], ACCESS);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = body["access_token"].as_str().unwrap();
    let exchanged = claims(token);
    assert_eq!(exchanged["sub"], "alice");
    assert_eq!(exchanged["client_id"], "orders");
    assert_eq!(exchanged["act"], json!({"sub": "orders"}));
    assert_eq!(exchanged["aud"], json!([PAYMENTS]));
    assert_eq!(exchanged["scope"], "read");
    assert_eq!(exchanged["iss"], ISSUER);
    assert!(exchanged["exp"].as_u64().unwrap() <= claims(&user)["exp"].as_u64().unwrap());

    // The filters' verifier accepts it for payments, and reads the actor.
    let keys = app.state.mirror().snapshot().unwrap();
    let verified = keymesh_core::policy::verify_jwt(
        token,
        keys.own_keys().unwrap(),
        Some(&[ISSUER.to_owned()]),
        0,
        NOW as i64,
    )
    .unwrap();
    assert_eq!(verified.actor(), Some("orders"));

    // Exchanging the exchanged token nests the earlier actor.
    let ledger = workload(&redis, "payments-svc", &[LEDGER]).await;
    let nested = exchange_token(&app, &ledger, token, &resource(LEDGER)).await;
    assert_eq!(nested.status, StatusCode::OK, "{}", text(&nested));
    let nested = claims(nested.json()["access_token"].as_str().unwrap());
    assert_eq!(nested["sub"], "alice");
    assert_eq!(
        nested["act"],
        json!({"sub": "payments-svc", "act": {"sub": "orders"}})
    );
}

#[tokio::test]
async fn audience_parameter_selects_targets_like_resource() {
    let (redis, app, _clock, _web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS, LEDGER]).await;
    let reply = exchange_token(
        &app,
        &orders,
        &user,
        &format!("&audience={}", form_urlencode(LEDGER)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    assert_eq!(
        claims(reply.json()["access_token"].as_str().unwrap())["aud"],
        json!([LEDGER])
    );
    // Without a target: every exchange resource of the client.
    let all = exchange_token(&app, &orders, &user, "").await;
    assert_eq!(
        claims(all.json()["access_token"].as_str().unwrap())["aud"],
        json!([PAYMENTS, LEDGER])
    );
}

#[tokio::test]
async fn a_client_without_exchange_rights_is_unauthorized() {
    let (redis, app, _clock, web, user) = setup().await;
    // The web client received the token itself, but has no exchange policy.
    let reply = exchange_token(&app, &web, &user, &resource(PAYMENTS)).await;
    assert_eq!(error_of(&reply), bad("unauthorized_client"));
    let plain = register_client(
        &redis,
        P,
        NewClient {
            client_id: "plain".into(),
            resources: vec![PAYMENTS.into()],
            scopes: vec!["read".into()],
            ..NewClient::default()
        },
    )
    .await;
    assert!(!plain.grant_types.contains(&GrantType::TokenExchange));
    let reply = exchange_token(&app, &plain, &user, &resource(PAYMENTS)).await;
    assert_eq!(error_of(&reply), bad("unauthorized_client"));
}

#[tokio::test]
async fn scopes_are_never_widened() {
    let (redis, app, _clock, _web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS]).await;
    // The subject holds write, the client may not request it.
    let reply = exchange_token(
        &app,
        &orders,
        &user,
        &format!("{}&scope=write", resource(PAYMENTS)),
    )
    .await;
    assert_eq!(error_of(&reply), bad("invalid_scope"));
    // Neither holds admin.
    let reply = exchange_token(
        &app,
        &orders,
        &user,
        &format!("{}&scope=read+admin", resource(PAYMENTS)),
    )
    .await;
    assert_eq!(error_of(&reply), bad("invalid_scope"));
    // A client that may request admin still cannot get it from a subject token without it.
    let admin = register_client(
        &redis,
        P,
        NewClient {
            client_id: "admin-svc".into(),
            resources: vec![ORDERS.into()],
            scopes: vec!["admin".into(), "read".into()],
            exchange_resources: vec![PAYMENTS.into()],
            ..NewClient::default()
        },
    )
    .await;
    let reply = exchange_token(
        &app,
        &admin,
        &user,
        &format!("{}&scope=admin", resource(PAYMENTS)),
    )
    .await;
    assert_eq!(error_of(&reply), bad("invalid_scope"));
}

#[tokio::test]
async fn targets_outside_the_policy_are_invalid_target() {
    let (redis, app, _clock, _web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS]).await;
    for extra in [
        resource(LEDGER),
        resource(ORDERS), // the client's own resources are not exchange targets
        format!("{}{}", resource(PAYMENTS), resource(LEDGER)),
        format!("&audience={}", form_urlencode(LEDGER)),
        "&audience=payments".to_owned(),
    ] {
        let reply = exchange_token(&app, &orders, &user, &extra).await;
        assert_eq!(error_of(&reply), bad("invalid_target"), "{extra}");
    }
}

#[tokio::test]
async fn exchanged_tokens_never_outlive_the_subject() {
    let (redis, app, clock, _web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS]).await;
    let subject_exp = claims(&user)["exp"].as_u64().unwrap();
    clock.advance(subject_exp - NOW - 10);
    let reply = exchange_token(&app, &orders, &user, &resource(PAYMENTS)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    let body = reply.json();
    assert_eq!(body["expires_in"], 10);
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["exp"],
        subject_exp
    );
    // Once the subject token has expired, it is refused: no leeway.
    clock.advance(10);
    let reply = exchange_token(&app, &orders, &user, &resource(PAYMENTS)).await;
    assert_eq!(error_of(&reply), bad("invalid_request"));
    assert!(text(&reply).contains("subject_token"), "{}", text(&reply));
}

#[tokio::test]
async fn forged_and_malformed_subject_tokens_are_refused() {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let (redis, app, _clock, _web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS]).await;
    let parts: Vec<&str> = user.split('.').collect();
    let mut widened = claims(&user);
    widened["scope"] = json!("read write admin");
    let forged_payload = Base64UrlUnpadded::encode_string(widened.to_string().as_bytes());
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    let unsigned = format!(
        "{}.{}.",
        Base64UrlUnpadded::encode_string(br#"{"alg":"none","typ":"at+jwt"}"#),
        parts[1]
    );
    // A token of an unregistered issuer.
    let mut foreign = claims(&user);
    foreign["iss"] = json!("https://evil.test");
    let foreign = format!(
        "{}.{}.{}",
        parts[0],
        Base64UrlUnpadded::encode_string(foreign.to_string().as_bytes()),
        parts[2]
    );
    for subject in [forged.as_str(), &unsigned, &foreign, "not-a-jwt", "a.b.c"] {
        let reply = exchange_token(&app, &orders, subject, &resource(PAYMENTS)).await;
        assert_eq!(error_of(&reply), bad("invalid_request"), "{subject}");
    }
}

#[tokio::test]
async fn malformed_exchange_requests_are_invalid_request() {
    let (redis, app, _clock, _web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS]).await;
    let grant = form_urlencode(GRANT);
    let token = form_urlencode(&user);
    for body in [
        format!("grant_type={grant}&subject_token_type={}", form_urlencode(ACCESS)),
        format!("grant_type={grant}&subject_token={token}"),
        format!("grant_type={grant}&subject_token={token}&subject_token_type=urn:ietf:params:oauth:token-type:id_token"),
        format!(
            "grant_type={grant}&subject_token={token}&subject_token_type={}&requested_token_type=urn:ietf:params:oauth:token-type:refresh_token",
            form_urlencode(ACCESS)
        ),
        format!(
            "grant_type={grant}&subject_token={token}&subject_token_type={}&actor_token={token}&actor_token_type={}",
            form_urlencode(ACCESS),
            form_urlencode(ACCESS)
        ),
    ] {
        let reply = client_post(&app.router, "/oauth/token", &orders, &body).await;
        assert_eq!(error_of(&reply), bad("invalid_request"), "{body}");
    }
}

#[tokio::test]
async fn revoking_the_subject_token_revokes_the_exchanged_chain() {
    let (redis, app, _clock, web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS]).await;
    let ledger = workload(&redis, "payments-svc", &[LEDGER]).await;
    let first = exchange_token(&app, &orders, &user, &resource(PAYMENTS))
        .await
        .json();
    let first = first["access_token"].as_str().unwrap().to_owned();
    let second = exchange_token(&app, &ledger, &first, &resource(LEDGER))
        .await
        .json();
    let second = second["access_token"].as_str().unwrap().to_owned();

    let reply = client_post(
        &app.router,
        "/oauth/revoke",
        &web,
        &format!("token={}", form_urlencode(&user)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    for token in [&user, &first, &second] {
        wait_revoked(&app, claims(token)["jti"].as_str().unwrap()).await;
    }
    // Neither the user's token nor an exchanged one can be exchanged any more.
    for (client, subject, target) in [(&orders, &user, PAYMENTS), (&ledger, &first, LEDGER)] {
        let reply = exchange_token(&app, client, subject, &resource(target)).await;
        assert_eq!(error_of(&reply), bad("invalid_request"));
    }
}

#[tokio::test]
async fn revoking_an_exchanged_token_revokes_its_own_descendants_only() {
    let (redis, app, _clock, _web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS]).await;
    let ledger = workload(&redis, "payments-svc", &[LEDGER]).await;
    let first = exchange_token(&app, &orders, &user, &resource(PAYMENTS))
        .await
        .json();
    let first = first["access_token"].as_str().unwrap().to_owned();
    let second = exchange_token(&app, &ledger, &first, &resource(LEDGER))
        .await
        .json();
    let second = second["access_token"].as_str().unwrap().to_owned();
    // orders revokes the token it was issued.
    let reply = client_post(
        &app.router,
        "/oauth/revoke",
        &orders,
        &format!("token={}", form_urlencode(&first)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    wait_revoked(&app, claims(&second)["jti"].as_str().unwrap()).await;
    let snapshot = app.state.mirror().snapshot().unwrap();
    assert!(!snapshot.is_revoked(claims(&user)["jti"].as_str().unwrap()));
    // The user's token still exchanges.
    let again = exchange_token(&app, &orders, &user, &resource(PAYMENTS)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", text(&again));
}

#[tokio::test]
async fn revoking_a_middle_token_revokes_every_token_below_it() {
    const AUDIT: &str = "https://audit.test";
    let (redis, app, _clock, _web, user) = setup().await;
    let orders = workload(&redis, "orders", &[PAYMENTS]).await;
    let payments = workload(&redis, "payments-svc", &[LEDGER]).await;
    let ledger = workload(&redis, "ledger-svc", &[AUDIT]).await;
    let audit = workload(&redis, "audit-svc", &[ORDERS]).await;
    // user -> first (orders) -> second (payments) -> third (ledger): four tokens, three exchanges deep.
    let mut chain = vec![user.clone()];
    for (client, target) in [(&orders, PAYMENTS), (&payments, LEDGER), (&ledger, AUDIT)] {
        let reply = exchange_token(&app, client, chain.last().unwrap(), &resource(target)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
        chain.push(reply.json()["access_token"].as_str().unwrap().to_owned());
    }
    let jti = |token: &str| claims(token)["jti"].as_str().unwrap().to_owned();
    let reply = client_post(
        &app.router,
        "/oauth/revoke",
        &orders,
        &format!("token={}", form_urlencode(&chain[1])),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    // The revoked token and both tokens below it, not the user's above it.
    for token in &chain[1..] {
        wait_revoked(&app, &jti(token)).await;
    }
    let snapshot = app.state.mirror().snapshot().unwrap();
    assert!(!snapshot.is_revoked(&jti(&user)));
    // The deepest token can no longer be exchanged further.
    let reply = exchange_token(&app, &audit, &chain[3], &resource(ORDERS)).await;
    assert_eq!(error_of(&reply), bad("invalid_request"));
}

#[tokio::test]
async fn metadata_lists_the_grant_and_registration_enforces_the_policy() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    let metadata = get(&app.router, "/.well-known/oauth-authorization-server", &[])
        .await
        .json();
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(GRANT)),
        "{metadata}"
    );
    let store = ClientStore::new(KeyNames::new(P));
    let mut conn = redis.conn().await;
    let registered = store
        .register(
            &mut conn,
            NewClient {
                client_id: "orders".into(),
                resources: vec![ORDERS.into()],
                exchange_resources: vec![PAYMENTS.into()],
                ..NewClient::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(registered.grant_types.contains(&GrantType::TokenExchange));
    assert!(registered
        .grant_types
        .contains(&GrantType::ClientCredentials));
    assert_eq!(registered.exchange_resources, [PAYMENTS]);
    for (new, expected) in [
        (
            NewClient {
                client_id: "no-targets".into(),
                resources: vec![ORDERS.into()],
                grant_types: vec![GrantType::TokenExchange],
                ..NewClient::default()
            },
            "exchange",
        ),
        (
            NewClient {
                client_id: "public".into(),
                public: true,
                resources: vec![ORDERS.into()],
                redirect_uris: vec![NATIVE_CALLBACK.into()],
                exchange_resources: vec![PAYMENTS.into()],
                ..NewClient::default()
            },
            "exchange",
        ),
        (
            NewClient {
                client_id: "bad-target".into(),
                resources: vec![ORDERS.into()],
                exchange_resources: vec!["payments".into()],
                ..NewClient::default()
            },
            "resource",
        ),
    ] {
        let error = store.register(&mut conn, new, NOW).await.unwrap_err();
        assert!(
            matches!(
                (&error, expected),
                (ClientError::ExchangeWithoutResources, "exchange")
                    | (ClientError::InvalidResource(_), "resource")
            ),
            "{error}"
        );
    }
}
