//! Shared test fixtures: a real redis-server per test (from `keymesh-test-support`), an app state on a chosen key prefix, request helpers.
#![allow(dead_code, unused_imports, unreachable_pub)] // each test binary uses a different subset

pub mod account;
pub mod oauth;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use keymesh::api_keys::{ApiKeyStore, IssuedApiKey, NewApiKey};
use keymesh::config::SigningConfig;
use keymesh::oauth::clients::{ClientStore, NewClient, RegisteredClient};
use keymesh::store::names::KeyNames;
use keymesh::support::kek::{Kek, KekSource};
use keymesh::{AppState, Clock, Config};
use tower::ServiceExt;

/// The frozen "now" of router tests.
pub const NOW: u64 = 1_700_000_000;
/// The issuer of router tests.
pub const ISSUER: &str = "https://issuer.test";

/// The key-encryption key of tests, in the base64 form `KEYMESH_KEK` takes.
pub const TEST_KEK: &str = "a2V5bWVzaCB0ZXN0IGtleS1lbmNyeXB0aW9uIGtleSE=";

/// [`TEST_KEK`] decoded.
pub fn test_kek() -> Kek {
    Kek::from_base64(TEST_KEK).unwrap()
}

pub use keymesh_test_support::{basic, form_urlencode, free_port};

/// A private redis-server ([`keymesh_test_support::RedisServer`]) with an async connection for the sidecar's
/// store calls.
pub struct RedisServer(keymesh_test_support::RedisServer);

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub fn start() -> Self {
        Self(keymesh_test_support::RedisServer::start())
    }

    /// Starts redis-server requiring `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self(keymesh_test_support::RedisServer::start_with_password(
            password,
        ))
    }

    /// A new async connection.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl std::ops::Deref for RedisServer {
    type Target = keymesh_test_support::RedisServer;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for RedisServer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// The configuration of a router test.
pub fn config(redis: &RedisServer, prefix: &str) -> Config {
    Config {
        redis_url: redis.url(),
        issuer: ISSUER.to_owned(),
        key_prefix: prefix.to_owned(),
        signing: SigningConfig {
            kek: Some(KekSource::Inline(test_kek())),
            ..SigningConfig::default()
        },
        ..Config::default()
    }
}

/// A running state and its router.
pub struct TestApp {
    pub config: Config,
    pub state: AppState,
    pub router: Router,
}

/// Starts a state on `prefix` with the frozen clock and waits for its first snapshot.
pub async fn start_app(redis: &RedisServer, prefix: &str) -> TestApp {
    start_app_with(config(redis, prefix)).await
}

/// Starts a state with `config` and the frozen clock and waits for its first snapshot.
pub async fn start_app_with(config: Config) -> TestApp {
    let state = AppState::start(config.clone(), Clock::fixed(NOW)).unwrap();
    tokio::time::timeout(Duration::from_secs(10), state.ready())
        .await
        .expect("first snapshot");
    let router = keymesh::app(state.clone());
    TestApp {
        config,
        state,
        router,
    }
}

/// Registers a client the way `keymesh client create` does.
pub async fn register(
    redis: &RedisServer,
    prefix: &str,
    id: &str,
    secret: Option<&str>,
    resources: &[&str],
    scopes: &[&str],
) -> RegisteredClient {
    let store = ClientStore::new(KeyNames::new(prefix));
    let new = NewClient {
        client_id: id.to_owned(),
        secret: secret.map(str::to_owned),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..NewClient::default()
    };
    store
        .register(&mut redis.conn().await, new, NOW)
        .await
        .unwrap()
}

/// A collected response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends one request through the router.
pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// `GET path` with extra headers.
pub async fn get(router: &Router, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(router, request.body(Body::empty()).unwrap()).await
}

/// `POST /oauth/token` with a form body and optional Authorization header.
pub async fn post_token(router: &Router, authorization: Option<&str>, body: &str) -> Reply {
    let mut request = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    }
    send(router, request.body(Body::from(body.to_owned())).unwrap()).await
}

/// Polls `check` every 50 ms until it returns `Some` or `within` passes.
pub use keymesh_test_support::eventually_async as eventually;

/// The bundle's version and kids as served by the router.
pub async fn served_bundle(router: &Router) -> (u64, Vec<String>) {
    let reply = get(router, "/v1/bundle", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let bundle: keymesh_core::bundle::BundleDto = serde_json::from_slice(&reply.body).unwrap();
    let kids = bundle.issuers[0]
        .jwks
        .keys
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    (bundle.version, kids)
}

/// Creates an API key the way `keymesh apikey create` does.
pub async fn create_key(
    redis: &RedisServer,
    prefix: &str,
    owner: &str,
    resources: &[&str],
) -> IssuedApiKey {
    let new = NewApiKey {
        owner: owner.to_owned(),
        label: format!("key of {owner}"),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        scopes: vec!["read".to_owned()],
        expires_in_secs: None,
        tier: None,
    };
    ApiKeyStore::new(KeyNames::new(prefix))
        .create(&mut redis.conn().await, new, NOW)
        .await
        .unwrap()
}

/// Waits until the app's mirror serves at least `version`; returns the version served.
pub async fn mirrored(app: &TestApp, version: u64) -> u64 {
    eventually(Duration::from_secs(5), || async {
        let served = app.state.mirror().snapshot()?.version();
        (served >= version).then_some(served)
    })
    .await
    .unwrap_or_else(|| panic!("mirror never reached version {version}"))
}

/// The version counter in Redis.
pub async fn redis_version(redis: &RedisServer, prefix: &str) -> u64 {
    redis::cmd("GET")
        .arg(format!("{prefix}version"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

/// Any request through the router, with headers and an optional body.
pub async fn call(
    router: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
    send(router, request.body(body).unwrap()).await
}

/// Any request through the router as if it arrived on a connection from `peer` (what the server's connect info
/// gives the handlers).
pub async fn call_from(
    router: &Router,
    peer: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    request = request.extension(axum::extract::ConnectInfo(peer));
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
    send(router, request.body(body).unwrap()).await
}

/// A `GET /v1/bundle` reply as a bundle.
pub fn bundle_of(reply: &Reply) -> keymesh_core::bundle::BundleDto {
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    serde_json::from_slice(&reply.body).unwrap()
}
