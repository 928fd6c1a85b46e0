//! Private signing keys at rest: sealed under the key-encryption key in Redis, never in clear; a sidecar without
//! a KEK refuses to start, one with another KEK publishes the keys but cannot sign; keys stored in clear before
//! encryption existed are sealed when a sidecar starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;

use axum::http::StatusCode;
use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use keymesh::keys::{self as signing_keys, SigningKey};
use keymesh::support::kek::{Kek, KekSource};
use keymesh::{AppState, Clock, StartError};
use support::*;

const API: &str = "https://api.test";

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

#[tokio::test]
async fn private_keys_are_sealed_at_rest_and_a_missing_or_foreign_kek_is_a_clear_refusal() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "enc:").await;
    let mut conn = redis.conn().await;
    let records: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("enc:signing:keys")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let (kid, record) = records.iter().next().unwrap();
    let key = signing_keys::decode_record(kid, record, &test_kek()).unwrap();
    let private = key.private_bytes().unwrap();
    for form in [
        Base64UrlUnpadded::encode_string(&private),
        Base64::encode_string(&private),
        private
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ] {
        assert!(!record.contains(&form), "private key in clear: {record}");
    }
    assert!(
        !record.contains("\"seed\"") && record.contains("\"ciphertext\""),
        "{record}"
    );
    assert!(!record.contains(TEST_KEK));

    // Without a KEK the sidecar does not start, and says what to set.
    let mut no_kek = app.config.clone();
    no_kek.signing.kek = None;
    let err = AppState::start(no_kek, Clock::fixed(NOW)).unwrap_err();
    assert!(matches!(err, StartError::Kek(_)));
    let message = err.to_string();
    assert!(
        message.contains("KEYMESH_KEK") && message.contains("KEYMESH_KEK_FILE"),
        "{message}"
    );

    // A replica with another KEK publishes the same keys but cannot sign: the record names the KEK it needs.
    let mut other = app.config.clone();
    other.signing.kek = Some(KekSource::Inline(Kek::generate()));
    let foreign = start_app_with(other).await;
    let snapshot = foreign.state.mirror().snapshot().unwrap();
    assert_eq!(snapshot.kids(), [kid.as_str()]);
    assert!(snapshot.active_key().is_none());
    let err = signing_keys::decode_record(kid, record, &Kek::generate()).unwrap_err();
    assert!(
        err.is_other_kek() && err.to_string().contains(test_kek().id()),
        "{err}"
    );
    let secret = register(&redis, "enc:", "svc", None, &[API], &[])
        .await
        .client_secret;
    let reply = post_token(
        &foreign.router,
        Some(&basic("svc", &secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    let (token, _) = token(&app, &secret).await;
    assert!(
        !token.is_empty(),
        "the replica with the right KEK still signs"
    );
}

#[tokio::test]
async fn keys_stored_in_clear_before_encryption_are_sealed_at_start() {
    let redis = RedisServer::start();
    let seed = [5u8; 32];
    let legacy = SigningKey::from_seed(&seed, NOW - 100);
    let record = serde_json::json!({
        "kid": legacy.kid(), "alg": "EdDSA", "created_at": NOW - 100,
        "seed": Base64UrlUnpadded::encode_string(&seed),
    });
    let mut conn = redis.conn().await;
    let (): () = redis::pipe()
        .hset("old:signing:keys", legacy.kid(), record.to_string())
        .ignore()
        .set("old:signing:active", legacy.kid())
        .ignore()
        .set("old:version", 3)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let app = start_app(&redis, "old:").await;
    let stored: String = redis::cmd("HGET")
        .arg("old:signing:keys")
        .arg(legacy.kid())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !stored.contains(&Base64UrlUnpadded::encode_string(&seed)),
        "{stored}"
    );
    assert!(!signing_keys::is_plaintext(&stored));
    assert_eq!(
        signing_keys::decode_record(legacy.kid(), &stored, &test_kek())
            .unwrap()
            .kid(),
        legacy.kid()
    );
    let secret = register(&redis, "old:", "svc", None, &[API], &[])
        .await
        .client_secret;
    assert_eq!(
        token(&app, &secret).await.1,
        legacy.kid(),
        "the same key keeps signing"
    );
}
