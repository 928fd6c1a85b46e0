//! The account page's session and its defences, through the router: cookie attributes, a new id at login, only a
//! hash in Redis, logout; CSRF and cross-site refusals on the forms and the JSON API; throttled sign-in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use support::account::*;
use support::oauth::*;
use support::*;

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
