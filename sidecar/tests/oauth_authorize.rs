//! `GET`/`POST /oauth/authorize` through the router against a real Redis: the error page versus redirected errors,
//! PKCE and redirect URI rules, the login and consent pages, sessions, CSRF and login throttling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use keymesh::oauth::clients::{GrantType, NewClient};
use support::oauth::*;
use support::*;

const P: &str = "az:";

#[tokio::test]
async fn an_untrusted_client_or_redirect_uri_gets_an_error_page_never_a_redirect() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    web_client(&redis, P, "web").await;
    native_client(&redis, P, "cli").await;
    register_client(
        &redis,
        P,
        NewClient {
            client_id: "local-web".into(),
            resources: vec![ORDERS.into()],
            redirect_uris: vec!["http://127.0.0.1:8000/callback".into()],
            ..NewClient::default()
        },
    )
    .await;
    let (_, challenge) = pkce_pair();
    let mut browser = Browser::new(&app.router);

    let mut cases: Vec<(&str, String)> = vec![
        (
            "no client_id",
            "response_type=code&redirect_uri=https%3A%2F%2Fapp.test%2Fcallback".into(),
        ),
        (
            "unknown client",
            AuthorizeRequest::new("nobody", WEB_CALLBACK, None).query(),
        ),
        (
            "repeated parameter",
            format!(
                "{}&state=again",
                AuthorizeRequest::new("web", WEB_CALLBACK, None).query()
            ),
        ),
    ];
    for uri in [
        "https://app.test/callback/",
        "https://app.test/callback?x=1",
        "https://app.test/callbacks",
        "https://APP.test/callback",
        "http://app.test/callback",
        "https://app.test:443/callback",
        "https://evil.test/callback",
    ] {
        cases.push((
            "redirect uri not registered",
            AuthorizeRequest::new("web", uri, None).query(),
        ));
    }
    // The loopback port exception is for native (public) clients only, and only for the port.
    cases.push((
        "loopback port on a confidential client",
        AuthorizeRequest::new("local-web", "http://127.0.0.1:5555/callback", None).query(),
    ));
    for uri in [
        "http://127.0.0.1:5555/other",
        "http://localhost:5555/callback",
        "https://127.0.0.1:5555/callback",
    ] {
        cases.push((
            "loopback path or host differs",
            AuthorizeRequest::new("cli", uri, Some(&challenge)).query(),
        ));
    }
    for (name, query) in cases {
        let reply = browser.authorize(&query).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}: {query}");
        assert_eq!(reply.header("location"), None, "{name}");
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/html"),
            "{name}"
        );
        assert!(
            text(&reply).contains("Cannot continue"),
            "{name}: {}",
            text(&reply)
        );
    }

    // The native client's registered loopback URI matches with whatever port the app listens on.
    let native = AuthorizeRequest::new("cli", "http://127.0.0.1:51234/callback", Some(&challenge));
    let reply = browser.authorize(&native.query()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", text(&reply));
    assert!(text(&reply).contains("Sign in"));
    // A confidential client's loopback URI matches exactly.
    let exact = AuthorizeRequest::new("local-web", "http://127.0.0.1:8000/callback", None);
    assert_eq!(
        browser.authorize(&exact.query()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn request_errors_go_back_to_the_client_with_its_state() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    web_client(&redis, P, "web").await;
    native_client(&redis, P, "cli").await;
    register_client(
        &redis,
        P,
        NewClient {
            client_id: "machine".into(),
            resources: vec![ORDERS.into()],
            redirect_uris: vec![WEB_CALLBACK.into()],
            grant_types: vec![GrantType::ClientCredentials],
            ..NewClient::default()
        },
    )
    .await;
    let (_, challenge) = pkce_pair();
    let mut browser = Browser::new(&app.router);

    let with = |client: &str, edit: &dyn Fn(&mut AuthorizeRequest)| {
        let mut request = AuthorizeRequest::new(client, WEB_CALLBACK, None);
        edit(&mut request);
        request
    };
    let cases: Vec<(&str, AuthorizeRequest, &str)> = vec![
        (
            "implicit grant",
            with("web", &|r| {
                r.extra = vec![("response_type".into(), "token".into())]
            }),
            "unsupported_response_type",
        ),
        (
            "hybrid",
            with("web", &|r| {
                r.extra = vec![("response_type".into(), "code token".into())]
            }),
            "unsupported_response_type",
        ),
        (
            "no response_type",
            with("web", &|r| r.extra.clear()),
            "invalid_request",
        ),
        (
            "fragment response mode",
            with("web", &|r| {
                r.extra.push(("response_mode".into(), "fragment".into()))
            }),
            "invalid_request",
        ),
        (
            "scope not allowed",
            with("web", &|r| r.scope = Some("read admin".into())),
            "invalid_scope",
        ),
        (
            "resource not allowed",
            with("web", &|r| r.resources = vec!["https://other.test".into()]),
            "invalid_target",
        ),
        (
            "plain PKCE",
            with("web", &|r| {
                r.extra.push(("code_challenge".into(), challenge.clone()));
                r.extra
                    .push(("code_challenge_method".into(), "plain".into()));
            }),
            "invalid_request",
        ),
        (
            "PKCE without method (means plain)",
            with("web", &|r| {
                r.extra.push(("code_challenge".into(), challenge.clone()))
            }),
            "invalid_request",
        ),
        (
            "malformed challenge",
            with("web", &|r| {
                r.extra.push(("code_challenge".into(), "too-short".into()));
                r.extra
                    .push(("code_challenge_method".into(), "S256".into()));
            }),
            "invalid_request",
        ),
        (
            "not registered for the code grant",
            with("machine", &|_| {}),
            "unauthorized_client",
        ),
    ];
    for (name, request, error) in cases {
        let reply = browser.authorize(&request.query()).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{name}: {}",
            text(&reply)
        );
        let location = reply.header("location").unwrap();
        assert!(
            location.starts_with(&format!("{WEB_CALLBACK}?")),
            "{name}: {location}"
        );
        assert_eq!(
            query_param(location, "error").as_deref(),
            Some(error),
            "{name}: {location}"
        );
        assert_eq!(
            query_param(location, "state").as_deref(),
            Some("xyz"),
            "{name}"
        );
        assert_eq!(
            query_param(location, "iss").as_deref(),
            Some(ISSUER),
            "{name}"
        );
        assert!(query_param(location, "code").is_none(), "{name}");
    }

    // A public client must use PKCE.
    let reply = browser
        .authorize(&AuthorizeRequest::new("cli", NATIVE_CALLBACK, None).query())
        .await;
    let location = reply.header("location").unwrap();
    assert_eq!(
        query_param(location, "error").as_deref(),
        Some("invalid_request"),
        "{location}"
    );
    assert!(query_param(location, "error_description")
        .unwrap()
        .contains("code_challenge"));
    let ok = browser
        .authorize(&AuthorizeRequest::new("cli", NATIVE_CALLBACK, Some(&challenge)).query())
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn log_in_consent_and_approve_sends_a_code_and_the_state_back() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    web_client(&redis, P, "web").await;
    create_user(&redis, P, "alice").await;
    let mut browser = Browser::new(&app.router);
    let mut request = AuthorizeRequest::new("web", WEB_CALLBACK, None);
    request.scope = Some("read".into());
    request.resources = vec![ORDERS.into()];
    request.state = Some("opaque/state with spaces&=".into());

    let login = browser.authorize(&request.query()).await;
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
    let cookie = login.header("set-cookie").unwrap().to_owned();
    assert!(cookie.starts_with("keymesh_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/oauth", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(text(&login).contains("web app"), "the client's name");
    let first_cookie = browser.cookie.clone().unwrap();

    let consent = browser.log_in(&login, "alice").await;
    let html = text(&consent);
    assert!(
        html.contains("<span id=\"client-name\">web app</span>"),
        "{html}"
    );
    assert!(html.contains("<code id=\"client-id\">web</code>"), "{html}");
    assert!(html.contains(&format!("<code>{ORDERS}</code>")), "{html}");
    assert!(!html.contains(BILLING), "only the requested API: {html}");
    assert!(
        html.contains("<code>read</code>") && !html.contains("<code>write</code>"),
        "{html}"
    );
    assert!(
        html.contains("<strong id=\"user\">alice</strong>"),
        "{html}"
    );
    assert_ne!(
        browser.cookie.as_ref(),
        Some(&first_cookie),
        "a new session id after login"
    );
    // The session id from before the login (one an attacker could have planted) is dead.
    let mut planted = Browser::new(&app.router);
    planted.cookie = Some(first_cookie);
    let reply = planted.submit(&login, "approve", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(text(&reply).contains("session has expired"));

    let redirect = browser.submit(&consent, "approve", &[]).await;
    assert_eq!(redirect.status, StatusCode::SEE_OTHER);
    assert_eq!(redirect.header("cache-control"), Some("no-store"));
    let location = redirect.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{WEB_CALLBACK}?code=")),
        "{location}"
    );
    assert_eq!(
        query_param(location, "state").as_deref(),
        Some("opaque/state with spaces&=")
    );
    assert_eq!(query_param(location, "iss").as_deref(), Some(ISSUER));
    let code = query_param(location, "code").unwrap();
    assert!(code.len() >= 43, "at least 256 bits, base64url: {code}");

    // Logged in: the next request goes straight to the consent page; the answered request cannot be answered again.
    let again = browser.authorize(&request.query()).await;
    assert!(text(&again).contains("Approve") && !text(&again).contains("name=\"password\""));
    let replay = browser.submit(&consent, "approve", &[]).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(
        text(&replay).contains("already answered"),
        "{}",
        text(&replay)
    );
    assert_eq!(replay.header("location"), None);
}

#[tokio::test]
async fn deny_sends_access_denied_and_the_state_back() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    native_client(&redis, P, "cli").await;
    create_user(&redis, P, "alice").await;
    let (_, challenge) = pkce_pair();
    let mut browser = Browser::new(&app.router);
    let request = AuthorizeRequest::new("cli", "http://127.0.0.1:40000/callback", Some(&challenge));
    let login = browser.authorize(&request.query()).await;
    let consent = browser.log_in(&login, "alice").await;
    let denied = browser.submit(&consent, "deny", &[]).await;
    assert_eq!(denied.status, StatusCode::SEE_OTHER);
    let location = denied.header("location").unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:40000/callback?error=access_denied"),
        "{location}"
    );
    assert_eq!(query_param(location, "state").as_deref(), Some("xyz"));
    assert!(query_param(location, "code").is_none());
}

#[tokio::test]
async fn forms_need_their_session_and_its_csrf_token() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    web_client(&redis, P, "web").await;
    create_user(&redis, P, "alice").await;
    let request = AuthorizeRequest::new("web", WEB_CALLBACK, None);
    let mut alice = Browser::new(&app.router);
    let login = alice.authorize(&request.query()).await;
    let csrf = hidden(&login, "csrf");
    let request_id = hidden(&login, "request");
    let form = |csrf: &str, request_id: &str| {
        format!(
            "csrf={csrf}&request={request_id}&action=login&username=alice&password={}",
            form_urlencode(PASSWORD)
        )
    };

    // No cookie (a cross-site POST: SameSite=Lax keeps the cookie home).
    let mut stranger = Browser::new(&app.router);
    let reply = stranger.post(&form(&csrf, &request_id)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        text(&reply).contains("session has expired"),
        "{}",
        text(&reply)
    );

    // Missing or wrong CSRF token.
    for bad in ["", "AAAA", &csrf[1..]] {
        let reply = alice.post(&form(bad, &request_id)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{bad:?}");
    }
    // A request parked by another session.
    let mut mallory = Browser::new(&app.router);
    let theirs = mallory.authorize(&request.query()).await;
    let reply = alice.post(&form(&csrf, &hidden(&theirs, "request"))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(text(&reply).contains("expired or was already answered"));
    // Mallory's CSRF token with Alice's cookie.
    let reply = alice
        .post(&form(&hidden(&theirs, "csrf"), &request_id))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // The right session, token and request.
    let reply = alice.post(&form(&csrf, &request_id)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(text(&reply).contains("Approve"));
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_throttled_per_user() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    web_client(&redis, P, "web").await;
    create_user(&redis, P, "alice").await;
    create_user(&redis, P, "bob").await;
    let mut browser = Browser::new(&app.router);
    let login = browser
        .authorize(&AuthorizeRequest::new("web", WEB_CALLBACK, None).query())
        .await;

    let unknown = browser
        .submit(
            &login,
            "login",
            &[("username", "mallory"), ("password", PASSWORD)],
        )
        .await;
    assert!(text(&unknown).contains("Wrong username or password."));
    for _ in 0..10 {
        let wrong = browser
            .submit(
                &login,
                "login",
                &[("username", "alice"), ("password", "guess-guess")],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::OK);
        assert!(
            text(&wrong).contains("Wrong username or password."),
            "{}",
            text(&wrong)
        );
        assert!(text(&wrong).contains("name=\"password\""));
    }
    // Alice's account is throttled, even for the right password; Bob's is not.
    let throttled = browser
        .submit(
            &login,
            "login",
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(text(&throttled).contains("Too many failed attempts"));
    browser.log_in(&login, "bob").await;
}
