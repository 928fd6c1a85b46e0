//! The account page through the router: a browser with one cookie and the CSRF token of the last page, policies,
//! and the shapes of its forms.

use axum::http::StatusCode;
use keymesh::api_keys::{KeyPolicy, PolicyStore};
use keymesh::store::names::KeyNames;

use super::oauth::*;
use super::*;

pub const PAGE: &str = "/account/api-keys";
pub const API: &str = "/v1/account/api-keys";
pub const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
pub const JSON: (&str, &str) = ("content-type", "application/json");

/// A browser on the account page: one cookie, the CSRF token of the last page.
pub struct Account {
    pub router: axum::Router,
    pub cookie: Option<String>,
    pub csrf: String,
}

impl Account {
    pub fn new(app: &TestApp) -> Self {
        Self {
            router: app.router.clone(),
            cookie: None,
            csrf: String::new(),
        }
    }

    pub fn remember(&mut self, reply: &Reply) {
        if let Some(set) = reply.header("set-cookie") {
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        let html = text(reply);
        if html.contains("name=\"csrf\"") {
            self.csrf = hidden(reply, "csrf");
        }
    }

    pub fn with_cookie<'a>(
        &'a self,
        mut headers: Vec<(&'a str, &'a str)>,
    ) -> Vec<(&'a str, &'a str)> {
        if let Some(cookie) = &self.cookie {
            headers.push(("cookie", cookie));
        }
        headers
    }

    pub async fn open(&mut self) -> Reply {
        let reply = get(&self.router, PAGE, &self.with_cookie(vec![])).await;
        self.remember(&reply);
        reply
    }

    /// Posts the page form with this session's CSRF token.
    pub async fn post(&mut self, action: &str, fields: &[(&str, &str)]) -> Reply {
        let body = form_body(&self.csrf, action, fields);
        self.post_raw(&body, &[]).await
    }

    pub async fn post_raw(&mut self, body: &str, extra: &[(&str, &str)]) -> Reply {
        let mut headers = self.with_cookie(vec![FORM]);
        headers.extend_from_slice(extra);
        let reply = call(&self.router, "POST", PAGE, &headers, Some(body)).await;
        self.remember(&reply);
        reply
    }

    pub async fn log_in(&mut self, username: &str) {
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
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        csrf: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut headers = self.with_cookie(vec![JSON]);
        if let Some(token) = csrf {
            headers.push(("x-csrf-token", token));
        }
        call(&self.router, method, path, &headers, body).await
    }
}

pub fn form_body(csrf: &str, action: &str, fields: &[(&str, &str)]) -> String {
    let mut body = format!("csrf={}&action={action}", form_urlencode(csrf));
    for (name, value) in fields {
        body.push_str(&format!("&{name}={}", form_urlencode(value)));
    }
    body
}

pub async fn set_policy(redis: &RedisServer, prefix: &str, user: Option<&str>, policy: KeyPolicy) {
    PolicyStore::new(KeyNames::new(prefix))
        .set(&mut redis.conn().await, user, policy)
        .await
        .unwrap();
}

pub fn orders_policy(max_keys: u32, max_lifetime_secs: Option<u64>) -> KeyPolicy {
    KeyPolicy {
        resources: vec![ORDERS.into(), BILLING.into()],
        scopes: vec!["read".into()],
        max_keys,
        max_lifetime_secs,
        tier: Some("free".into()),
    }
}

/// The new key shown on a page, if any.
pub fn new_key(reply: &Reply) -> Option<String> {
    let html = text(reply);
    let start = html.find("<code id=\"new-key-value\">")? + "<code id=\"new-key-value\">".len();
    Some(html[start..].split('<').next().unwrap().to_owned())
}

pub async fn redis_keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut redis.conn().await)
        .await
        .unwrap()
}
