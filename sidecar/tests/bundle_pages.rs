//! The full bundle in pages: bounded pages that together are exactly one version's key set, that version kept
//! while the mirror moves on, resyncs started under churn joining it, and clear errors for bad page requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use keymesh::api_keys::{ApiKeyStore, IssuedApiKey};
use keymesh::http::ops::telemetry::BundleAnswer;
use keymesh::store::names::KeyNames;
use keymesh_core::apikey::hash_key;
use keymesh_core::bundle::{BundleDto, PageDto};
use keymesh_core::delivery::paging::PAGE_BYTES;
use support::*;

const ORDERS: &str = "https://orders.test";
/// Enough keys for several pages (a key is about 170 bytes of JSON).
const KEYS: usize = 3_500;

fn page_of(reply: &Reply) -> (BundleDto, PageDto) {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let value = reply.json();
    let page: PageDto = serde_json::from_value(value["page"].clone()).expect("a page");
    (bundle_of(reply), page)
}

/// Reads every page of `version` after `first`; the keys of all pages, and the largest page's size.
async fn rest_of(app: &TestApp, version: u64, first: (BundleDto, PageDto)) -> (Vec<String>, usize) {
    let (dto, mut page) = first;
    let mut hashes: Vec<String> = dto.api_keys.put.into_iter().map(|key| key.hash).collect();
    let mut largest = 0;
    while let Some(next) = page.next {
        let reply = get(
            &app.router,
            &format!("/v1/bundle?page={next}&version={version}"),
            &[],
        )
        .await;
        largest = largest.max(reply.body.len());
        assert_eq!(
            reply.header("etag"),
            Some(format!("\"{version}\"").as_str())
        );
        let (dto, this) = page_of(&reply);
        assert_eq!((dto.version, this.from, dto.since), (version, next, None));
        assert!(
            dto.issuers.is_empty() && dto.revoked_tokens.is_empty(),
            "first page only"
        );
        hashes.extend(dto.api_keys.put.into_iter().map(|key| key.hash));
        page = this;
    }
    (hashes, largest)
}

#[tokio::test]
async fn pages_are_bounded_and_together_are_one_version_while_keys_change() {
    let redis = RedisServer::start();
    let p = "pg:";
    let app = start_app(&redis, p).await;
    let mut keys: Vec<IssuedApiKey> = Vec::new();
    for i in 0..KEYS {
        keys.push(create_key(&redis, p, &format!("owner-{i}"), &[ORDERS]).await);
    }
    let version = mirrored(&app, redis_version(&redis, p).await).await;
    let expected: BTreeSet<String> = keys.iter().map(|key| hash_key(&key.key)).collect();

    // A filter holding nothing asks with page=0: the first page, not the whole bundle.
    let reply = get(&app.router, "/v1/bundle?page=0", &[]).await;
    assert_eq!(
        reply.header("etag"),
        Some(format!("\"{version}\"").as_str())
    );
    let first = page_of(&reply);
    assert_eq!(
        (first.0.version, first.1.from, first.1.keys),
        (version, 0, KEYS as u64)
    );
    assert!(
        !first.0.issuers.is_empty(),
        "the issuers come with the first page"
    );
    assert!(
        reply.body.len() <= PAGE_BYTES + 8192,
        "first page {} bytes",
        reply.body.len()
    );

    // Meanwhile a key is revoked and one is created: the mirror moves on.
    ApiKeyStore::new(KeyNames::new(p))
        .revoke(&mut redis.conn().await, &keys[0].id)
        .await
        .unwrap();
    let added = create_key(&redis, p, "late", &[ORDERS]).await;
    let now = mirrored(&app, version + 2).await;
    assert_eq!(now, version + 2);

    // The rest of the pages still describe `version`, whole.
    let (hashes, largest) = rest_of(&app, version, first).await;
    assert!(largest <= PAGE_BYTES + 1024, "a page of {largest} bytes");
    assert!(
        hashes.len() as u64 > 2 * (PAGE_BYTES as u64) / 400,
        "several pages"
    );
    assert_eq!(hashes.len(), KEYS, "no key twice, none missing");
    let telemetry = app.state.telemetry();
    assert_eq!(
        telemetry.bundle_answers(BundleAnswer::Full),
        1,
        "one resync begun"
    );
    assert!(
        telemetry.bundle_answers(BundleAnswer::Page) >= 2,
        "its later pages"
    );
    assert_eq!(hashes.iter().cloned().collect::<BTreeSet<_>>(), expected);

    // A second filter starting a resync now joins the version being paged (the change log reaches back to it),
    // and a delta then brings it to the current version: the revoked key goes, the new one comes.
    let joined = get(&app.router, "/v1/bundle?page=0", &[]).await;
    assert_eq!(
        page_of(&joined).0.version,
        version,
        "joined the paged version"
    );
    let delta = bundle_of(
        &get(
            &app.router,
            "/v1/bundle?page=0",
            &[("if-none-match", &format!("\"{version}\""))],
        )
        .await,
    );
    assert_eq!((delta.version, delta.since), (now, Some(version)));
    assert_eq!(delta.api_keys.delete, [hash_key(&keys[0].key)]);
    assert_eq!(delta.api_keys.put[0].hash, hash_key(&added.key));

    // A filter that does not page still gets the whole bundle at once, at the current version.
    let whole = get(&app.router, "/v1/bundle", &[]).await;
    assert!(whole.json().get("page").is_none());
    let whole = bundle_of(&whole);
    assert_eq!((whole.version, whole.api_keys.put.len()), (now, KEYS));
}

#[tokio::test]
async fn bad_page_requests_are_refused_with_an_error_the_filter_can_act_on() {
    let redis = RedisServer::start();
    let p = "pgbad:";
    let app = start_app(&redis, p).await;
    create_key(&redis, p, "alice", &[ORDERS]).await;
    let version = mirrored(&app, 2).await;
    for bad in [
        "page=1",
        "page=x",
        "page=-1",
        "version=2",
        "page=0&page=0",
        &format!("page=1&version={version}&wait=5"),
        &format!("page=5&version={version}"),
    ] {
        let reply = get(&app.router, &format!("/v1/bundle?{bad}"), &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.json()["error"], "invalid_request", "{bad}");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    // A version neither current nor held: gone, start again from page 0.
    let gone = get(
        &app.router,
        &format!("/v1/bundle?page=0&version={}", version + 50),
        &[],
    )
    .await;
    assert_eq!(gone.status, StatusCode::GONE);
    assert_eq!(gone.json()["error"], "version_gone");
    // One key: one page, the last.
    let (dto, page) = page_of(
        &get(
            &app.router,
            &format!("/v1/bundle?page=0&version={version}"),
            &[],
        )
        .await,
    );
    assert_eq!((dto.api_keys.put.len(), page.next, page.keys), (1, None, 1));
}
