//! The account page and its JSON API, through the router: the operator's policy (and its CLI), that a user can
//! never see or touch another user's keys, the key lifecycle through the JSON API, and bearer tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use keymesh::api_keys::KeyPolicy;
use keymesh::store::names::KeyNames;
use support::account::*;
use support::oauth::*;
use support::*;

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
async fn operators_set_show_and_clear_policies_with_the_cli() {
    let redis = RedisServer::start();
    let p = "acct-cli:";
    let show = |user: &'static str| {
        let redis = &redis;
        async move {
            let out = policy_cli(redis, p, &["show", "--user", user, "--json"])
                .await
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        }
    };
    assert_eq!(show("alice").await["source"], "built_in");
    assert_eq!(show("alice").await["max_keys"], 0);

    policy_cli(
        &redis,
        p,
        &[
            "set",
            "--default",
            "--resource",
            ORDERS,
            "--scope",
            "read",
            "--max-lifetime",
            "30d",
        ],
    )
    .await
    .unwrap();
    let default = show("alice").await;
    assert_eq!(default["source"], "default", "{default}");
    assert_eq!(default["max_keys"], 10, "the default maximum");
    assert_eq!(default["max_lifetime_secs"], 30 * 86_400);

    let out = policy_cli(
        &redis,
        p,
        &[
            "set",
            "--user",
            "alice",
            "--resource",
            BILLING,
            "--max-keys",
            "2",
            "--tier",
            "pro",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("key policy of user alice set"), "{out}");
    let own = show("alice").await;
    assert_eq!(own["source"], "user", "{own}");
    assert_eq!(own["resources"], serde_json::json!([BILLING]));
    assert_eq!(own["tier"], "pro");
    assert_eq!(
        own["max_lifetime_secs"],
        serde_json::Value::Null,
        "replaces the default whole"
    );
    assert_eq!(show("bob").await["source"], "default");

    policy_cli(&redis, p, &["clear", "--user", "alice"])
        .await
        .unwrap();
    assert_eq!(show("alice").await["source"], "default");
    let again = policy_cli(&redis, p, &["clear", "--user", "alice"]).await;
    assert_eq!(again, Err("no key policy for user alice".to_owned()));

    for (args, needle) in [
        (
            &["set", "--default", "--resource", "orders"][..],
            "invalid resource",
        ),
        (
            &["set", "--default", "--resource", ORDERS, "--tier", "a b"],
            "invalid tier",
        ),
        (
            &[
                "set",
                "--default",
                "--resource",
                ORDERS,
                "--max-lifetime",
                "0d",
            ],
            "longer than zero",
        ),
        (&["set", "--resource", ORDERS], "required"),
        (
            &["set", "--default", "--user", "alice", "--resource", ORDERS],
            "cannot be used with",
        ),
    ] {
        let error = policy_cli(&redis, p, args).await.unwrap_err();
        assert!(error.contains(needle), "{args:?}: {error}");
    }
}

/// Runs `keymesh user policy …` against the test Redis; returns the output or the error's message.
async fn policy_cli(redis: &RedisServer, prefix: &str, args: &[&str]) -> Result<String, String> {
    use clap::Parser;
    let argv = ["keymesh", "user", "policy"].iter().chain(args);
    let cli = keymesh::cli::Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let keymesh::cli::Command::User(command) = cli.command else {
        panic!("not a user command")
    };
    let mut out = Vec::new();
    keymesh::cli::run_user(
        &config(redis, prefix),
        command,
        &keymesh::Clock::fixed(NOW),
        &mut std::io::empty(),
        &mut out,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}
