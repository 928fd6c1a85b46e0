//! RFC 9700 (OAuth 2.0 Security BCP) requirements on the authorization server's pages and redirects that other
//! tests do not cover whole: every page a user sees (login, consent, error) keeps out of frames (clickjacking,
//! §4.4.1.9), caches and referrers (credential leakage through the `Referer`, §4.2.4), and every redirect after a
//! form POST is `303 See Other`, never `307`, which would make the browser re-post the user's credentials to the
//! client (§4.12).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use support::oauth::*;
use support::*;

const P: &str = "bcp:";

fn assert_page_headers(what: &str, reply: &Reply) {
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
    let csp = reply.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
}

#[tokio::test]
async fn pages_refuse_framing_caching_and_referrers_and_redirects_are_303() {
    let redis = RedisServer::start();
    let app = start_app(&redis, P).await;
    web_client(&redis, P, "web").await;
    create_user(&redis, P, "alice").await;
    let mut browser = Browser::new(&app.router);
    let request = AuthorizeRequest::new("web", WEB_CALLBACK, None);

    let login = browser.authorize(&request.query()).await;
    assert_page_headers("login page", &login);
    let wrong = browser
        .submit(
            &login,
            "login",
            &[("username", "alice"), ("password", "wrong-wrong")],
        )
        .await;
    assert_page_headers("login page after a failed login", &wrong);
    let consent = browser.log_in(&login, "alice").await;
    assert_page_headers("consent page", &consent);
    let error = browser
        .authorize(&AuthorizeRequest::new("nobody", WEB_CALLBACK, None).query())
        .await;
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    assert_page_headers("error page", &error);

    // The approval and the denial are answers to a POST: 303, so the browser follows with a GET and never
    // re-posts the form (with the user's password, on a login+approve flow) to the client.
    let approved = browser.submit(&consent, "approve", &[]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER);
    assert_eq!(approved.header("referrer-policy"), Some("no-referrer"));
    let consent = browser.authorize(&request.query()).await;
    let denied = browser.submit(&consent, "deny", &[]).await;
    assert_eq!(denied.status, StatusCode::SEE_OTHER);
    assert_eq!(denied.header("referrer-policy"), Some("no-referrer"));
    let location = denied.header("location").unwrap();
    assert_eq!(
        query_param(location, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        query_param(location, "iss").as_deref(),
        Some(ISSUER),
        "RFC 9207 on errors too"
    );
    // An error sent back to the client from the GET is a 303 as well.
    let mut bad = AuthorizeRequest::new("web", WEB_CALLBACK, None);
    bad.scope = Some("not-a-scope-of-web".into());
    let redirect = browser.authorize(&bad.query()).await;
    assert_eq!(redirect.status, StatusCode::SEE_OTHER);
    assert_eq!(redirect.header("referrer-policy"), Some("no-referrer"));
}
