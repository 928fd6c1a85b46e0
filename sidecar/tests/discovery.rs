//! Key material and metadata endpoints: JWKS, RFC 8414 metadata, the bundle with ETag/304, health.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use base64ct::Encoding;
use keymesh::{AppState, Clock};
use keymesh_core::bundle::{etag, BundleDto};
use support::*;

#[tokio::test]
async fn jwks_publishes_only_the_public_half_of_the_stored_key() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "d:").await;
    let reply = get(&app.router, "/.well-known/jwks.json", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), Some("max-age=60"));
    let jwks = reply.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = keys[0].as_object().unwrap();
    let members: BTreeSet<&str> = jwk.keys().map(String::as_str).collect();
    assert_eq!(
        members,
        BTreeSet::from(["alg", "crv", "kid", "kty", "use", "x"])
    );
    assert!(!jwk.contains_key("d"));
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");

    // The published key is the public half of the key stored and activated in Redis.
    let mut conn = redis.conn().await;
    let active: String = redis::cmd("GET")
        .arg("d:signing:active")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(jwk["kid"], active.as_str());
    let record: String = redis::cmd("HGET")
        .arg("d:signing:keys")
        .arg(&active)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stored = keymesh::keys::decode_record(&active, &record, &test_kek()).unwrap();
    assert_eq!(jwk.get("x"), stored.public_jwk().get("x"));
    let seed = base64ct::Base64UrlUnpadded::encode_string(&stored.private_bytes().unwrap());
    assert!(!record.contains(&seed), "seed stored in clear");
    assert!(
        !reply.body.windows(seed.len()).any(|w| w == seed.as_bytes()),
        "seed leaked into JWKS"
    );
}

#[tokio::test]
async fn metadata_describes_the_token_endpoint() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "d:").await;
    let reply = get(&app.router, "/.well-known/oauth-authorization-server", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let metadata = reply.json();
    assert_eq!(metadata["issuer"], ISSUER);
    assert_eq!(metadata["token_endpoint"], format!("{ISSUER}/oauth/token"));
    assert_eq!(
        metadata["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
    assert_eq!(
        metadata["grant_types_supported"],
        serde_json::json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
    );
    // The rest of the authorization server's metadata: tests/oauth_server.rs.
    assert_eq!(
        metadata["response_types_supported"],
        serde_json::json!(["code"])
    );
}

#[tokio::test]
async fn bundle_is_versioned_and_revalidated_with_etags() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "d:").await;

    let reply = get(&app.router, "/v1/bundle", &[("x-keymesh-proxy", "envoy-1")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), Some("no-cache"));
    assert_eq!(reply.header("etag"), Some(etag(1).as_str()));
    let bundle: BundleDto = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(bundle.version, 1);
    assert_eq!(bundle.issuers.len(), 1);
    assert_eq!(bundle.issuers[0].issuer, ISSUER);
    let jwks = get(&app.router, "/.well-known/jwks.json", &[]).await.json();
    assert_eq!(serde_json::to_value(&bundle.issuers[0].jwks).unwrap(), jwks);

    for held in ["\"1\"", "W/\"1\"", "\"0\", \"1\"", "*"] {
        let reply = get(
            &app.router,
            "/v1/bundle",
            &[("if-none-match", held), ("x-keymesh-proxy", "envoy-1")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{held}");
        assert!(reply.body.is_empty(), "{held}");
        assert_eq!(reply.header("etag"), Some("\"1\""), "{held}");
    }
    for stale in ["\"0\"", "\"2\"", "garbage"] {
        let reply = get(&app.router, "/v1/bundle", &[("if-none-match", stale)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{stale}");
        assert!(!reply.body.is_empty());
    }
}

#[tokio::test]
async fn nothing_is_served_before_the_first_snapshot() {
    // Nothing listens on this port: the mirror keeps retrying and never loads.
    let redis = RedisServer::start();
    let mut config = config(&redis, "d:");
    config.redis_url = format!("redis://127.0.0.1:{}/", free_port());
    let state = AppState::start(config, Clock::fixed(NOW)).unwrap();
    let router = keymesh::app(state.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(!state.mirror().is_ready());
    let health = get(&router, "/healthz", &[]).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        get(&router, "/v1/bundle", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&router, "/.well-known/jwks.json", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let token = post_token(
        &router,
        Some(&basic("a", "b")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(token.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(token.json()["error"], "temporarily_unavailable");

    // The same app on a live Redis is healthy and reports its version.
    let app = start_app(&redis, "d:").await;
    let health = get(&app.router, "/healthz", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["version"], 1);
}
