//! The bundle as the change log shapes it: full bundles, deltas, 304s, long polls, and a mirror that applies
//! changes incrementally and reloads only when the log cannot bridge a gap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use keymesh::api_keys::{ApiKeyRecord, ApiKeyStore, IssuedApiKey, NewApiKey};
use keymesh::store::names::KeyNames;
use keymesh_core::apikey::{format_key, hash_key};
use keymesh_core::bundle::BundleDto;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_keymesh");
const ORDERS: &str = "https://orders.test";

fn store(prefix: &str) -> ApiKeyStore {
    ApiKeyStore::new(KeyNames::new(prefix))
}

fn hashes(bundle: &BundleDto) -> (Vec<String>, Vec<String>) {
    (
        bundle.api_keys.put.iter().map(|e| e.hash.clone()).collect(),
        bundle.api_keys.delete.clone(),
    )
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

async fn bundle_since(app: &TestApp, held: u64) -> BundleDto {
    let reply = get(
        &app.router,
        "/v1/bundle",
        &[("if-none-match", &format!("\"{held}\""))],
    )
    .await;
    bundle_of(&reply)
}

#[tokio::test]
async fn deltas_carry_exactly_the_changes_and_old_versions_get_the_full_bundle() {
    let redis = RedisServer::start();
    let p = "b:";
    let app = start_app(&redis, p).await;
    let start = app.state.mirror().snapshot().unwrap().version();
    assert_eq!(start, 1, "the signing key bootstrap");
    let keys: Vec<IssuedApiKey> = vec![
        create_key(&redis, p, "alice", &[ORDERS]).await,
        create_key(&redis, p, "bob", &[ORDERS]).await,
        create_key(&redis, p, "carol", &[ORDERS]).await,
    ];
    let hash: Vec<String> = keys.iter().map(|k| hash_key(&k.key)).collect();
    let v1 = mirrored(&app, 4).await;
    assert_eq!(v1, 4, "one version per key");

    let reply = get(&app.router, "/v1/bundle", &[]).await;
    assert_eq!(reply.header("etag"), Some("\"4\""));
    let full = bundle_of(&reply);
    assert_eq!((full.version, full.since), (4, None));
    assert_eq!(hashes(&full), (sorted(hash.clone()), vec![]));
    let alice = full
        .api_keys
        .put
        .iter()
        .find(|e| e.hash == hash[0])
        .unwrap();
    assert_eq!(alice.id, keys[0].id);
    assert_eq!(alice.owner, "alice");
    assert_eq!(alice.resources, [ORDERS]);
    assert_eq!(alice.scopes, ["read"]);
    assert_eq!(alice.expires_at, None);

    // A revocation: the delta from v1 is exactly its delete.
    assert!(store(p)
        .revoke(&mut redis.conn().await, &keys[0].id)
        .await
        .unwrap());
    mirrored(&app, 5).await;
    let delta = bundle_since(&app, v1).await;
    assert_eq!((delta.version, delta.since), (5, Some(4)));
    assert_eq!(hashes(&delta), (vec![], vec![hash[0].clone()]));
    assert_eq!(delta.issuers, full.issuers, "issuers are always complete");

    // A regeneration: one version, the old hash deleted and the new entry put.
    let regenerated = store(p)
        .regenerate(
            &mut redis.conn().await,
            &keys[1].id,
            keymesh::api_keys::Grace::NONE,
            NOW,
        )
        .await
        .unwrap()
        .unwrap();
    let new_hash = hash_key(&regenerated.key);
    assert_eq!(redis_version(&redis, p).await, 6, "a single version");
    mirrored(&app, 6).await;
    let delta = bundle_since(&app, 5).await;
    assert_eq!((delta.version, delta.since), (6, Some(5)));
    assert_eq!(
        hashes(&delta),
        (vec![new_hash.clone()], vec![hash[1].clone()])
    );
    assert_eq!(delta.api_keys.put[0].id, keys[1].id, "same id");
    assert_eq!(delta.api_keys.put[0].owner, "bob");

    // Folded over several versions: each hash once; alice's key was put and deleted within the window from 1.
    let delta = bundle_since(&app, v1).await;
    assert_eq!(
        hashes(&delta),
        (
            vec![new_hash.clone()],
            sorted(vec![hash[0].clone(), hash[1].clone()])
        )
    );
    let delta = bundle_since(&app, start).await;
    assert_eq!(delta.since, Some(start));
    assert_eq!(
        hashes(&delta),
        (
            sorted(vec![hash[2].clone(), new_hash.clone()]),
            sorted(vec![hash[0].clone(), hash[1].clone()])
        )
    );

    // Current → 304; older than the change log (it starts at the first load, version 1) → full.
    let reply = get(&app.router, "/v1/bundle", &[("if-none-match", "\"6\"")]).await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), Some("\"6\""));
    let full = bundle_since(&app, 0).await;
    assert_eq!((full.version, full.since), (6, None));
    assert_eq!(
        hashes(&full),
        (sorted(vec![hash[2].clone(), new_hash.clone()]), vec![])
    );
    // A version from the future (another replica ahead, a reset Redis) → full too.
    assert_eq!(bundle_since(&app, 99).await.since, None);

    // A second sidecar starting now has no log before version 6: v1 gets the full bundle, the same as the first
    // sidecar's, byte for byte.
    let other = start_app(&redis, p).await;
    assert_eq!(other.state.mirror().snapshot().unwrap().version(), 6);
    let from_other = bundle_since(&other, v1).await;
    assert_eq!(from_other.since, None);
    let full_first = get(&app.router, "/v1/bundle", &[]).await.body;
    let full_other = get(&other.router, "/v1/bundle", &[]).await.body;
    assert_eq!(full_first, full_other);

    // Both follow the next change incrementally and still agree.
    assert!(store(p)
        .revoke(&mut redis.conn().await, &keys[2].id)
        .await
        .unwrap());
    mirrored(&app, 7).await;
    mirrored(&other, 7).await;
    assert_eq!(
        get(&app.router, "/v1/bundle", &[]).await.body,
        get(&other.router, "/v1/bundle", &[]).await.body
    );
    assert_eq!(
        bundle_since(&other, 6).await.api_keys.delete,
        [hash[2].clone()]
    );
    assert_eq!(app.state.mirror().full_loads(), 1);
    assert_eq!(other.state.mirror().full_loads(), 1);
}

/// Writes two API key changes, the first of which the change log no longer has, and announces the second.
const TRIMMED_WRITE: &str = r"
local first = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[2], first .. '-0', 'kind', 'apikey_put', 'data', ARGV[2])
local second = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[4], ARGV[3])
redis.call('XADD', KEYS[2], second .. '-0', 'kind', 'apikey_put', 'data', ARGV[4])
redis.call('XDEL', KEYS[2], first .. '-0')
redis.call('PUBLISH', ARGV[5], second)
return second
";

fn record(id: &str, seed: u8) -> ApiKeyRecord {
    let key = format_key(&[seed; 32]);
    ApiKeyRecord {
        id: id.to_owned(),
        owner: "legacy".to_owned(),
        label: "written by hand".to_owned(),
        hash: hash_key(&key),
        prefix: keymesh_core::apikey::public_prefix(&key),
        resources: vec![ORDERS.to_owned()],
        scopes: vec![],
        created_at: NOW,
        expires_at: None,
        ..ApiKeyRecord::default()
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

#[tokio::test]
async fn a_change_log_that_does_not_reach_back_forces_a_full_load() {
    let redis = RedisServer::start();
    let p = "gap:";
    let app = start_app(&redis, p).await;
    let mirror = app.state.mirror();
    assert_eq!(mirror.full_loads(), 1);
    create_key(&redis, p, "alice", &[ORDERS]).await;
    let before_gap = mirrored(&app, 2).await;
    assert_eq!(
        mirror.full_loads(),
        1,
        "a logged change is applied incrementally"
    );

    // Trimmed: the entry after the mirror's version is gone.
    let (one, two) = (record("ak_one", 1), record("ak_two", 2));
    let mut conn = redis.conn().await;
    let version: u64 = redis::Script::new(TRIMMED_WRITE)
        .key(format!("{p}version"))
        .key(format!("{p}changelog"))
        .key(format!("{p}apikey:ak_one"))
        .key(format!("{p}apikey:ak_two"))
        .arg(json(&one))
        .arg(json(&one.to_dto()))
        .arg(json(&two))
        .arg(json(&two.to_dto()))
        .arg(format!("{p}changes"))
        .invoke_async(&mut conn)
        .await
        .unwrap();
    mirrored(&app, version).await;
    let snapshot = mirror.snapshot().unwrap();
    assert!(
        snapshot.api_key(&one.hash).is_some(),
        "the trimmed change is loaded"
    );
    assert!(snapshot.api_key(&two.hash).is_some());
    assert_eq!(mirror.full_loads(), 2);
    assert_eq!(
        snapshot.log_floor(),
        version,
        "the log restarts at the reload"
    );
    let reply = bundle_since(&app, before_gap).await;
    assert_eq!(
        reply.since, None,
        "a delta across the reload is not possible"
    );
    assert_eq!(reply.api_keys.put.len(), 3);

    // Missing: a writer that bumps the version without logging (an older sidecar or a hand edit).
    let three = record("ak_three", 3);
    let (): () = redis::pipe()
        .atomic()
        .set(format!("{p}apikey:ak_three"), json(&three))
        .ignore()
        .incr(format!("{p}version"), 1)
        .ignore()
        .publish(format!("{p}changes"), version + 1)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    mirrored(&app, version + 1).await;
    assert!(mirror.snapshot().unwrap().api_key(&three.hash).is_some());
    assert_eq!(mirror.full_loads(), 3);

    // Unusable: an entry of a kind this sidecar does not know.
    let (): () = redis::pipe()
        .atomic()
        .incr(format!("{p}version"), 1)
        .ignore()
        .cmd("XADD")
        .arg(format!("{p}changelog"))
        .arg(format!("{}-0", version + 2))
        .arg("kind")
        .arg("apikey_rename")
        .ignore()
        .publish(format!("{p}changes"), version + 2)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    mirrored(&app, version + 2).await;
    assert_eq!(mirror.full_loads(), 4);

    // Logged changes after that are incremental again.
    create_key(&redis, p, "bob", &[ORDERS]).await;
    mirrored(&app, version + 3).await;
    assert_eq!(mirror.full_loads(), 4);
    assert_eq!(mirror.snapshot().unwrap().api_key_count(), 5);
}

#[tokio::test]
async fn one_revocation_among_ten_thousand_keys_is_applied_without_a_reload() {
    const KEYS: usize = 10_000;
    let redis = RedisServer::start();
    let p = "big:";
    let conn = redis.conn().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..KEYS {
        let mut conn = conn.clone();
        tasks.spawn(async move {
            let new = NewApiKey {
                owner: format!("user{}", i % 100),
                label: format!("key {i}"),
                resources: vec![ORDERS.to_owned()],
                scopes: vec!["read".to_owned()],
                expires_in_secs: Some(86_400),
                tier: None,
            };
            store("big:").create(&mut conn, new, NOW).await.unwrap()
        });
    }
    let issued: Vec<IssuedApiKey> = tasks.join_all().await;

    let app = start_app(&redis, p).await;
    let mirror = app.state.mirror();
    let snapshot = mirror.snapshot().unwrap();
    assert_eq!(snapshot.api_key_count(), KEYS);
    assert_eq!(mirror.full_loads(), 1);
    let before = snapshot.version();

    let victim = &issued[KEYS / 3];
    let victim_hash = hash_key(&victim.key);
    assert!(snapshot.api_key(&victim_hash).is_some());
    assert!(store(p)
        .revoke(&mut redis.conn().await, &victim.id)
        .await
        .unwrap());
    let revoked_at = Instant::now();
    loop {
        let current = mirror.snapshot().unwrap();
        if current.api_key(&victim_hash).is_none() {
            assert_eq!(current.version(), before + 1);
            assert_eq!(current.api_key_count(), KEYS - 1);
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_millis(100),
            "the revocation took more than 100 ms to reach the mirror"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let applied_in = revoked_at.elapsed();
    assert_eq!(mirror.full_loads(), 1, "no full reload for one change");
    let delta = bundle_since(&app, before).await;
    assert_eq!(hashes(&delta), (vec![], vec![victim_hash]));
    eprintln!("one revocation among {KEYS} keys reached the mirror in {applied_in:?}");
}

#[tokio::test]
async fn a_long_poll_returns_when_another_process_revokes_a_key_and_304_when_nothing_changes() {
    const POLLS: usize = 200;
    let redis = RedisServer::start();
    let p = "lp:";
    let app = start_app(&redis, p).await;
    let key = create_key(&redis, p, "alice", &[ORDERS]).await;
    let held = mirrored(&app, 2).await;
    let etag = format!("\"{held}\"");

    let mut polls = Vec::new();
    for _ in 0..POLLS {
        let router = app.router.clone();
        let etag = etag.clone();
        polls.push(tokio::spawn(async move {
            let reply = get(&router, "/v1/bundle?wait=10", &[("if-none-match", &etag)]).await;
            (reply, Instant::now())
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        polls.iter().all(|poll| !poll.is_finished()),
        "polls are held"
    );

    let (id, url) = (key.id.clone(), redis.url());
    let cli_exited = tokio::task::spawn_blocking(move || {
        let output = Command::new(BIN)
            .args(["apikey", "revoke", &id])
            .env("KEYMESH_REDIS_URL", url)
            .env("KEYMESH_KEY_PREFIX", "lp:")
            .env_remove("KEYMESH_CONFIG")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        Instant::now()
    })
    .await
    .unwrap();
    for poll in polls {
        let (reply, answered) = poll.await.unwrap();
        let delta = bundle_of(&reply);
        assert_eq!((delta.version, delta.since), (held + 1, Some(held)));
        assert_eq!(hashes(&delta), (vec![], vec![hash_key(&key.key)]));
        let late = answered.saturating_duration_since(cli_exited);
        assert!(
            late < Duration::from_millis(200),
            "answered {late:?} after the revocation"
        );
    }

    // Nothing changes: 304 once the wait is over, not before.
    let current = format!("\"{}\"", held + 1);
    let started = Instant::now();
    let reply = get(
        &app.router,
        "/v1/bundle?wait=1",
        &[("if-none-match", &current)],
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.header("etag"), Some(current.as_str()));
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    // A caller behind is answered at once, whatever the wait.
    let started = Instant::now();
    let reply = get(
        &app.router,
        "/v1/bundle?wait=60",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(500));
    for bad in ["wait=61", "wait=x", "wait=1&wait=2"] {
        let reply = get(&app.router, &format!("/v1/bundle?{bad}"), &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.json()["error"], "invalid_request");
    }
}

#[tokio::test]
async fn shutdown_ends_held_long_polls_with_304() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "sd:").await;
    let router = app.router.clone();
    let poll = tokio::spawn(async move {
        get(&router, "/v1/bundle?wait=30", &[("if-none-match", "\"1\"")]).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished());
    let started = Instant::now();
    app.state.begin_shutdown();
    let reply = poll.await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() < Duration::from_millis(200));
    // New polls do not wait either.
    let started = Instant::now();
    let reply = get(
        &app.router,
        "/v1/bundle?wait=30",
        &[("if-none-match", "\"1\"")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() < Duration::from_millis(200));
}
