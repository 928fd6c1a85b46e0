//! OAuth fixtures: clients and users, a small browser (one cookie jar) that walks the login and consent pages
//! through the router, PKCE pairs, and token requests of every grant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::http::StatusCode;
use axum::Router;
use keymesh::oauth::clients::{ClientStore, GrantType, NewClient, RegisteredClient};
use keymesh::oauth::pkce;
use keymesh::store::names::KeyNames;
use keymesh::{AppState, Clock};

use super::*;

pub const ORDERS: &str = "https://orders.test";
pub const BILLING: &str = "https://billing.test";
pub const WEB_CALLBACK: &str = "https://app.test/callback";
pub const NATIVE_CALLBACK: &str = "http://127.0.0.1/callback";
pub const PASSWORD: &str = "correct horse battery";

/// A clock the test moves.
#[derive(Clone)]
pub struct TestClock(Arc<AtomicU64>);

impl TestClock {
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

/// Starts an app on `prefix` whose clock starts at [`NOW`] and moves when the test says.
pub async fn start_app_with_clock(redis: &RedisServer, prefix: &str) -> (TestApp, TestClock) {
    start_app_at(redis, prefix, NOW).await
}

/// Starts an app on `prefix` whose clock starts at `start` and moves when the test says.
pub async fn start_app_at(redis: &RedisServer, prefix: &str, start: u64) -> (TestApp, TestClock) {
    let time = TestClock(Arc::new(AtomicU64::new(start)));
    let source = time.clone();
    let config = config(redis, prefix);
    let state = AppState::start(config.clone(), Clock::from_fn(move || source.now())).unwrap();
    tokio::time::timeout(Duration::from_secs(10), state.ready())
        .await
        .expect("first snapshot");
    let router = keymesh::app(state.clone());
    (
        TestApp {
            config,
            state,
            router,
        },
        time,
    )
}

/// Registers a confidential web client (`WEB_CALLBACK`) for orders and billing with `read` and `write`.
pub async fn web_client(redis: &RedisServer, prefix: &str, id: &str) -> RegisteredClient {
    register_client(
        redis,
        prefix,
        NewClient {
            client_id: id.into(),
            name: Some(format!("{id} app")),
            resources: vec![ORDERS.into(), BILLING.into()],
            scopes: vec!["read".into(), "write".into()],
            redirect_uris: vec![WEB_CALLBACK.into()],
            ..NewClient::default()
        },
    )
    .await
}

/// Registers a public native client (`NATIVE_CALLBACK`, any port) for orders and billing with `read` and `write`.
pub async fn native_client(redis: &RedisServer, prefix: &str, id: &str) -> RegisteredClient {
    register_client(
        redis,
        prefix,
        NewClient {
            client_id: id.into(),
            public: true,
            resources: vec![ORDERS.into(), BILLING.into()],
            scopes: vec!["read".into(), "write".into()],
            redirect_uris: vec![NATIVE_CALLBACK.into()],
            ..NewClient::default()
        },
    )
    .await
}

pub async fn register_client(
    redis: &RedisServer,
    prefix: &str,
    new: NewClient,
) -> RegisteredClient {
    ClientStore::new(KeyNames::new(prefix))
        .register(&mut redis.conn().await, new, NOW)
        .await
        .unwrap()
}

/// Stores a user with password [`PASSWORD`], hashed with Argon2id at the lowest cost so tests stay fast (the
/// parameters travel in the hash; real users get the default cost, see `users.rs`).
pub async fn create_user(redis: &RedisServer, prefix: &str, username: &str) {
    let params = Params::new(64, 1, 1, None).unwrap();
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(
            PASSWORD.as_bytes(),
            &SaltString::encode_b64(&[7; 16]).unwrap(),
        )
        .unwrap()
        .to_string();
    let record =
        serde_json::json!({"username": username, "password_hash": hash, "created_at": NOW});
    redis::cmd("SET")
        .arg(format!("{prefix}user:{username}"))
        .arg(record.to_string())
        .query_async::<()>(&mut redis.conn().await)
        .await
        .unwrap();
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    let verifier = keymesh::oauth::random_token(48);
    let challenge = pkce::s256(&verifier);
    (verifier, challenge)
}

/// The value of `name` in the query of `url`, decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n == name).then(|| percent_decode(v))
    })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else if bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// An authorization request's query string.
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub resources: Vec<String>,
    pub state: Option<String>,
    pub challenge: Option<String>,
    pub extra: Vec<(String, String)>,
}

impl AuthorizeRequest {
    /// `response_type=code` for `client_id` at `redirect_uri` with `state=xyz` and an S256 `challenge`.
    pub fn new(client_id: &str, redirect_uri: &str, challenge: Option<&str>) -> Self {
        Self {
            client_id: client_id.into(),
            redirect_uri: Some(redirect_uri.into()),
            scope: None,
            resources: vec![],
            state: Some("xyz".into()),
            challenge: challenge.map(str::to_owned),
            extra: vec![("response_type".into(), "code".into())],
        }
    }

    pub fn query(&self) -> String {
        let mut pairs: Vec<(String, String)> = self.extra.clone();
        pairs.push(("client_id".into(), self.client_id.clone()));
        if let Some(uri) = &self.redirect_uri {
            pairs.push(("redirect_uri".into(), uri.clone()));
        }
        if let Some(scope) = &self.scope {
            pairs.push(("scope".into(), scope.clone()));
        }
        for resource in &self.resources {
            pairs.push(("resource".into(), resource.clone()));
        }
        if let Some(state) = &self.state {
            pairs.push(("state".into(), state.clone()));
        }
        if let Some(challenge) = &self.challenge {
            pairs.push(("code_challenge".into(), challenge.clone()));
            pairs.push(("code_challenge_method".into(), "S256".into()));
        }
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        keymesh_test_support::form(&pairs)
    }
}

/// A browser: one cookie jar, pages fetched through the router.
pub struct Browser {
    pub router: Router,
    pub cookie: Option<String>,
    /// The address its requests come from (`ip:port`); none: the server is given no connection info.
    pub peer: Option<String>,
}

impl Browser {
    pub fn new(router: &Router) -> Self {
        Self {
            router: router.clone(),
            cookie: None,
            peer: None,
        }
    }

    fn remember(&mut self, reply: &Reply) {
        if let Some(set) = reply.header("set-cookie") {
            let pair = set.split(';').next().unwrap();
            self.cookie = Some(pair.to_owned());
        }
    }

    fn cookie_header(&self) -> Vec<(&str, &str)> {
        self.cookie
            .as_deref()
            .map(|c| vec![("cookie", c)])
            .unwrap_or_default()
    }

    /// `GET /oauth/authorize?query`.
    pub async fn authorize(&mut self, query: &str) -> Reply {
        let path = format!("/oauth/authorize?{query}");
        let reply = get(&self.router, &path, &self.cookie_header()).await;
        self.remember(&reply);
        reply
    }

    /// `POST /oauth/authorize` with a form body.
    pub async fn post(&mut self, body: &str) -> Reply {
        let mut headers = self.cookie_header();
        headers.push(("content-type", "application/x-www-form-urlencoded"));
        let reply = match &self.peer {
            Some(peer) => {
                super::call_from(
                    &self.router,
                    peer,
                    "POST",
                    "/oauth/authorize",
                    &headers,
                    Some(body),
                )
                .await
            }
            None => {
                call(
                    &self.router,
                    "POST",
                    "/oauth/authorize",
                    &headers,
                    Some(body),
                )
                .await
            }
        };
        self.remember(&reply);
        reply
    }

    /// Submits the page's form with `action` and extra fields.
    pub async fn submit(&mut self, page: &Reply, action: &str, fields: &[(&str, &str)]) -> Reply {
        let mut body = format!(
            "csrf={}&request={}&action={action}",
            hidden(page, "csrf"),
            hidden(page, "request")
        );
        for (name, value) in fields {
            body.push_str(&format!("&{name}={}", form_urlencode(value)));
        }
        self.post(&body).await
    }

    /// Logs in on a login page; returns the consent page.
    pub async fn log_in(&mut self, page: &Reply, username: &str) -> Reply {
        let consent = self
            .submit(
                page,
                "login",
                &[("username", username), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(consent.status, StatusCode::OK, "{}", text(&consent));
        assert!(text(&consent).contains("Approve"), "{}", text(&consent));
        consent
    }

    /// Runs the whole flow (log in if needed, approve); returns the redirect's `Location`.
    pub async fn approve(&mut self, request: &AuthorizeRequest, username: &str) -> String {
        let mut page = self.authorize(&request.query()).await;
        assert_eq!(page.status, StatusCode::OK, "{}", text(&page));
        if text(&page).contains("name=\"password\"") {
            page = self.log_in(&page, username).await;
        }
        let redirect = self.submit(&page, "approve", &[]).await;
        assert_eq!(
            redirect.status,
            StatusCode::SEE_OTHER,
            "{}",
            text(&redirect)
        );
        redirect.header("location").unwrap().to_owned()
    }

    /// Runs the whole flow and returns the code.
    pub async fn code(&mut self, request: &AuthorizeRequest, username: &str) -> String {
        let location = self.approve(request, username).await;
        query_param(&location, "code").unwrap_or_else(|| panic!("no code in {location}"))
    }
}

/// The body as text.
pub fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The value of the hidden input `name` on a page.
pub fn hidden(page: &Reply, name: &str) -> String {
    let html = text(page);
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// `POST /oauth/token` for a code, with optional Basic credentials (else `client_id` in the body).
pub async fn exchange(
    router: &Router,
    client: &RegisteredClient,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
    extra: &str,
) -> Reply {
    let mut body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}",
        form_urlencode(code),
        form_urlencode(redirect_uri)
    );
    if let Some(verifier) = verifier {
        body.push_str(&format!("&code_verifier={verifier}"));
    }
    body.push_str(extra);
    client_post(router, "/oauth/token", client, &body).await
}

/// `POST /oauth/token` with a refresh token.
pub async fn refresh(
    router: &Router,
    client: &RegisteredClient,
    token: &str,
    extra: &str,
) -> Reply {
    let body = format!(
        "grant_type=refresh_token&refresh_token={}{extra}",
        form_urlencode(token)
    );
    client_post(router, "/oauth/token", client, &body).await
}

/// A form POST authenticated as `client`: Basic for confidential clients, `client_id` for public ones.
pub async fn client_post(
    router: &Router,
    path: &str,
    client: &RegisteredClient,
    body: &str,
) -> Reply {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    let basic_value;
    let body = if client.public {
        format!("{body}&client_id={}", form_urlencode(&client.client_id))
    } else {
        basic_value = basic(&client.client_id, &client.client_secret);
        headers.push(("authorization", &basic_value));
        body.to_owned()
    };
    call(router, "POST", path, &headers, Some(&body)).await
}

/// The claims of a JWT, unverified (the token endpoint tests verify signatures).
pub fn claims(token: &str) -> serde_json::Value {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap()
}

/// The jtis listed as revoked in the full bundle.
pub async fn revoked_in_bundle(router: &Router) -> Vec<String> {
    let bundle = bundle_of(&get(router, "/v1/bundle", &[]).await);
    bundle.revoked_tokens.into_iter().map(|t| t.jti).collect()
}

/// Waits until the mirror lists `jti` as revoked.
pub async fn wait_revoked(app: &TestApp, jti: &str) {
    eventually(Duration::from_secs(5), || async {
        app.state.mirror().snapshot()?.is_revoked(jti).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{jti} never listed as revoked"));
}

/// All grant types, for clients that need them explicitly.
pub fn all_grants() -> Vec<GrantType> {
    GrantType::ALL.to_vec()
}
