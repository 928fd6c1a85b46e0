//! `POST /oauth/token` through the router against a real Redis: issuance, token contents, every error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::alg::Ed25519;
use jwt_compact::{AlgorithmExt, Token, UntrustedToken};
use serde_json::{json, Map, Value};
use support::*;

const ORDERS: &str = "https://orders.test/api";
const BILLING: &str = "https://billing.test";

/// Verifies `token` with the key the JWKS endpoint publishes under its `kid`.
async fn verify_with_jwks(app: &TestApp, token: &str) -> Token<Map<String, Value>> {
    let untrusted = UntrustedToken::new(token).unwrap();
    let kid = untrusted.header().key_id.clone().expect("kid header");
    let jwks = get(&app.router, "/.well-known/jwks.json", &[]).await.json();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid in JWKS");
    let x: [u8; 32] = Base64UrlUnpadded::decode_vec(jwk["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
    Ed25519
        .validator::<Map<String, Value>>(&key)
        .validate(&untrusted)
        .expect("signature verifies")
}

#[tokio::test]
async fn basic_auth_issues_an_rfc9068_token_for_two_resources() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "t:").await;
    let client = register(
        &redis,
        "t:",
        "svc",
        None,
        &[ORDERS, BILLING],
        &["read", "write"],
    )
    .await;

    let body = format!(
        "grant_type=client_credentials&resource={}&resource={}&scope=write+read",
        form_urlencode(ORDERS),
        form_urlencode(BILLING)
    );
    let reply = post_token(
        &app.router,
        Some(&basic("svc", &client.client_secret)),
        &body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
    let response = reply.json();
    assert_eq!(response["token_type"], "Bearer");
    assert_eq!(response["expires_in"], 300);
    assert_eq!(response["scope"], "write read");

    let token = verify_with_jwks(&app, response["access_token"].as_str().unwrap()).await;
    assert_eq!(token.header().token_type.as_deref(), Some("at+jwt"));
    let untrusted = UntrustedToken::new(response["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(untrusted.algorithm(), "EdDSA");
    let active = app
        .state
        .mirror()
        .snapshot()
        .unwrap()
        .active_key()
        .unwrap()
        .kid()
        .to_owned();
    assert_eq!(token.header().key_id.as_deref(), Some(active.as_str()));

    let claims = token.claims();
    assert_eq!(claims.custom["iss"], ISSUER);
    assert_eq!(claims.custom["sub"], "svc");
    assert_eq!(claims.custom["client_id"], "svc");
    assert_eq!(claims.custom["aud"], json!([ORDERS, BILLING]));
    assert_eq!(claims.custom["scope"], "write read");
    assert_eq!(claims.issued_at.unwrap().timestamp(), NOW as i64);
    assert_eq!(claims.expiration.unwrap().timestamp(), NOW as i64 + 300);
    let jti = claims.custom["jti"].as_str().unwrap();
    assert!(
        Base64UrlUnpadded::decode_vec(jti).unwrap().len() >= 16,
        "jti has at least 128 bits"
    );

    // A second token has a different jti.
    let again = post_token(
        &app.router,
        Some(&basic("svc", &client.client_secret)),
        &body,
    )
    .await
    .json();
    let again = verify_with_jwks(&app, again["access_token"].as_str().unwrap()).await;
    assert_ne!(again.claims().custom["jti"], jti);
}

#[tokio::test]
async fn post_auth_with_an_operator_secret_defaults_to_everything_allowed() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "t:").await;
    register(
        &redis,
        "t:",
        "demo",
        Some("demo-secret"),
        &[ORDERS, BILLING],
        &["read", "write"],
    )
    .await;

    let reply = post_token(
        &app.router,
        None,
        "grant_type=client_credentials&client_id=demo&client_secret=demo-secret",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let response = reply.json();
    assert_eq!(response["scope"], "read write");
    let token = verify_with_jwks(&app, response["access_token"].as_str().unwrap()).await;
    assert_eq!(token.claims().custom["aud"], json!([ORDERS, BILLING]));
    assert_eq!(token.claims().custom["scope"], "read write");
}

#[tokio::test]
async fn a_subset_of_resources_and_scopes_can_be_requested() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "t:").await;
    let client = register(
        &redis,
        "t:",
        "svc",
        None,
        &[ORDERS, BILLING],
        &["read", "write"],
    )
    .await;

    let body = format!(
        "grant_type=client_credentials&resource={}&scope=read",
        form_urlencode(BILLING)
    );
    let reply = post_token(
        &app.router,
        Some(&basic("svc", &client.client_secret)),
        &body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let token = verify_with_jwks(&app, reply.json()["access_token"].as_str().unwrap()).await;
    // Still an array with a single resource.
    assert_eq!(token.claims().custom["aud"], json!([BILLING]));
    assert_eq!(token.claims().custom["scope"], "read");
}

#[tokio::test]
async fn client_ids_and_secrets_in_basic_auth_are_form_decoded() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "t:").await;
    register(&redis, "t:", "svc:a", Some("p@ss word+&="), &[ORDERS], &[]).await;

    let reply = post_token(
        &app.router,
        Some(&basic("svc:a", "p@ss word+&=")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // No scopes allowed or requested: no scope in the response.
    assert!(reply.json().get("scope").is_none());
}

#[tokio::test]
async fn every_error_has_its_rfc_code_status_and_headers() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "t:").await;
    let client = register(&redis, "t:", "svc", None, &[ORDERS, BILLING], &["read"]).await;
    let good = basic("svc", &client.client_secret);
    let post_creds = format!("client_id=svc&client_secret={}", client.client_secret);
    let cc = "grant_type=client_credentials";

    struct Case {
        name: &'static str,
        authorization: Option<String>,
        body: String,
        status: StatusCode,
        error: &'static str,
    }
    let case = |name, authorization: Option<&String>, body: String, status, error| Case {
        name,
        authorization: authorization.cloned(),
        body,
        status,
        error,
    };
    let unknown = basic("nobody", "whatever");
    let wrong = basic("svc", "not-the-secret");
    let cases = [
        case(
            "unknown client",
            Some(&unknown),
            cc.into(),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        case(
            "wrong secret (basic)",
            Some(&wrong),
            cc.into(),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        case(
            "wrong secret (post)",
            None,
            format!("{cc}&client_id=svc&client_secret=nope"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        case(
            "no credentials",
            None,
            cc.into(),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        case(
            "both auth methods",
            Some(&good),
            format!("{cc}&{post_creds}"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "foreign resource",
            Some(&good),
            format!("{cc}&resource={}", form_urlencode("https://elsewhere.test")),
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        case(
            "one allowed and one foreign resource",
            Some(&good),
            format!(
                "{cc}&resource={}&resource={}",
                form_urlencode(ORDERS),
                form_urlencode("https://x.test")
            ),
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        case(
            "relative resource",
            Some(&good),
            format!("{cc}&resource=%2Fapi"),
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        case(
            "resource with fragment",
            Some(&good),
            format!("{cc}&resource={}", form_urlencode(&format!("{ORDERS}#x"))),
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
        case(
            "scope not allowed",
            Some(&good),
            format!("{cc}&scope=read+admin"),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        case(
            "unsupported grant type",
            Some(&good),
            "grant_type=password&username=a&password=b".into(),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        case(
            "missing grant_type",
            Some(&good),
            "scope=read".into(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "malformed body",
            Some(&good),
            format!("{cc}&scope=%zz"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "parameter without =",
            Some(&good),
            format!("{cc}&scope"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        case(
            "repeated scope",
            Some(&good),
            format!("{cc}&scope=read&scope=read"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for case in cases {
        let reply = post_token(&app.router, case.authorization.as_deref(), &case.body).await;
        assert_eq!(reply.status, case.status, "{}: {:?}", case.name, reply.body);
        let body = reply.json();
        assert_eq!(body["error"], case.error, "{}", case.name);
        assert!(body["error_description"].is_string(), "{}", case.name);
        assert_eq!(
            reply.header("cache-control"),
            Some("no-store"),
            "{}",
            case.name
        );
        if case.status == StatusCode::UNAUTHORIZED {
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Basic realm=\"keymesh\""),
                "{}",
                case.name
            );
        } else {
            assert_eq!(reply.header("www-authenticate"), None, "{}", case.name);
        }
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_form_is_invalid_request() {
    let redis = RedisServer::start();
    let app = start_app(&redis, "t:").await;
    let request = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"grant_type":"client_credentials"}"#))
        .unwrap();
    let reply = send(&app.router, request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_request");
}

#[tokio::test]
async fn secrets_are_stored_only_hashed() {
    let redis = RedisServer::start();
    let generated = register(&redis, "t:", "gen", None, &[ORDERS], &[]).await;
    register(&redis, "t:", "chosen", Some("demo-secret"), &[ORDERS], &[]).await;
    let mut conn = redis.conn().await;

    let raw: String = redis::cmd("GET")
        .arg("t:client:gen")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!raw.contains(&generated.client_secret), "{raw}");
    let record: Value = serde_json::from_str(&raw).unwrap();
    assert!(record["secret_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256$"));

    let raw: String = redis::cmd("GET")
        .arg("t:client:chosen")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!raw.contains("demo-secret"), "{raw}");
    let record: Value = serde_json::from_str(&raw).unwrap();
    assert!(record["secret_hash"]
        .as_str()
        .unwrap()
        .starts_with("$argon2id$"));
    assert_eq!(record["resources"], json!([ORDERS]));
}

#[tokio::test]
async fn with_every_argon2_slot_busy_a_chosen_secret_gets_503_and_a_generated_one_still_a_token() {
    let redis = RedisServer::start();
    let app = start_app_with(keymesh::Config {
        argon2_concurrency: 1,
        ..config(&redis, "t:")
    })
    .await;
    let generated = register(&redis, "t:", "gen", None, &[ORDERS], &[]).await;
    register(&redis, "t:", "chosen", Some("demo-secret"), &[ORDERS], &[]).await;
    let body = format!(
        "grant_type=client_credentials&resource={}",
        form_urlencode(ORDERS)
    );

    // The one slot is taken (as by a long burst of verifications): the request waits, then is told to retry.
    let held = app.state.argon2_slots().acquire().await.unwrap();
    let asked = std::time::Instant::now();
    let reply = post_token(&app.router, Some(&basic("chosen", "demo-secret")), &body).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    assert!(asked.elapsed() >= std::time::Duration::from_millis(900));
    assert_eq!(reply.json()["error"], "temporarily_unavailable");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    // A wrong secret is not counted as a failed authentication while it could not be checked.
    let reply = post_token(&app.router, Some(&basic("chosen", "wrong")), &body).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    // A generated secret's SHA-256 form needs no slot.
    let reply = post_token(
        &app.router,
        Some(&basic("gen", &generated.client_secret)),
        &body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    drop(held);
    let reply = post_token(&app.router, Some(&basic("chosen", "demo-secret")), &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let failures: bool = redis::cmd("EXISTS")
        .arg("t:authfail:client:chosen")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(
        !failures,
        "checks refused for want of a slot are not failed authentications"
    );
    // With the slot free, the wrong secret is checked and counted.
    let reply = post_token(&app.router, Some(&basic("chosen", "wrong")), &body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let failures: bool = redis::cmd("EXISTS")
        .arg("t:authfail:client:chosen")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!(failures);
}

#[tokio::test]
async fn a_clients_tier_travels_in_its_tokens_and_a_bad_tier_is_refused() {
    use keymesh::oauth::clients::{ClientError, ClientStore, NewClient};
    use keymesh::store::names::KeyNames;
    let redis = RedisServer::start();
    let app = start_app(&redis, "tier:").await;
    let store = ClientStore::new(KeyNames::new("tier:"));
    let new = |id: &str, tier: Option<&str>| NewClient {
        client_id: id.to_owned(),
        resources: vec![ORDERS.to_owned()],
        tier: tier.map(str::to_owned),
        ..NewClient::default()
    };
    let mut conn = redis.conn().await;
    let pro = store
        .register(&mut conn, new("pro-svc", Some("pro")), NOW)
        .await
        .unwrap();
    let plain = store
        .register(&mut conn, new("plain-svc", None), NOW)
        .await
        .unwrap();
    for (client, expected) in [(&pro, json!("pro")), (&plain, Value::Null)] {
        let reply = post_token(
            &app.router,
            Some(&basic(&client.client_id, &client.client_secret)),
            "grant_type=client_credentials",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let token = verify_with_jwks(&app, reply.json()["access_token"].as_str().unwrap()).await;
        let claim = token.claims().custom.get("keymesh_tier").cloned();
        assert_eq!(
            claim.unwrap_or(Value::Null),
            expected,
            "{}",
            client.client_id
        );
    }
    for bad in ["", "two words", "pro\r\nx: y", &"x".repeat(33)] {
        let refused = store
            .register(&mut conn, new("bad-svc", Some(bad)), NOW)
            .await;
        assert!(
            matches!(refused, Err(ClientError::InvalidTier(_))),
            "{bad:?}: {refused:?}"
        );
    }
}
