//! Shared test fixtures: a real redis-server per test, an app state on a chosen key prefix, request helpers.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

pub mod oauth;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::Router;
use base64ct::{Base64, Encoding};
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

/// A port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private redis-server, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// `--requirepass`, if any.
    password: Option<String>,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts redis-server requiring `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> Self {
        for _ in 0..5 {
            let mut server = Self {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().unwrap(),
                password: password.clone(),
            };
            // Another process may grab the port between `free_port` and redis binding it: then try another.
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start");
    }

    fn spawn(&mut self) -> bool {
        wait_for_redis_binary();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(
                self.password
                    .iter()
                    .flat_map(|password| ["--requirepass", password.as_str()]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().unwrap().is_some() {
                    self.child = None;
                    return false;
                }
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .is_ok_and(|pong| pong == "PONG")
    }

    /// `redis://127.0.0.1:PORT/`, with `:PASSWORD@` if the server requires one.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Kills the server (its data is gone: persistence is off).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for `/usr/bin/redis-server` in case it is still being installed.
fn wait_for_redis_binary() {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !std::path::Path::new("/usr/bin/redis-server").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
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

/// `Basic` credentials, form-encoding id and secret as RFC 6749 §2.3.1 asks.
pub fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencode(s);
    format!(
        "Basic {}",
        Base64::encode_string(format!("{}:{}", encode(id), encode(secret)).as_bytes())
    )
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` every 50 ms until it returns `Some` or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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

/// A `GET /v1/bundle` reply as a bundle.
pub fn bundle_of(reply: &Reply) -> keymesh_core::bundle::BundleDto {
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    serde_json::from_slice(&reply.body).unwrap()
}
