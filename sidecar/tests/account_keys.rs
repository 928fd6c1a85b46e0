//! The account page and its JSON API, through the router: the session (cookie attributes, a new id at login, only
//! a hash in Redis, logout), CSRF and cross-site refusals, the operator's policy, and that a user can never see or
//! touch another user's keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use keymesh::api_keys::{KeyPolicy, PolicyStore};
use keymesh::store::names::KeyNames;
use support::oauth::*;
use support::*;

const PAGE: &str = "/account/api-keys";
const API: &str = "/v1/account/api-keys";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("content-type", "application/json");

/// A browser on the account page: one cookie, the CSRF token of the last page.
struct Account {
    router: axum::Router,
    cookie: Option<String>,
    csrf: String,
}

impl Account {
    fn new(app: &TestApp) -> Self {
        Self {
            router: app.router.clone(),
            cookie: None,
            csrf: String::new(),
        }
    }

    fn remember(&mut self, reply: &Reply) {
        if let Some(set) = reply.header("set-cookie") {
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        let html = text(reply);
        if html.contains("name=\"csrf\"") {
            self.csrf = hidden(reply, "csrf");
        }
    }

    fn with_cookie<'a>(&'a self, mut headers: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
        if let Some(cookie) = &self.cookie {
            headers.push(("cookie", cookie));
        }
        headers
    }

    async fn open(&mut self) -> Reply {
        let reply = get(&self.router, PAGE, &self.with_cookie(vec![])).await;
        self.remember(&reply);
        reply
    }

    /// Posts the page form with this session's CSRF token.
    async fn post(&mut self, action: &str, fields: &[(&str, &str)]) -> Reply {
        let body = form_body(&self.csrf, action, fields);
        self.post_raw(&body, &[]).await
    }

    async fn post_raw(&mut self, body: &str, extra: &[(&str, &str)]) -> Reply {
        let mut headers = self.with_cookie(vec![FORM]);
        headers.extend_from_slice(extra);
        let reply = call(&self.router, "POST", PAGE, &headers, Some(body)).await;
        self.remember(&reply);
        reply
    }

    async fn log_in(&mut self, username: &str) {
        self.open().await;
        let reply = self
            .post("login", &[("username", username), ("password", PASSWORD)])
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", text(&reply));
        let page = self.open().await;
        assert!(
            text(&page).contains(&format!("<strong id=\"user\">{username}</strong>")),
            "{}",
            text(&page)
        );
    }

    /// A JSON API call with the cookie and, if given, a CSRF header.
    async fn api(&self, method: &str, path: &str, csrf: Option<&str>, body: Option<&str>) -> Reply {
        let mut headers = self.with_cookie(vec![JSON]);
        if let Some(token) = csrf {
            headers.push(("x-csrf-token", token));
        }
        call(&self.router, method, path, &headers, body).await
    }
}

fn form_body(csrf: &str, action: &str, fields: &[(&str, &str)]) -> String {
    let mut body = format!("csrf={}&action={action}", form_urlencode(csrf));
    for (name, value) in fields {
        body.push_str(&format!("&{name}={}", form_urlencode(value)));
    }
    body
}

async fn set_policy(redis: &RedisServer, prefix: &str, user: Option<&str>, policy: KeyPolicy) {
    PolicyStore::new(KeyNames::new(prefix))
        .set(&mut redis.conn().await, user, policy)
        .await
        .unwrap();
}

fn orders_policy(max_keys: u32, max_lifetime_secs: Option<u64>) -> KeyPolicy {
    KeyPolicy {
        resources: vec![ORDERS.into(), BILLING.into()],
        scopes: vec!["read".into()],
        max_keys,
        max_lifetime_secs,
        tier: Some("free".into()),
    }
}

/// The new key shown on a page, if any.
fn new_key(reply: &Reply) -> Option<String> {
    let html = text(reply);
    let start = html.find("<code id=\"new-key-value\">")? + "<code id=\"new-key-value\">".len();
    Some(html[start..].split('<').next().unwrap().to_owned())
}

async fn redis_keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_session_is_a_hashed_cookie_renewed_at_login_and_ended_at_logout() {
    let redis = RedisServer::start();
    let p = "acct-session:";
    let app = start_app(&redis, p).await;
    create_user(&redis, p, "alice").await;
    let mut alice = Account::new(&app);

    let login = alice.open().await;
    assert_eq!(login.status, StatusCode::OK);
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(login.header(name), Some(value), "{name}");
    }
    assert!(login
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    // The issuer is https: Secure, and the __Host- prefix (host-only, path /).
    let set = login.header("set-cookie").unwrap();
    assert!(set.starts_with("__Host-keymesh_account="), "{set}");
    for attribute in [
        "; Path=/;",
        "; HttpOnly",
        "; SameSite=Lax",
        "; Secure",
        "Max-Age=3600",
    ] {
        assert!(set.contains(attribute), "{attribute} missing in {set}");
    }
    let anonymous = alice.cookie.clone().unwrap();

    let wrong = alice
        .post(
            "login",
            &[("username", "alice"), ("password", "wrong-password")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::OK);
    assert!(text(&wrong).contains("Wrong username or password."));
    alice.log_in("alice").await;
    let logged_in = alice.cookie.clone().unwrap();
    assert_ne!(anonymous, logged_in, "a new session id at login");
    // The anonymous id planted before login is worthless: it shows the login form again.
    let planted = get(&app.router, PAGE, &[("cookie", &anonymous)]).await;
    assert!(
        text(&planted).contains("name=\"password\""),
        "{}",
        text(&planted)
    );

    // Redis keeps only the SHA-256 of the id, with an expiry.
    let id = logged_in.split_once('=').unwrap().1;
    let sessions = redis_keys(&redis, &format!("{p}session:*")).await;
    assert!(!sessions.iter().any(|key| key.contains(id)), "{sessions:?}");
    let digest = keymesh::oauth::digest(id);
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{p}session:{digest}"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    assert!((1..=3_600).contains(&ttl), "ttl {ttl}");

    let out = alice.post("logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header("location"), Some(PAGE));
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = get(&app.router, PAGE, &[("cookie", &logged_in)]).await;
    assert!(
        text(&after).contains("name=\"password\""),
        "the session ended"
    );
    let api = call(&app.router, "GET", API, &[("cookie", &logged_in)], None).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forms_without_the_csrf_token_or_from_another_site_are_refused() {
    let redis = RedisServer::start();
    let p = "acct-csrf:";
    let app = start_app(&redis, p).await;
    create_user(&redis, p, "alice").await;
    set_policy(&redis, p, None, orders_policy(10, None)).await;
    let mut alice = Account::new(&app);
    alice.log_in("alice").await;
    let create = [
        ("label", "ci"),
        ("resource", ORDERS),
        ("expires_in", "86400"),
    ];
    let csrf = alice.csrf.clone();

    let mut missing = String::from("action=create");
    for (name, value) in create {
        missing.push_str(&format!("&{name}={}", form_urlencode(value)));
    }
    for (what, body, headers) in [
        ("no token", missing.clone(), vec![]),
        (
            "a wrong token",
            form_body("not-the-token", "create", &create),
            vec![],
        ),
        (
            "another origin",
            form_body(&csrf, "create", &create),
            vec![("origin", "https://evil.test")],
        ),
        (
            "a cross-site fetch",
            form_body(&csrf, "create", &create),
            vec![("sec-fetch-site", "cross-site")],
        ),
    ] {
        let reply = alice.post_raw(&body, &headers).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            text(&reply)
        );
        assert!(new_key(&reply).is_none(), "{what}");
    }
    // A form without a session at all.
    let cookieless = call(
        &app.router,
        "POST",
        PAGE,
        &[FORM],
        Some(&form_body(&csrf, "create", &create)),
    )
    .await;
    assert_eq!(cookieless.status, StatusCode::FORBIDDEN);
    assert!(alice.api("GET", API, None, None).await.json()["api_keys"]
        .as_array()
        .unwrap()
        .is_empty());

    // The same form from the page itself works.
    let reply = alice
        .post_raw(
            &form_body(&csrf, "create", &create),
            &[("origin", ISSUER), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    assert!(new_key(&reply).unwrap().starts_with("km_"));

    // The JSON API: a change needs the token in X-CSRF-Token, and not from another site.
    let body = format!(r#"{{"label":"api","resources":["{ORDERS}"]}}"#);
    for (what, token, extra) in [
        ("no header", None, None),
        ("a wrong header", Some("nope"), None),
        (
            "another origin",
            Some(csrf.as_str()),
            Some(("origin", "https://evil.test")),
        ),
    ] {
        let mut headers = alice.with_cookie(vec![JSON]);
        if let Some(token) = token {
            headers.push(("x-csrf-token", token));
        }
        headers.extend(extra);
        let reply = call(&app.router, "POST", API, &headers, Some(&body)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}");
        let code = reply.json()["error"].as_str().unwrap().to_owned();
        let expected = if extra.is_some() {
            "cross_site_request"
        } else {
            "invalid_csrf_token"
        };
        assert_eq!(code, expected, "{what}");
    }
    let listed = alice.api("GET", API, None, None).await.json();
    assert_eq!(listed["api_keys"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["csrf_token"], csrf.as_str());
    let created = alice.api("POST", API, Some(&csrf), Some(&body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", text(&created));
}

#[tokio::test]
async fn the_operator_policy_bounds_what_users_create() {
    let redis = RedisServer::start();
    let p = "acct-policy:";
    let app = start_app(&redis, p).await;
    create_user(&redis, p, "alice").await;
    let mut alice = Account::new(&app);
    alice.log_in("alice").await;
    let csrf = alice.csrf.clone();
    let create = |resource: &str, scope: &str, expires: Option<u64>| {
        let mut body =
            serde_json::json!({"label": "k", "resources": [resource], "scopes": [scope]});
        if let Some(secs) = expires {
            body["expires_in_secs"] = secs.into();
        }
        body.to_string()
    };

    // No policy: no keys, and the page says so instead of showing the form.
    let page = alice.open().await;
    assert!(
        text(&page).contains("id=\"no-keys-allowed\""),
        "{}",
        text(&page)
    );
    let refused = alice
        .api(
            "POST",
            API,
            Some(&csrf),
            Some(&create(ORDERS, "read", None)),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["error"], "policy_denied");

    set_policy(&redis, p, None, orders_policy(2, Some(7 * 86_400))).await;
    for (what, body, needle) in [
        (
            "a resource not allowed",
            create("https://other.test", "read", None),
            "https://other.test",
        ),
        (
            "a scope not allowed",
            create(ORDERS, "write", None),
            "write",
        ),
        (
            "a lifetime too long",
            create(ORDERS, "read", Some(8 * 86_400)),
            "604800",
        ),
    ] {
        let reply = alice.api("POST", API, Some(&csrf), Some(&body)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}");
        let json = reply.json();
        assert_eq!(json["error"], "policy_denied", "{what}: {json}");
        assert!(
            json["error_description"].as_str().unwrap().contains(needle),
            "{what}: {json}"
        );
    }
    // The page shows the same refusal to a crafted form, as an alert.
    let page = alice
        .post(
            "create",
            &[("label", "x"), ("resource", "https://other.test")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(text(&page).contains("role=\"alert\""), "{}", text(&page));

    // Without an expiry a key gets the maximum lifetime.
    let first = alice
        .api(
            "POST",
            API,
            Some(&csrf),
            Some(&create(ORDERS, "read", None)),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", text(&first));
    assert_eq!(first.json()["expires_at"], NOW + 7 * 86_400);
    let second = alice
        .api(
            "POST",
            API,
            Some(&csrf),
            Some(&create(BILLING, "read", Some(60))),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    let third = alice
        .api(
            "POST",
            API,
            Some(&csrf),
            Some(&create(ORDERS, "read", None)),
        )
        .await;
    assert_eq!(third.status, StatusCode::FORBIDDEN);
    assert!(third.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("most keys allowed (2)"));
    // Invalid input is the user's to fix: 400, not a policy matter.
    let bad_label = alice
        .api(
            "POST",
            API,
            Some(&csrf),
            Some(&format!(r#"{{"label":"","resources":["{ORDERS}"]}}"#)),
        )
        .await;
    assert_eq!(bad_label.status, StatusCode::BAD_REQUEST);

    // A user's own policy replaces the default whole.
    set_policy(
        &redis,
        p,
        Some("alice"),
        KeyPolicy {
            resources: vec!["https://other.test".into()],
            scopes: vec![],
            max_keys: 5,
            max_lifetime_secs: None,
            tier: None,
        },
    )
    .await;
    let own = alice
        .api(
            "POST",
            API,
            Some(&csrf),
            Some(r#"{"label":"o","resources":["https://other.test"]}"#),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", text(&own));
    assert_eq!(own.json()["expires_at"], serde_json::Value::Null);
    let default_resource = alice
        .api(
            "POST",
            API,
            Some(&csrf),
            Some(&create(ORDERS, "read", None)),
        )
        .await;
    assert_eq!(default_resource.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn users_never_see_or_touch_each_others_keys() {
    let redis = RedisServer::start();
    let p = "acct-owner:";
    let app = start_app(&redis, p).await;
    create_user(&redis, p, "alice").await;
    create_user(&redis, p, "bob").await;
    set_policy(&redis, p, None, orders_policy(10, None)).await;
    let mut bob = Account::new(&app);
    bob.log_in("bob").await;
    let bobs = bob
        .post(
            "create",
            &[("label", "bob's"), ("resource", ORDERS), ("scope", "read")],
        )
        .await;
    let bobs_key = new_key(&bobs).unwrap();
    let bobs_id = bob.api("GET", API, None, None).await.json()["api_keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut alice = Account::new(&app);
    alice.log_in("alice").await;
    let page = text(&alice.open().await);
    assert!(
        !page.contains(&bobs_id) && !page.contains("bob&#39;s"),
        "{page}"
    );
    for action in ["revoke", "regenerate", "disable", "enable"] {
        let reply = alice.post(action, &[("id", &bobs_id)]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{action}");
        assert!(new_key(&reply).is_none(), "{action}");
    }
    let csrf = alice.csrf.clone();
    let one = format!("{API}/{bobs_id}");
    for (method, path) in [
        ("GET", one.clone()),
        ("DELETE", one.clone()),
        ("POST", format!("{one}/regenerate")),
        ("POST", format!("{one}/disable")),
        ("POST", format!("{one}/enable")),
    ] {
        let reply = alice.api(method, &path, Some(&csrf), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(reply.json()["error"], "not_found");
    }
    // A guessed id answers exactly like another user's.
    let guessed = alice
        .api("GET", &format!("{API}/ak_AAAAAAAAAAAAAAAA"), None, None)
        .await;
    assert_eq!(guessed.status, StatusCode::NOT_FOUND);
    assert_eq!(guessed.body, alice.api("GET", &one, None, None).await.body);

    // Bob's key is untouched: same secret, still listed, still active.
    let listed = bob.api("GET", API, None, None).await.json();
    assert_eq!(listed["api_keys"][0]["id"], bobs_id.as_str());
    assert_eq!(listed["api_keys"][0]["state"], "active");
    let stored = keymesh::api_keys::ApiKeyStore::new(KeyNames::new(p))
        .get(&mut redis.conn().await, &bobs_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.hash, keymesh_core::apikey::hash_key(&bobs_key));
}

#[tokio::test]
async fn the_json_api_creates_lists_regenerates_and_revokes() {
    let redis = RedisServer::start();
    let p = "acct-api:";
    let app = start_app(&redis, p).await;
    create_user(&redis, p, "alice").await;
    set_policy(&redis, p, None, orders_policy(10, None)).await;

    let anonymous = call(&app.router, "GET", API, &[], None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.json()["error"], "unauthorized");
    assert!(anonymous
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));

    let mut alice = Account::new(&app);
    alice.log_in("alice").await;
    let csrf = alice.csrf.clone();
    let created = alice
        .api(
            "POST",
            API,
            Some(&csrf),
            Some(&format!(r#"{{"label":"cli","resources":["{ORDERS}"],"scopes":["read"],"expires_in_secs":3600}}"#)),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", text(&created));
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let created = created.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["expires_at"], NOW + 3_600);
    assert_eq!(created["tier"], "free", "the policy's tier");

    let listed = alice.api("GET", API, None, None).await;
    let body = text(&listed);
    assert!(!body.contains(&key), "the key is never listed: {body}");
    let json = listed.json();
    assert_eq!(json["user"], "alice");
    assert_eq!(json["api_keys"][0]["state"], "active");
    assert_eq!(json["api_keys"][0]["tier"], "free");
    assert_eq!(json["api_keys"][0]["prefix"], created["prefix"]);
    assert_eq!(json["policy"]["max_keys"], 10);
    // The page lists it without the secret too.
    let page = text(&alice.open().await);
    assert!(page.contains(&id) && !page.contains(&key), "{page}");

    // Last used, as the filters' reports record it (to the minute), on the page and in the API.
    redis::cmd("HSET")
        .arg(format!("{p}apikeys:last_used"))
        .arg(&id)
        .arg(NOW - 60)
        .query_async::<()>(&mut redis.conn().await)
        .await
        .unwrap();
    let one = alice
        .api("GET", &format!("{API}/{id}"), None, None)
        .await
        .json();
    assert_eq!(one["last_used_at"], NOW - 60, "{one}");
    assert!(text(&alice.open().await).contains("2023-11-14 22:12 UTC"));

    // Disable and enable, on the API and on the page.
    let disabled = alice
        .api("POST", &format!("{API}/{id}/disable"), Some(&csrf), None)
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", text(&disabled));
    assert_eq!(disabled.json()["state"], "disabled");
    let page = alice.open().await;
    assert!(text(&page).contains(r#"<span class="state state-disabled">disabled</span>"#));
    let enabled = alice.post("enable", &[("id", &id)]).await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER);
    let listed = alice.api("GET", API, None, None).await.json();
    assert_eq!(listed["api_keys"][0]["state"], "active", "{listed}");

    // Regenerate with a grace period: the old secret is listed (by prefix) until when it works.
    let too_long = alice
        .api(
            "POST",
            &format!("{API}/{id}/regenerate"),
            Some(&csrf),
            Some(r#"{"grace_secs":604801}"#),
        )
        .await;
    assert_eq!(
        too_long.status,
        StatusCode::BAD_REQUEST,
        "{}",
        text(&too_long)
    );
    let regenerated = alice
        .api(
            "POST",
            &format!("{API}/{id}/regenerate"),
            Some(&csrf),
            Some(r#"{"grace_secs":3600}"#),
        )
        .await;
    assert_eq!(regenerated.status, StatusCode::OK, "{}", text(&regenerated));
    let new = regenerated.json()["key"].as_str().unwrap().to_owned();
    assert_ne!(new, key);
    let listed = alice.api("GET", API, None, None).await.json();
    let previous = &listed["api_keys"][0]["previous_secret"];
    assert_eq!(previous["until"], NOW + 3_600, "{listed}");
    assert_eq!(previous["prefix"], created["prefix"], "{listed}");
    // On the page: regenerate with the grace menu, the new key shown once.
    let page = alice
        .post("regenerate", &[("id", &id), ("grace", "86400")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", text(&page));
    let newest = new_key(&page).unwrap();
    assert_ne!(newest, new);
    // A day of grace, capped by the key's own expiry an hour from now.
    assert!(
        text(&page).contains("works until 2023-11-14 23:13 UTC"),
        "{}",
        text(&page)
    );
    let malformed = alice.api("POST", API, Some(&csrf), Some("{")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json()["error"], "invalid_request");

    let revoked = alice
        .api("DELETE", &format!("{API}/{id}"), Some(&csrf), None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let again = alice
        .api("DELETE", &format!("{API}/{id}"), Some(&csrf), None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bearer_token_with_the_account_scope_speaks_for_its_user() {
    let redis = RedisServer::start();
    let p = "acct-bearer:";
    let app = start_app(&redis, p).await;
    create_user(&redis, p, "alice").await;
    set_policy(&redis, p, None, orders_policy(10, None)).await;
    let portal = register_client(
        &redis,
        p,
        keymesh::oauth::clients::NewClient {
            client_id: "portal".into(),
            resources: vec![ISSUER.into(), ORDERS.into()],
            scopes: vec!["keymesh:keys".into(), "read".into()],
            redirect_uris: vec![WEB_CALLBACK.into()],
            ..Default::default()
        },
    )
    .await;
    let good = portal_token(&app, &portal, "keymesh:keys", ISSUER).await;
    let unscoped = portal_token(&app, &portal, "read", ISSUER).await;
    let other_audience = portal_token(&app, &portal, "keymesh:keys", ORDERS).await;

    let bearer = |token: &str| format!("Bearer {token}");
    let body = format!(r#"{{"label":"portal","resources":["{ORDERS}"]}}"#);
    let created = call(
        &app.router,
        "POST",
        API,
        &[JSON, ("authorization", &bearer(&good))],
        Some(&body),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", text(&created));
    assert_eq!(created.json()["owner"], "alice");
    let listed = call(
        &app.router,
        "GET",
        API,
        &[("authorization", &bearer(&good))],
        None,
    )
    .await;
    let listed = listed.json();
    assert_eq!(listed["api_keys"].as_array().unwrap().len(), 1);
    assert!(listed.get("csrf_token").is_none(), "{listed}");

    let scope = call(
        &app.router,
        "GET",
        API,
        &[("authorization", &bearer(&unscoped))],
        None,
    )
    .await;
    assert_eq!(scope.status, StatusCode::FORBIDDEN);
    assert_eq!(scope.json()["error"], "insufficient_scope");
    for bad in [other_audience.as_str(), "not.a.token", "x"] {
        let reply = call(
            &app.router,
            "GET",
            API,
            &[("authorization", &bearer(bad))],
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(reply
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
    }
}

/// Alice's access token for the portal client with `scope` for `resource` (authorization code grant).
async fn portal_token(
    app: &TestApp,
    portal: &keymesh::oauth::clients::RegisteredClient,
    scope: &str,
    resource: &str,
) -> String {
    let mut request = AuthorizeRequest::new("portal", WEB_CALLBACK, None);
    request.scope = Some(scope.to_owned());
    request.resources = vec![resource.to_owned()];
    let code = Browser::new(&app.router).code(&request, "alice").await;
    let reply = exchange(&app.router, portal, &code, WEB_CALLBACK, None, "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_user_and_source_like_the_authorization_page() {
    let redis = RedisServer::start();
    let p = "acct-throttle:";
    let app = start_app(&redis, p).await;
    create_user(&redis, p, "alice").await;
    // Each attempt from its own browser session, as an attacker would; all from one address.
    let attempt = |peer: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let mut browser = Account::new(app);
            browser.open().await;
            let body = form_body(
                &browser.csrf,
                "login",
                &[("username", "alice"), ("password", password)],
            );
            let cookie = browser.cookie.clone().unwrap();
            call_from(
                &app.router,
                peer,
                "POST",
                PAGE,
                &[FORM, ("cookie", &cookie)],
                Some(&body),
            )
            .await
        }
    };
    for _ in 0..10 {
        let reply = attempt("203.0.113.7:5000", "wrong-password").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(text(&reply).contains("Wrong username or password."));
    }
    // The attacker's address is locked out, even with the right password…
    let locked = attempt("203.0.113.7:5001", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(text(&locked).contains("Too many failed attempts"));
    // …while alice, from her own address, signs in.
    let own = attempt("198.51.100.4:6000", PASSWORD).await;
    assert_eq!(own.status, StatusCode::SEE_OTHER, "{}", text(&own));
}
