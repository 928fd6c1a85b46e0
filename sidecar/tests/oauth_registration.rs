//! Dynamic client registration (RFC 7591) and its management (RFC 7592) against a real Redis: the policy refuses
//! what is outside it, registered clients get tokens only within its bounds, the registration access token
//! rotates on update, unused registrations expire, and deleting a registration revokes the client's tokens in
//! the bundle every proxy receives.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use keymesh::config::RegistrationSettings;
use keymesh::oauth::clients::RegisteredClient;
use keymesh::support::admin_token::AdminToken;
use serde_json::{json, Value};
use support::oauth::*;
use support::*;

const INITIAL: &str = "initial-access-token-for-registration-tests";

fn policy(anonymous: bool, initial: bool) -> RegistrationSettings {
    RegistrationSettings {
        initial_access_token: initial.then(|| AdminToken::new(INITIAL).unwrap()),
        anonymous,
        resources: vec![ORDERS.to_owned()],
        scopes: vec!["read".to_owned(), "write".to_owned()],
        rate_per_minute: 20,
        unused_ttl_secs: 600,
    }
}

async fn app_with(
    redis: &RedisServer,
    prefix: &str,
    registration: RegistrationSettings,
) -> TestApp {
    start_app_with(keymesh::Config {
        registration,
        ..config(redis, prefix)
    })
    .await
}

async fn register_json(app: &TestApp, bearer: Option<&str>, body: &Value) -> Reply {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    call(
        &app.router,
        "POST",
        "/oauth/register",
        &headers,
        Some(&body.to_string()),
    )
    .await
}

fn public_native(scope: Option<&str>) -> Value {
    let mut body = json!({
        "redirect_uris": [NATIVE_CALLBACK],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "Test tool",
        "client_uri": "https://ignored.example",
    });
    if let Some(scope) = scope {
        body["scope"] = scope.into();
    }
    body
}

fn as_client(info: &Value) -> RegisteredClient {
    RegisteredClient {
        client_id: info["client_id"].as_str().unwrap().to_owned(),
        client_secret: info["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        public: info["token_endpoint_auth_method"] == "none",
        resources: vec![],
        scopes: vec![],
        redirect_uris: vec![],
        grant_types: vec![],
        exchange_resources: vec![],
    }
}

fn config_path(info: &Value) -> String {
    let uri = info["registration_client_uri"].as_str().unwrap();
    uri.strip_prefix(ISSUER).unwrap().to_owned()
}

async fn manage(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Reply {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body = body.map(Value::to_string);
    call(&app.router, method, path, &headers, body.as_deref()).await
}

/// Code + PKCE for `client` with `extra` authorization parameters; returns the token response.
async fn tokens_for(
    app: &TestApp,
    client: &RegisteredClient,
    scope: Option<&str>,
    resource: Option<&str>,
) -> Reply {
    let (verifier, challenge) = pkce_pair();
    let mut request = AuthorizeRequest::new(&client.client_id, NATIVE_CALLBACK, Some(&challenge));
    request.scope = scope.map(str::to_owned);
    request.resources = resource.iter().map(|r| (*r).to_owned()).collect();
    let code = Browser::new(&app.router).code(&request, "alice").await;
    let extra = resource
        .map(|r| format!("&resource={}", form_urlencode(r)))
        .unwrap_or_default();
    exchange(
        &app.router,
        client,
        &code,
        NATIVE_CALLBACK,
        Some(&verifier),
        &extra,
    )
    .await
}

#[tokio::test]
async fn registration_is_off_by_default_and_not_advertised() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "reg0:").await;
    let reply = register_json(&app, None, &public_native(None)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let metadata = get(&app.router, "/.well-known/oauth-authorization-server", &[])
        .await
        .json();
    assert!(
        metadata.get("registration_endpoint").is_none(),
        "{metadata}"
    );
}

#[tokio::test]
async fn registration_outside_the_policy_is_refused_with_rfc7591_errors() {
    let redis = RedisServer::start();
    let app = app_with(&redis, "reg1:", policy(true, false)).await;
    let metadata = get(&app.router, "/.well-known/oauth-authorization-server", &[])
        .await
        .json();
    assert_eq!(
        metadata["registration_endpoint"],
        format!("{ISSUER}/oauth/register")
    );
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"redirect_uris": [NATIVE_CALLBACK]}),
            "invalid_client_metadata",
        ), // confidential by default
        (
            json!({"redirect_uris": [NATIVE_CALLBACK], "token_endpoint_auth_method": "client_secret_post"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["http://app.example/cb"], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["com.example.tool:/cb"], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [], "token_endpoint_auth_method": "none"}),
            "invalid_redirect_uri",
        ),
        (public_native(Some("read admin")), "invalid_client_metadata"),
        (
            json!({"redirect_uris": [NATIVE_CALLBACK], "token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": "not a list"}),
            "invalid_client_metadata",
        ),
    ];
    for (body, code) in cases {
        let reply = register_json(&app, None, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            text(&reply)
        );
        assert_eq!(reply.json()["error"], code, "{body}");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    let not_json = call(
        &app.router,
        "POST",
        "/oauth/register",
        &[("content-type", "text/plain")],
        Some("{}"),
    )
    .await;
    assert_eq!(not_json.json()["error"], "invalid_client_metadata");
    // A token where none is configured is a mistake or a guess, not an anonymous registration.
    let guessed = register_json(&app, Some("guess"), &public_native(None)).await;
    assert_eq!(guessed.status, StatusCode::UNAUTHORIZED);
    assert!(guessed
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    // Nothing of that was stored.
    let clients =
        keymesh::oauth::clients::ClientStore::new(keymesh::store::names::KeyNames::new("reg1:"));
    assert!(clients
        .list(&mut redis.conn().await)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_initial_access_token_is_required_when_anonymous_registration_is_off() {
    let redis = RedisServer::start();
    let app = app_with(&redis, "reg2:", policy(false, true)).await;
    let anonymous = register_json(&app, None, &public_native(None)).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let wrong = register_json(
        &app,
        Some("initial-access-token-for-registration-tesTs"),
        &public_native(None),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // With the token, a confidential client with a private-use redirect scheme is fine; its secret is shown once.
    let body = json!({"redirect_uris": ["com.example.tool:/cb"], "client_name": "Backend"});
    let reply = register_json(&app, Some(INITIAL), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", text(&reply));
    let info = reply.json();
    assert_eq!(info["token_endpoint_auth_method"], "client_secret_basic");
    assert!(info["client_secret"].as_str().unwrap().len() >= 43);
    assert_eq!(info["client_secret_expires_at"], 0);
    assert_eq!(info["resources"], json!([ORDERS]));
    assert_eq!(info["scope"], "read write");
    let stored =
        keymesh::oauth::clients::ClientStore::new(keymesh::store::names::KeyNames::new("reg2:"))
            .get(&mut redis.conn().await, info["client_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
    let json = serde_json::to_string(&stored).unwrap();
    assert!(
        !json.contains(info["client_secret"].as_str().unwrap()),
        "secret stored in clear"
    );
    assert!(
        !json.contains(info["registration_access_token"].as_str().unwrap()),
        "token stored in clear"
    );
}

#[tokio::test]
async fn a_registered_client_gets_tokens_only_within_the_policy_and_its_access_token_rotates() {
    let redis = RedisServer::start();
    let prefix = "reg3:";
    let app = app_with(&redis, prefix, policy(true, false)).await;
    create_user(&redis, prefix, "alice").await;
    let reply = register_json(&app, None, &public_native(Some("read"))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", text(&reply));
    let info = reply.json();
    assert!(info.get("client_secret").is_none());
    assert_eq!(
        info["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    let client = as_client(&info);
    let key = format!("{prefix}client:{}", client.client_id);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(
        (1..=600).contains(&ttl),
        "an unused registration expires: ttl {ttl}"
    );

    // Within bounds: the policy's resource, the registered scope.
    let reply = tokens_for(&app, &client, Some("read"), Some(ORDERS)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    let access = claims(reply.json()["access_token"].as_str().unwrap());
    assert_eq!(access["aud"], json!([ORDERS]));
    assert_eq!(access["scope"], "read");
    assert_eq!(access["client_id"], client.client_id.as_str());
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "a client that obtained a token no longer expires");
    // Outside: a scope the registration does not have, a resource the policy does not list.
    let (_, challenge) = pkce_pair();
    let mut request = AuthorizeRequest::new(&client.client_id, NATIVE_CALLBACK, Some(&challenge));
    request.scope = Some("write".into());
    let page = Browser::new(&app.router).authorize(&request.query()).await;
    let location = page.header("location").unwrap_or_default().to_owned();
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("invalid_scope"),
        "{location}"
    );
    request.scope = Some("read".into());
    request.resources = vec![BILLING.into()];
    let page = Browser::new(&app.router).authorize(&request.query()).await;
    let location = page.header("location").unwrap_or_default().to_owned();
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("invalid_target"),
        "{location}"
    );

    // RFC 7592: read with the token; update rotates it and the old one stops at once.
    let path = config_path(&info);
    let first = info["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = manage(&app, "GET", &path, &first, None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", text(&read));
    assert_eq!(read.json()["client_id"], client.client_id.as_str());
    assert_eq!(
        manage(&app, "GET", &path, "wrong", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut update = public_native(Some("read write"));
    update["client_id"] = client.client_id.clone().into();
    update["client_name"] = "Renamed tool".into();
    let updated = manage(&app, "PUT", &path, &first, Some(&update)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", text(&updated));
    let second = updated.json()["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(updated.json()["scope"], "read write");
    assert_eq!(
        manage(&app, "GET", &path, &first, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        manage(&app, "GET", &path, &second, None).await.json()["client_name"],
        "Renamed tool"
    );
    // An update cannot leave the policy either, nor rename another client.
    let mut outside = update.clone();
    outside["redirect_uris"] = json!(["http://evil.example/cb"]);
    assert_eq!(
        manage(&app, "PUT", &path, &second, Some(&outside))
            .await
            .json()["error"],
        "invalid_redirect_uri"
    );
    let mut other = update.clone();
    other["client_id"] = "someone-else".into();
    assert_eq!(
        manage(&app, "PUT", &path, &second, Some(&other))
            .await
            .json()["error"],
        "invalid_client_metadata"
    );
    // Another client's token does not open this configuration.
    let stranger = register_json(&app, None, &public_native(None)).await.json();
    let stranger_token = stranger["registration_access_token"].as_str().unwrap();
    assert_eq!(
        manage(&app, "GET", &path, stranger_token, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn deleting_a_registration_revokes_the_clients_access_and_refresh_tokens() {
    let redis = RedisServer::start();
    let prefix = "reg4:";
    let app = app_with(&redis, prefix, policy(true, false)).await;
    create_user(&redis, prefix, "alice").await;
    let info = register_json(&app, None, &public_native(None)).await.json();
    let client = as_client(&info);
    let tokens = tokens_for(&app, &client, None, None).await.json();
    let jti = claims(tokens["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let rotated = refresh(&app.router, &client, &refresh_token, "")
        .await
        .json();
    let second_jti = claims(rotated["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned();

    let path = config_path(&info);
    let token = info["registration_access_token"].as_str().unwrap();
    let deleted = manage(&app, "DELETE", &path, token, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", text(&deleted));
    wait_revoked(&app, &jti).await;
    wait_revoked(&app, &second_jti).await;
    let revoked = revoked_in_bundle(&app.router).await;
    assert!(
        revoked.contains(&jti) && revoked.contains(&second_jti),
        "{revoked:?}"
    );
    let refused = refresh(
        &app.router,
        &client,
        rotated["refresh_token"].as_str().unwrap(),
        "",
    )
    .await;
    assert!(refused.status.is_client_error(), "{}", text(&refused));
    assert_eq!(
        manage(&app, "GET", &path, token, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        manage(&app, "DELETE", &path, token, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn registrations_are_rate_limited_per_source() {
    let redis = RedisServer::start();
    let app = app_with(
        &redis,
        "reg5:",
        RegistrationSettings {
            rate_per_minute: 2,
            ..policy(true, false)
        },
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            register_json(&app, None, &public_native(None)).await.status,
            StatusCode::CREATED
        );
    }
    let limited = register_json(&app, None, &public_native(None)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("retry-after").is_some());
}

#[tokio::test]
async fn the_client_list_shows_how_each_client_was_created() {
    let redis = RedisServer::start();
    let prefix = "reg6:";
    let app = app_with(&redis, prefix, policy(true, true)).await;
    web_client(&redis, prefix, "by-operator").await;
    let anon = register_json(&app, None, &public_native(None)).await.json();
    let mut out = Vec::new();
    keymesh::cli::run_client(
        &app.config,
        keymesh::cli::ClientCommand::List { json: true },
        &keymesh::Clock::fixed(NOW),
        &mut out,
    )
    .await
    .unwrap();
    let listed: Vec<Value> = serde_json::from_slice(&out).unwrap();
    let by = |id: &str| listed.iter().find(|c| c["client_id"] == id).unwrap()["created_by"].clone();
    assert_eq!(by("by-operator"), "operator");
    assert_eq!(
        by(anon["client_id"].as_str().unwrap()),
        "registered (anonymous)"
    );
}
