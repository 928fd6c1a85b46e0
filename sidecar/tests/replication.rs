//! Several writers, one Redis: changes made elsewhere reach a running sidecar without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use keymesh::cli::{ClientCommand, CreateArgs};
use keymesh::keys::{self as signing_keys, SigningKey};
use keymesh::mirror::GAP_REPAIR_INTERVAL;
use keymesh::store::names::KeyNames;
use keymesh::{AppState, Clock};
use support::*;

const API: &str = "https://api.test";

#[tokio::test]
async fn a_client_created_by_the_cli_after_start_can_get_a_token() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "r:").await;

    // What `keymesh client create --json` runs, with the same configuration as the server.
    let args = CreateArgs {
        id: "late".into(),
        secret: None,
        resources: vec![API.into()],
        scopes: vec!["read".into()],
        force: false,
        json: true,
        name: None,
        public: false,
        redirect_uris: vec![],
        grant_types: vec![],
        tier: None,
    };
    let mut out = Vec::new();
    keymesh::cli::run_client(
        &app.config,
        ClientCommand::Create(args),
        &Clock::fixed(NOW),
        &mut out,
    )
    .await
    .unwrap();
    let created: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(created["client_id"], "late");
    assert_eq!(created["resources"], serde_json::json!([API]));
    assert_eq!(created["scopes"], serde_json::json!(["read"]));
    let secret = created["client_secret"].as_str().unwrap();

    let reply = post_token(
        &app.router,
        Some(&basic("late", secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    // Creating it again fails unless forced; list shows it without secrets; delete revokes it.
    let again = CreateArgs {
        id: "late".into(),
        secret: None,
        resources: vec![API.into()],
        scopes: vec![],
        force: false,
        json: true,
        name: None,
        public: false,
        redirect_uris: vec![],
        grant_types: vec![],
        tier: None,
    };
    let err = keymesh::cli::run_client(
        &app.config,
        ClientCommand::Create(again),
        &Clock::fixed(NOW),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    let mut listed = Vec::new();
    keymesh::cli::run_client(
        &app.config,
        ClientCommand::List { json: true },
        &Clock::fixed(NOW),
        &mut listed,
    )
    .await
    .unwrap();
    let listed_text = String::from_utf8(listed).unwrap();
    assert!(listed_text.contains("\"late\""));
    assert!(
        !listed_text.contains(secret)
            && !listed_text.contains("sha256")
            && !listed_text.contains("secret")
    );

    let delete = ClientCommand::Delete { id: "late".into() };
    keymesh::cli::run_client(&app.config, delete, &Clock::fixed(NOW), &mut Vec::new())
        .await
        .unwrap();
    let reply = post_token(
        &app.router,
        Some(&basic("late", secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_added_by_another_replica_is_published_via_pubsub() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "r:").await;
    let (before, kids_before) = served_bundle(&app.router).await;
    assert_eq!(kids_before.len(), 1);

    let new_key = SigningKey::generate(NOW);
    let version = signing_keys::add(
        &mut redis.conn().await,
        &KeyNames::new("r:"),
        &test_kek(),
        &new_key,
    )
    .await
    .unwrap();
    assert!(version > before);

    // Well under the gap-repair interval: only the notification can explain it.
    let seen = eventually(Duration::from_millis(1000), || async {
        let (version, kids) = served_bundle(&app.router).await;
        (version > before).then_some((version, kids))
    })
    .await
    .expect("new version served without restart");
    assert_eq!(seen.0, version);
    assert!(seen.1.contains(&new_key.kid().to_owned()));
    assert!(seen.1.contains(&kids_before[0]), "old key still published");
    let reply = get(
        &app.router,
        "/v1/bundle",
        &[("if-none-match", &format!("\"{before}\""))],
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the old version is no longer current"
    );
}

#[tokio::test]
async fn a_change_whose_notification_was_lost_is_picked_up_by_gap_repair() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "r:").await;
    let (before, _) = served_bundle(&app.router).await;

    // Write exactly what `add` writes, but never PUBLISH.
    let new_key = SigningKey::generate(NOW);
    let record = signing_keys::encode_record(&new_key, &test_kek()).unwrap();
    let mut conn = redis.conn().await;
    let (): () = redis::pipe()
        .atomic()
        .hset("r:signing:keys", new_key.kid(), record)
        .ignore()
        .incr("r:version", 1)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();

    let seen = eventually(GAP_REPAIR_INTERVAL + Duration::from_secs(3), || async {
        let (version, kids) = served_bundle(&app.router).await;
        (version > before).then_some(kids)
    })
    .await
    .expect("gap repair picked up the change");
    assert!(seen.contains(&new_key.kid().to_owned()));
}

#[tokio::test]
async fn replicas_starting_together_on_an_empty_redis_agree_on_one_key() {
    let redis = RedisServer::start();
    let config = config(&redis, "race:");
    let states: Vec<AppState> = (0..4)
        .map(|_| AppState::start(config.clone(), Clock::fixed(NOW)).unwrap())
        .collect();
    for state in &states {
        tokio::time::timeout(Duration::from_secs(10), state.ready())
            .await
            .unwrap();
    }
    let kids: Vec<String> = states
        .iter()
        .map(|s| {
            s.mirror()
                .snapshot()
                .unwrap()
                .active_key()
                .unwrap()
                .kid()
                .to_owned()
        })
        .collect();
    assert!(kids.iter().all(|kid| *kid == kids[0]), "{kids:?}");

    let mut conn = redis.conn().await;
    let stored: usize = redis::cmd("HLEN")
        .arg("race:signing:keys")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 1, "losers did not leave keys behind");
    let active: String = redis::cmd("GET")
        .arg("race:signing:active")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(active, kids[0]);
    let version: u64 = redis::cmd("GET")
        .arg("race:version")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, 1, "only the winner bumped the version");
}

#[tokio::test]
async fn the_last_snapshot_is_served_while_redis_is_away_and_the_mirror_reconnects() {
    let mut redis = RedisServer::start();
    let app = start_app(&redis, "r:").await;
    let (version, kids) = served_bundle(&app.router).await;
    // Open the request-path connection before the outage, so its reconnect is exercised too.
    let before = register(&redis, "r:", "before", None, &[API], &[]).await;
    let reply = post_token(
        &app.router,
        Some(&basic("before", &before.client_secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);

    redis.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_bundle(&app.router).await, (version, kids.clone()));
    assert_eq!(
        get(&app.router, "/healthz", &[]).await.status,
        StatusCode::OK
    );
    let reply = post_token(
        &app.router,
        Some(&basic("before", &before.client_secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"], "temporarily_unavailable");

    // The new Redis is empty: on reconnect the mirror installs a fresh key and serves it.
    redis.restart();
    let fresh = eventually(Duration::from_secs(15), || async {
        let (_, now) = served_bundle(&app.router).await;
        (now != kids).then_some(now)
    })
    .await
    .expect("mirror reconnected");
    assert_eq!(fresh.len(), 1);

    // The request path reconnects too.
    let client = register(&redis, "r:", "after", None, &[API], &[]).await;
    let reply = post_token(
        &app.router,
        Some(&basic("after", &client.client_secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}
