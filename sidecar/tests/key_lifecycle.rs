//! Signing keys over time: rotated (by the CLI and on a schedule) so that a new key is published before it signs
//! and an old one stays published until its tokens have expired, and replicas racing a scheduled rotation rotating
//! once. Verification uses the filters' own code (`keymesh_core`) on the bundle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use keymesh::cli::{run_key, KeyCommand, RotateArgs};
use keymesh::keys::lifecycle::{self as key_lifecycle, KeyState, ListedKey, Rotation, Schedule};
use keymesh::keys::{self as signing_keys, Alg, SigningKey};
use keymesh::store::names::KeyNames;
use keymesh::support::kek::{Kek, KekSource};
use keymesh::{AppState, Clock, Config};
use keymesh_core::KeySet;
use support::*;

const API: &str = "https://api.test";
const TTL: u64 = 300;
const DELAY: u64 = 10;
const LEEWAY: u64 = 60;

/// A clock the test moves by hand, shared by every replica of a test.
#[derive(Clone)]
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn new() -> Self {
        Self(Arc::new(AtomicU64::new(NOW)))
    }
    fn clock(&self) -> Clock {
        let now = Arc::clone(&self.0);
        Clock::from_fn(move || now.load(Ordering::SeqCst))
    }
    fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }
}

fn lifecycle_config(redis: &RedisServer, prefix: &str) -> Config {
    let mut config = config(redis, prefix);
    config.token_ttl_secs = TTL;
    config.signing.publish_delay_secs = DELAY;
    config.signing.retire_leeway_secs = LEEWAY;
    config
}

async fn start(config: &Config, clock: &TestClock) -> TestApp {
    let state = AppState::start(config.clone(), clock.clock()).unwrap();
    // Serving replicas run the rotation schedule, as `keymesh serve` does.
    keymesh::spawn_background(&state).unwrap().detach();
    tokio::time::timeout(Duration::from_secs(10), state.ready())
        .await
        .expect("first snapshot");
    TestApp {
        config: config.clone(),
        router: keymesh::app(state.clone()),
        state,
    }
}

/// A token for the test client, and the kid that signed it.
async fn token(app: &TestApp, secret: &str) -> (String, String) {
    let reply = post_token(
        &app.router,
        Some(&basic("svc", secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    let kid = jwt_compact::UntrustedToken::new(&token)
        .unwrap()
        .header()
        .key_id
        .clone()
        .unwrap();
    (token, kid)
}

/// The bundle as served, raw.
async fn bundle_bytes(app: &TestApp) -> Vec<u8> {
    let reply = get(&app.router, "/v1/bundle", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body.to_vec()
}

/// Whether a proxy holding `bundle` accepts `token` at `now` (the filters' verification, leeway 0).
fn proxy_accepts(bundle: &[u8], token: &str, now: u64) -> Result<(), String> {
    let (keys, skipped) = KeySet::parse_bundle(bundle).map_err(|e| e.to_string())?;
    assert!(skipped.is_empty(), "{skipped:?}");
    keymesh_core::policy::verify_jwt(token, &keys, None, 0, now as i64)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

async fn keys(redis: &RedisServer, prefix: &str) -> Vec<ListedKey> {
    key_lifecycle::list(&mut redis.conn().await, &KeyNames::new(prefix))
        .await
        .unwrap()
}

fn state_of(keys: &[ListedKey], kid: &str) -> Option<KeyState> {
    keys.iter().find(|key| key.kid == kid).map(|key| key.state)
}

/// Waits (a few lifecycle ticks at most) until `check` holds for the listed keys.
async fn until_keys(
    redis: &RedisServer,
    prefix: &str,
    what: &str,
    check: impl Fn(&[ListedKey]) -> bool,
) {
    let check = &check;
    let reached = eventually(Duration::from_secs(5), || async move {
        let listed = keys(redis, prefix).await;
        check(&listed).then_some(())
    })
    .await;
    if reached.is_none() {
        panic!("never: {what}; keys: {:?}", keys(redis, prefix).await);
    }
}

async fn rotate_cli(
    config: &Config,
    clock: &TestClock,
    alg: Option<Alg>,
) -> Result<serde_json::Value, String> {
    let mut out = Vec::new();
    run_key(
        config,
        KeyCommand::Rotate(RotateArgs { alg, json: true }),
        &clock.clock(),
        &mut out,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(serde_json::from_slice(&out).unwrap())
}

#[tokio::test]
async fn a_rotation_publishes_before_it_signs_and_retires_only_after_the_old_tokens_expire() {
    let redis = RedisServer::start();
    let clock = TestClock::new();
    let config = lifecycle_config(&redis, "rot:");
    let app = start(&config, &clock).await;
    let secret = register(&redis, "rot:", "svc", None, &[API], &[])
        .await
        .client_secret;
    let (early, old_kid) = token(&app, &secret).await;

    // t0: rotate. The new key is published at once, but does not sign yet.
    let rotated = rotate_cli(&config, &clock, None).await.unwrap();
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_eq!(rotated["activate_at"], NOW + DELAY);
    mirrored(&app, rotated["version"].as_u64().unwrap()).await;
    let published = bundle_bytes(&app).await;
    let (_, kids) = served_bundle(&app.router).await;
    assert!(
        kids.contains(&new_kid) && kids.contains(&old_kid),
        "{kids:?}"
    );
    let (just_before, kid) = token(&app, &secret).await;
    assert_eq!(kid, old_kid, "a next key signs nothing");
    let listed = keys(&redis, "rot:").await;
    assert_eq!(
        state_of(&listed, &new_kid),
        Some(KeyState::Next {
            activate_at: NOW + DELAY
        })
    );
    assert_eq!(
        state_of(&listed, &old_kid),
        Some(KeyState::Active { since: Some(NOW) })
    );
    let err = rotate_cli(&config, &clock, None).await.unwrap_err();
    assert!(
        err.contains("already under way") && err.contains(&new_kid),
        "{err}"
    );

    // One second early, still nothing (the lifecycle ticks every second).
    clock.set(NOW + DELAY - 1);
    tokio::time::sleep(key_lifecycle::LIFECYCLE_TICK + Duration::from_millis(300)).await;
    assert_eq!(token(&app, &secret).await.1, old_kid);

    // Due: the serving sidecar activates it; the old key is retiring until its last token has expired.
    let switch = NOW + DELAY;
    clock.set(switch);
    until_keys(&redis, "rot:", "new key active", |k| {
        matches!(state_of(k, &new_kid), Some(KeyState::Active { .. }))
    })
    .await;
    let retire_at = switch + TTL + LEEWAY;
    assert_eq!(
        state_of(&keys(&redis, "rot:").await, &old_kid),
        Some(KeyState::Retiring {
            remove_at: Some(retire_at)
        })
    );
    let signed_with_new = eventually(Duration::from_secs(5), || async {
        let (token, kid) = token(&app, &secret).await;
        (kid == new_kid).then_some(token)
    })
    .await
    .expect("the new key signs");
    // Publish before sign: a proxy still holding the bundle from before the switch accepts the new key's token.
    proxy_accepts(&published, &signed_with_new, switch).unwrap();

    // Tokens signed just before the rotation keep verifying against the current bundle until they expire.
    let current = bundle_bytes(&app).await;
    for (name, token) in [("early", &early), ("just before", &just_before)] {
        proxy_accepts(&current, token, switch + 1).unwrap_or_else(|e| panic!("{name}: {e}"));
        proxy_accepts(&current, token, NOW + TTL - 1).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    // Kept a moment before its removal time, removed at it.
    clock.set(retire_at - 1);
    tokio::time::sleep(key_lifecycle::LIFECYCLE_TICK + Duration::from_millis(300)).await;
    assert!(served_bundle(&app.router).await.1.contains(&old_kid));
    proxy_accepts(&bundle_bytes(&app).await, &just_before, NOW + TTL - 1).unwrap();
    clock.set(retire_at);
    until_keys(&redis, "rot:", "old key removed", |k| {
        state_of(k, &old_kid).is_none()
    })
    .await;
    let removed = eventually(Duration::from_secs(5), || async {
        let (_, kids) = served_bundle(&app.router).await;
        (!kids.contains(&old_kid)).then_some(kids)
    })
    .await
    .expect("old key leaves the bundle");
    assert_eq!(removed, [new_kid.as_str()]);
    assert!(proxy_accepts(
        &bundle_bytes(&app).await,
        &signed_with_new,
        switch + TTL - 1
    )
    .is_ok());
}

#[tokio::test]
async fn es256_and_rs256_keys_rotate_in_and_verify_in_the_proxy() {
    let redis = RedisServer::start();
    let clock = TestClock::new();
    let config = lifecycle_config(&redis, "alg:");
    let app = start(&config, &clock).await;
    let secret = register(&redis, "alg:", "svc", None, &[API], &[])
        .await
        .client_secret;
    let mut now = NOW;
    for alg in [Alg::Es256, Alg::Rs256] {
        let rotated = rotate_cli(&config, &clock, Some(alg)).await.unwrap();
        assert_eq!(rotated["alg"], alg.as_str());
        let kid = rotated["kid"].as_str().unwrap().to_owned();
        now += DELAY;
        clock.set(now);
        let token = eventually(Duration::from_secs(5), || async {
            let (token, signed_by) = token(&app, &secret).await;
            (signed_by == kid).then_some(token)
        })
        .await
        .unwrap_or_else(|| panic!("{alg} key never signed"));
        assert_eq!(
            jwt_compact::UntrustedToken::new(&token)
                .unwrap()
                .algorithm(),
            alg.as_str()
        );
        proxy_accepts(&bundle_bytes(&app).await, &token, now).unwrap();
        // JWKS carries the key with its algorithm and no private member.
        let jwks = get(&app.router, "/.well-known/jwks.json", &[]).await.json();
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap()
            .clone();
        assert_eq!(jwk["alg"], alg.as_str());
        assert!(
            ["d", "p", "q", "dp", "dq", "qi"]
                .iter()
                .all(|m| jwk.get(m).is_none()),
            "{jwk}"
        );
    }
    let listed = keys(&redis, "alg:").await;
    let algs: Vec<&str> = listed.iter().map(|key| key.alg.as_str()).collect();
    assert_eq!(algs, ["EdDSA", "ES256", "RS256"], "oldest first");
}

#[tokio::test]
async fn the_schedule_rotates_once_however_many_replicas_race_for_it() {
    let redis = RedisServer::start();
    let names = KeyNames::new("race:");
    let kek = test_kek();
    let mut conn = redis.conn().await;
    let first = signing_keys::ensure_active(&mut conn, &names, &kek, Alg::EdDsa, NOW)
        .await
        .unwrap();
    let schedule = Schedule {
        algorithm: Alg::EdDsa,
        publish_delay_secs: DELAY,
        rotation_interval_secs: 3600,
        retain_secs: TTL + LEEWAY,
    };
    let advanced = key_lifecycle::advance(&mut conn, &names, NOW + 3599, &schedule)
        .await
        .unwrap();
    assert!(!advanced.rotation_due && advanced.version.is_none());
    let due = NOW + 3600;
    assert!(
        key_lifecycle::advance(&mut conn, &names, due, &schedule)
            .await
            .unwrap()
            .rotation_due
    );
    let before = redis_version(&redis, "race:").await;

    // Eight replicas see the rotation due at the same moment and each try to publish their own key.
    let attempts = (0..8).map(|_| {
        let (names, kek) = (names.clone(), kek.clone());
        let url = redis.url();
        tokio::spawn(async move {
            let mut conn = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let key = SigningKey::generate(due);
            key_lifecycle::rotate(&mut conn, &names, &kek, &key, due, DELAY, Some(3600))
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<Rotation> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let published = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Published { .. }))
        .count();
    assert_eq!(published, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Rotation::Published { .. } | Rotation::Pending { .. } | Rotation::NotDue
    )));
    assert_eq!(
        redis_version(&redis, "race:").await,
        before + 1,
        "one change"
    );
    let listed = keys(&redis, "race:").await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        !key_lifecycle::advance(&mut conn, &names, due, &schedule)
            .await
            .unwrap()
            .rotation_due
    );

    // Activation happens once too: the first advance does it, the others find nothing to do.
    let mut activated = 0;
    for _ in 0..4 {
        let advanced = key_lifecycle::advance(&mut conn, &names, due + DELAY, &schedule)
            .await
            .unwrap();
        activated += advanced.transitions.len();
    }
    assert_eq!(activated, 2, "one activation and one retirement");
    let listed = keys(&redis, "race:").await;
    assert_eq!(
        state_of(&listed, &first.active_kid),
        Some(KeyState::Retiring {
            remove_at: Some(due + DELAY + TTL + LEEWAY)
        })
    );
    // The next rotation is due an interval after the new key became active, not before.
    assert!(
        !key_lifecycle::advance(&mut conn, &names, due + 3600, &schedule)
            .await
            .unwrap()
            .rotation_due
    );
    assert!(
        key_lifecycle::advance(&mut conn, &names, due + DELAY + 3600, &schedule)
            .await
            .unwrap()
            .rotation_due
    );
}

#[tokio::test]
async fn serving_replicas_run_the_schedule_and_rotate_once() {
    let redis = RedisServer::start();
    let clock = TestClock::new();
    let mut config = lifecycle_config(&redis, "sched:");
    config.signing.rotation_interval_secs = 3600;
    let replicas = [
        start(&config, &clock).await,
        start(&config, &clock).await,
        start(&config, &clock).await,
    ];
    let first = served_bundle(&replicas[0].router).await.1;
    assert_eq!(first.len(), 1);
    let version = redis_version(&redis, "sched:").await;

    clock.set(NOW + 3600);
    until_keys(&redis, "sched:", "a next key", |k| {
        k.iter()
            .any(|key| matches!(key.state, KeyState::Next { .. }))
    })
    .await;
    // A few more ticks of every replica: still one new key, one change.
    tokio::time::sleep(2 * key_lifecycle::LIFECYCLE_TICK).await;
    assert_eq!(keys(&redis, "sched:").await.len(), 2);
    assert_eq!(redis_version(&redis, "sched:").await, version + 1);
    for replica in &replicas {
        mirrored(replica, version + 1).await;
        assert_eq!(served_bundle(&replica.router).await.1.len(), 2);
    }

    clock.set(NOW + 3600 + DELAY);
    until_keys(&redis, "sched:", "the scheduled key active", |k| {
        k.iter()
            .any(|key| key.kid != first[0] && matches!(key.state, KeyState::Active { .. }))
    })
    .await;
    tokio::time::sleep(2 * key_lifecycle::LIFECYCLE_TICK).await;
    assert_eq!(
        redis_version(&redis, "sched:").await,
        version + 2,
        "activated once"
    );
}

#[tokio::test]
async fn the_cli_needs_the_deployments_kek_to_rotate_and_never_lists_private_material() {
    let redis = RedisServer::start();
    let clock = TestClock::new();
    let config = lifecycle_config(&redis, "cli:");
    let mut no_kek = config.clone();
    no_kek.signing.kek = None;
    let err = rotate_cli(&no_kek, &clock, None).await.unwrap_err();
    assert!(err.contains("KEYMESH_KEK"), "{err}");
    let err = rotate_cli(&config, &clock, None).await.unwrap_err();
    assert!(err.contains("no active signing key"), "{err}");

    let _app = start(&config, &clock).await;
    let mut foreign = config.clone();
    foreign.signing.kek = Some(KekSource::Inline(Kek::generate()));
    let err = rotate_cli(&foreign, &clock, None).await.unwrap_err();
    assert!(
        err.contains("sealed under key-encryption key") && err.contains(test_kek().id()),
        "{err}"
    );
    assert_eq!(keys(&redis, "cli:").await.len(), 1, "nothing written");

    rotate_cli(&config, &clock, Some(Alg::Es256)).await.unwrap();
    let mut out = Vec::new();
    run_key(
        &config,
        KeyCommand::List { json: true },
        &clock.clock(),
        &mut out,
    )
    .await
    .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let states: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["active", "next"]);
    assert_eq!(listed[1]["alg"], "ES256");
    assert_eq!(listed[1]["activate_at"], NOW + DELAY);
    assert_eq!(listed[1]["sealed_with"], test_kek().id());
    let mut text = Vec::new();
    run_key(
        &no_kek,
        KeyCommand::List { json: false },
        &clock.clock(),
        &mut text,
    )
    .await
    .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("state=next") && text.contains("state=active"),
        "{text}"
    );
    let records: Vec<String> = redis::cmd("HVALS")
        .arg("cli:signing:keys")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    for record in records {
        let ciphertext = serde_json::from_str::<serde_json::Value>(&record).unwrap()["sealed"]
            ["ciphertext"]
            .as_str()
            .unwrap()
            .to_owned();
        for output in [&listed.to_string(), &text] {
            assert!(
                !output.contains(&ciphertext) && !output.contains("seed"),
                "{output}"
            );
        }
    }
}
