//! The API key lifecycle through the admin API and the mirror: disable and enable, regenerate with a grace
//! period, and last-used times reported by the filters; refusals of bad input with clear JSON errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use keymesh::support::admin_token::AdminToken;
use keymesh_core::apikey::hash_key;
use keymesh_core::bundle::ApiKeyDto;
use serde_json::{json, Value};
use support::*;

const ORDERS: &str = "https://orders.test";
const BEARER: &str = "Bearer test-admin-token-0123456789abcdef";

async fn admin_app(redis: &RedisServer, prefix: &str) -> TestApp {
    let mut config = config(redis, prefix);
    config.admin_token = Some(AdminToken::new("test-admin-token-0123456789abcdef").unwrap());
    start_app_with(config).await
}

async fn admin(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> Reply {
    let headers = [
        ("content-type", "application/json"),
        ("authorization", BEARER),
    ];
    let body = body.map(|b| b.to_string());
    call(&app.router, method, path, &headers, body.as_deref()).await
}

/// Creates a key expiring in a day; returns (id, key).
async fn create(app: &TestApp) -> (String, String) {
    let body =
        json!({"owner": "alice", "label": "ci", "resources": [ORDERS], "expires_in_secs": 86_400});
    let created = admin(app, "POST", "/v1/admin/apikeys", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let created = created.json();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

/// Waits until the mirror's entry for `key` is `present` (or absent); returns it.
async fn mirrored_entry(app: &TestApp, key: &str, present: bool) -> Option<ApiKeyDto> {
    let hash = hash_key(key);
    let found = eventually(Duration::from_secs(3), || async {
        let snapshot = app.state.mirror().snapshot()?;
        let entry = snapshot.api_key(&hash).cloned();
        (entry.is_some() == present).then_some(entry)
    })
    .await;
    found.unwrap_or_else(|| panic!("entry of {} never became present={present}", &key[..7]))
}

async fn listed(app: &TestApp) -> Value {
    let reply = admin(app, "GET", "/v1/admin/apikeys?owner=alice", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.json()["api_keys"][0].clone()
}

#[tokio::test]
async fn a_disabled_key_leaves_the_bundle_until_enabled() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, "dis:").await;
    let (id, key) = create(&app).await;
    mirrored_entry(&app, &key, true).await;
    assert_eq!(listed(&app).await["state"], "active");

    let disabled = admin(
        &app,
        "POST",
        &format!("/v1/admin/apikeys/{id}/disable"),
        None,
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK);
    assert_eq!(disabled.json()["state"], "disabled");
    mirrored_entry(&app, &key, false).await;
    let shown = listed(&app).await;
    assert_eq!(
        (shown["id"].as_str(), shown["state"].as_str()),
        (Some(id.as_str()), Some("disabled"))
    );
    // Disabling twice changes nothing and still answers.
    let version = redis_version(&redis, "dis:").await;
    let again = admin(
        &app,
        "POST",
        &format!("/v1/admin/apikeys/{id}/disable"),
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        redis_version(&redis, "dis:").await,
        version,
        "no change committed"
    );

    let enabled = admin(
        &app,
        "POST",
        &format!("/v1/admin/apikeys/{id}/enable"),
        None,
    )
    .await;
    assert_eq!(enabled.json()["state"], "active");
    let entry = mirrored_entry(&app, &key, true).await.unwrap();
    assert_eq!(entry.id, id);
    assert_eq!(
        entry.expires_at,
        Some(i64::try_from(NOW + 86_400).unwrap()),
        "the same entry as before"
    );

    // A restarted sidecar (full load) leaves a disabled key out too.
    admin(
        &app,
        "POST",
        &format!("/v1/admin/apikeys/{id}/disable"),
        None,
    )
    .await;
    let fresh = admin_app(&redis, "dis:").await;
    assert!(fresh
        .state
        .mirror()
        .snapshot()
        .unwrap()
        .api_key(&hash_key(&key))
        .is_none());

    for action in ["disable", "enable", "regenerate"] {
        let reply = admin(
            &app,
            "POST",
            &format!("/v1/admin/apikeys/ak_nope/{action}"),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{action}");
        assert_eq!(reply.json(), json!({"error": "not_found"}));
    }
}

#[tokio::test]
async fn regenerating_with_grace_keeps_the_old_secret_until_the_grace_ends() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, "gr:").await;
    let (id, old) = create(&app).await;
    let path = format!("/v1/admin/apikeys/{id}/regenerate");
    let regenerated = admin(&app, "POST", &path, Some(json!({"grace_secs": 3600}))).await;
    assert_eq!(regenerated.status, StatusCode::OK, "{:?}", regenerated.body);
    let regenerated = regenerated.json();
    let new = regenerated["key"].as_str().unwrap().to_owned();
    assert_eq!(regenerated["previous_secret_until"], NOW + 3600);

    // Both secrets are delivered, with the same id; the old one ends with the grace period.
    let new_entry = mirrored_entry(&app, &new, true).await.unwrap();
    let snapshot = app.state.mirror().snapshot().unwrap();
    let old_entry = snapshot.api_key(&hash_key(&old)).cloned().unwrap();
    assert_eq!(
        (old_entry.id.as_str(), new_entry.id.as_str()),
        (id.as_str(), id.as_str())
    );
    assert_eq!(
        old_entry.expires_at,
        Some(i64::try_from(NOW + 3600).unwrap())
    );
    assert_eq!(
        new_entry.expires_at,
        Some(i64::try_from(NOW + 86_400).unwrap())
    );
    let shown = listed(&app).await;
    assert_eq!(shown["previous_secret"]["until"], NOW + 3600);
    assert!(old.starts_with(shown["previous_secret"]["prefix"].as_str().unwrap()));

    // A restart delivers both as well.
    let fresh = admin_app(&redis, "gr:").await;
    assert!(fresh
        .state
        .mirror()
        .snapshot()
        .unwrap()
        .api_key(&hash_key(&old))
        .is_some());

    // Disabling during the grace period ends it: neither secret is delivered, and enabling brings back only the
    // new one.
    admin(
        &app,
        "POST",
        &format!("/v1/admin/apikeys/{id}/disable"),
        None,
    )
    .await;
    mirrored_entry(&app, &old, false).await;
    mirrored_entry(&app, &new, false).await;
    admin(
        &app,
        "POST",
        &format!("/v1/admin/apikeys/{id}/enable"),
        None,
    )
    .await;
    mirrored_entry(&app, &new, true).await;
    assert!(app
        .state
        .mirror()
        .snapshot()
        .unwrap()
        .api_key(&hash_key(&old))
        .is_none());

    // The grace is capped by the key's own expiry (one day here).
    let capped = admin(&app, "POST", &path, Some(json!({"grace_secs": 604_800}))).await;
    assert_eq!(capped.json()["previous_secret_until"], NOW + 86_400);
    let newest = capped.json()["key"].as_str().unwrap().to_owned();
    mirrored_entry(&app, &newest, true).await;
    assert!(app
        .state
        .mirror()
        .snapshot()
        .unwrap()
        .api_key(&hash_key(&new))
        .is_some());
    // Revoking during the grace period kills both secrets.
    let revoked = admin(&app, "DELETE", &format!("/v1/admin/apikeys/{id}"), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    mirrored_entry(&app, &new, false).await;
    mirrored_entry(&app, &newest, false).await;

    // Without a body (or with 0) the old secret goes at once.
    let (id, old) = create(&app).await;
    let path = format!("/v1/admin/apikeys/{id}/regenerate");
    let plain = admin(&app, "POST", &path, None).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.json().get("previous_secret_until").is_none());
    mirrored_entry(&app, &old, false).await;
}

#[tokio::test]
async fn bad_lifecycle_requests_get_clear_json_errors() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, "bad:").await;
    let (id, key) = create(&app).await;
    let path = format!("/v1/admin/apikeys/{id}/regenerate");
    for (body, expected) in [
        (json!({"grace_secs": 604_801}), "invalid grace period"),
        (json!({"grace_secs": -1}), "malformed body"),
        (json!({"grace": 10}), "unknown field"),
    ] {
        let reply = admin(&app, "POST", &path, Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        let error = reply.json();
        assert_eq!(error["error"], "invalid_request");
        assert!(
            error["error_description"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{body}: {error}"
        );
    }
    // Nothing changed: the original secret is still the one delivered.
    mirrored_entry(&app, &key, true).await;
}

#[tokio::test]
async fn usage_reports_set_last_used_to_the_minute() {
    let redis = RedisServer::start();
    let app = admin_app(&redis, "use:").await;
    let (id, _) = create(&app).await;
    assert_eq!(listed(&app).await["last_used_at"], Value::Null);

    let report = |body: &str, content_type: &'static str| {
        let body = body.to_owned();
        let router = app.router.clone();
        async move {
            call(
                &router,
                "POST",
                "/v1/usage",
                &[("content-type", content_type)],
                Some(&body),
            )
            .await
        }
    };
    let body = json!({"uses": [{"id": id, "count": 3}, {"id": "ak_AAAAAAAAAAAAAAAA", "count": 1},
                               {"id": "not an id", "count": 1}]});
    let accepted = report(&body.to_string(), "application/json").await;
    assert_eq!(accepted.status, StatusCode::NO_CONTENT);
    assert_eq!(listed(&app).await["last_used_at"], NOW - NOW % 60);
    // Only the real key was written.
    let stored: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("use:apikeys:last_used")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert_eq!(stored.keys().collect::<Vec<_>>(), [&id]);

    for (body, content_type) in [
        ("{\"uses\": 3}", "application/json"),
        ("not json", "application/json"),
        ("{\"uses\": []}", "text/plain"),
    ] {
        let refused = report(body, content_type).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(refused.json()["error"], "invalid_request");
    }
    // Revoking a key forgets its last use.
    admin(&app, "DELETE", &format!("/v1/admin/apikeys/{id}"), None).await;
    let exists: bool = redis::cmd("HEXISTS")
        .arg("use:apikeys:last_used")
        .arg(&id)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(!exists);
}
