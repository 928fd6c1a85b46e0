//! The admin API through the router: authentication, the key lifecycle, and validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use keymesh::support::admin_token::AdminToken;
use keymesh_core::apikey::{hash_key, is_well_formed, public_prefix};
use serde_json::{json, Value};
use support::*;

const ORDERS: &str = "https://orders.test";
const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

async fn admin_app(redis: &RedisServer, prefix: &str) -> TestApp {
    let mut config = config(redis, prefix);
    config.admin_token = Some(AdminToken::new(ADMIN_TOKEN).unwrap());
    start_app_with(config).await
}

const BEARER: &str = "Bearer test-admin-token-0123456789abcdef";

async fn admin(
    app: &TestApp,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    let body = body.map(|b| b.to_string());
    call(&app.router, method, path, &headers, body.as_deref()).await
}

/// One request to each admin endpoint.
fn endpoints() -> Vec<(&'static str, &'static str, Option<Value>)> {
    let body = json!({"owner": "alice", "label": "x", "resources": [ORDERS]});
    vec![
        ("POST", "/v1/admin/apikeys", Some(body)),
        ("GET", "/v1/admin/apikeys?owner=alice", None),
        ("DELETE", "/v1/admin/apikeys/ak_abc", None),
        ("POST", "/v1/admin/apikeys/ak_abc/regenerate", None),
    ]
}

#[tokio::test]
async fn the_admin_api_is_forbidden_without_a_configured_token() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "off:").await;
    for (method, path, body) in endpoints() {
        for authorization in [None, Some(BEARER)] {
            let reply = admin(&app, method, path, authorization, body.clone()).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(reply.json(), json!({"error": "admin_api_disabled"}));
        }
    }
}

#[tokio::test]
async fn the_admin_api_requires_the_admin_token() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, "auth:").await;
    let wrong = format!("{BEARER}x");
    let cases: [(Option<&str>, &str); 5] = [
        (None, "unauthorized"),
        (Some("Basic dGVzdDp0ZXN0"), "unauthorized"),
        (Some("Bearer"), "unauthorized"),
        (Some(wrong.as_str()), "invalid_token"),
        (Some("Bearer test-admin-token"), "invalid_token"),
    ];
    for (method, path, body) in endpoints() {
        for (authorization, error) in cases {
            let reply = admin(&app, method, path, authorization, body.clone()).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {authorization:?}"
            );
            assert!(reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer realm=\"keymesh-admin\""));
            assert_eq!(reply.json()["error"], error);
        }
    }
    // Nothing was created by the refused requests.
    let stored: Vec<String> = redis::cmd("KEYS")
        .arg("auth:apikey*")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    // Scheme names are case-insensitive (RFC 9110 §11.1).
    let lower = BEARER.replacen("Bearer", "bearer", 1);
    let reply = admin(
        &app,
        "GET",
        "/v1/admin/apikeys?owner=alice",
        Some(&lower),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn the_admin_api_manages_keys() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, "adm:").await;
    let body = json!({
        "owner": "alice", "label": "portal key", "resources": [ORDERS], "scopes": ["read"],
        "expires_in_secs": 3600, "tier": "pro"
    });
    let created = admin(&app, "POST", "/v1/admin/apikeys", Some(BEARER), Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let created = created.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(is_well_formed(&key));
    assert_eq!(created["owner"], "alice");
    assert_eq!(created["label"], "portal key");
    assert_eq!(created["created_at"], NOW);
    assert_eq!(created["expires_at"], NOW + 3600);
    assert_eq!(created["tier"], "pro");

    // The running sidecar serves it to the filters by hash.
    let hash = hash_key(&key);
    let served = eventually(Duration::from_secs(2), || async {
        app.state.mirror().snapshot()?.api_key(&hash).cloned()
    })
    .await
    .expect("new key mirrored");
    assert_eq!(served.id, id);
    assert_eq!(served.expires_at, Some(i64::try_from(NOW + 3600).unwrap()));
    assert_eq!(
        served.tier.as_deref(),
        Some("pro"),
        "the filters get the tier"
    );

    let listed = admin(
        &app,
        "GET",
        "/v1/admin/apikeys?owner=alice",
        Some(BEARER),
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&listed.body).into_owned();
    assert!(!text.contains(&key) && !text.contains(&hash), "{text}");
    let listed = listed.json();
    assert_eq!(listed["api_keys"].as_array().unwrap().len(), 1);
    assert_eq!(listed["api_keys"][0]["id"], id.as_str());
    assert_eq!(listed["api_keys"][0]["tier"], "pro");
    assert_eq!(
        listed["api_keys"][0]["prefix"],
        public_prefix(&key).as_str()
    );
    let other = admin(
        &app,
        "GET",
        "/v1/admin/apikeys?owner=bob",
        Some(BEARER),
        None,
    )
    .await;
    assert_eq!(other.json(), json!({"api_keys": []}));

    let path = format!("/v1/admin/apikeys/{id}/regenerate");
    let regenerated = admin(&app, "POST", &path, Some(BEARER), None).await;
    assert_eq!(regenerated.status, StatusCode::OK);
    assert_eq!(regenerated.header("cache-control"), Some("no-store"));
    let regenerated = regenerated.json();
    let new_key = regenerated["key"].as_str().unwrap();
    assert_ne!(new_key, key);
    assert_eq!(regenerated["id"], id.as_str());
    assert_eq!(regenerated["expires_at"], NOW + 3600);

    let path = format!("/v1/admin/apikeys/{id}");
    let deleted = admin(&app, "DELETE", &path, Some(BEARER), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());
    let again = admin(&app, "DELETE", &path, Some(BEARER), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.json(), json!({"error": "not_found"}));
    let path = format!("/v1/admin/apikeys/{id}/regenerate");
    let gone = admin(&app, "POST", &path, Some(BEARER), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let listed = admin(
        &app,
        "GET",
        "/v1/admin/apikeys?owner=alice",
        Some(BEARER),
        None,
    )
    .await;
    assert_eq!(listed.json(), json!({"api_keys": []}));
    let gone_from_bundle = eventually(Duration::from_secs(2), || async {
        let snapshot = app.state.mirror().snapshot()?;
        (snapshot.api_key_count() == 0).then_some(())
    })
    .await;
    assert!(gone_from_bundle.is_some(), "revoked key still mirrored");
}

#[tokio::test]
async fn the_admin_api_refuses_invalid_requests() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, "val:").await;
    let valid = json!({"owner": "alice", "label": "ok", "resources": [ORDERS]});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"owner": "alice", "label": "ok"}), "resources"),
        (with("resources", json!([])), "at least one resource"),
        (with("resources", json!(["orders"])), "invalid resource"),
        (
            with("resources", json!(["https://a.test/#x"])),
            "invalid resource",
        ),
        (with("scopes", json!(["a b"])), "invalid scope"),
        (with("owner", json!("has space")), "invalid owner"),
        (with("owner", json!("")), "invalid owner"),
        (with("label", json!("")), "invalid label"),
        (with("label", json!("x".repeat(201))), "invalid label"),
        (with("label", json!("line\nbreak")), "invalid label"),
        (with("expires_in_secs", json!(0)), "invalid expiry"),
        (
            with("expires_in_secs", json!(400_000_000)),
            "invalid expiry",
        ),
        (with("expires_in_secs", json!(-1)), "malformed body"),
        (with("admin", json!(true)), "unknown field"),
        (with("tier", json!("two words")), "invalid tier"),
        (with("tier", json!("")), "invalid tier"),
        (with("tier", json!("x".repeat(33))), "invalid tier"),
        (
            with("tier", json!("pro\r\nx-keymesh-subject: root")),
            "invalid tier",
        ),
        (with("tier", json!(3)), "malformed body"),
    ];
    for (body, description) in cases {
        let reply = admin(
            &app,
            "POST",
            "/v1/admin/apikeys",
            Some(BEARER),
            Some(body.clone()),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        let error = reply.json();
        assert_eq!(error["error"], "invalid_request", "{body}");
        let text = error["error_description"].as_str().unwrap();
        assert!(text.contains(description), "{body}: {text}");
    }
    let malformed = call(
        &app.router,
        "POST",
        "/v1/admin/apikeys",
        &[
            ("authorization", BEARER),
            ("content-type", "application/json"),
        ],
        Some("{\"owner\":"),
    )
    .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let form = call(
        &app.router,
        "POST",
        "/v1/admin/apikeys",
        &[
            ("authorization", BEARER),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("owner=alice"),
    )
    .await;
    assert_eq!(form.status, StatusCode::BAD_REQUEST);
    assert!(form.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("application/json"));
    for path in ["/v1/admin/apikeys", "/v1/admin/apikeys?owner=has%20space"] {
        let reply = admin(&app, "GET", path, Some(BEARER), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.json()["error"], "invalid_request");
    }
    let stored: Vec<String> = redis::cmd("KEYS")
        .arg("val:apikey*")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(
        stored.is_empty(),
        "a refused request stored something: {stored:?}"
    );
}
