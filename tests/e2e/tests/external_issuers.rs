//! External identity providers end to end: providers registered with the CLI, their keys fetched by the real
//! sidecar from real HTTP endpoints (discovery and a plain JWKS URI), delivered through Redis and the bundle to
//! real Envoy. Tokens are honoured only for the issuer that owns the signing key and only at the APIs the
//! operator listed; a key the provider rolls out is fetched when the first token naming it arrives; a provider
//! going down costs nothing until its keys are removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_e2e::{wait_for, Stack, TestIdp};
use keymesh_testkit::{fixture, Alg};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ORDERS: &str = "https://orders.local";
const PAYMENTS: &str = "https://payments.local";

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn claims(iss: &str, aud: &[&str]) -> Value {
    json!({"iss": iss, "sub": "alice", "client_id": "partner-app", "aud": aud,
           "scope": "orders:read payments:read", "iat": now() - 5, "exp": now() + 300,
           "jti": format!("ext-{}", now())})
}

fn with_kid(mut jwk: Value, kid: &str) -> Value {
    jwk["kid"] = json!(kid);
    jwk
}

/// A token signed by a fixture key, naming `kid`.
fn token(alg: Alg, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg.name(), "kid": kid, "typ": "at+jwt"});
    let signed = fixture().sign_raw(alg, &header, claims.to_string().as_bytes());
    format!("Bearer {signed}")
}

/// The public key of the fixture's second Ed25519 key (kid `other-ed-1`), which provider B publishes.
fn provider_b_key() -> Value {
    let bundle: Value = serde_json::from_str(&fixture().bundle(1)).unwrap();
    bundle["issuers"][1]["jwks"]["keys"][0].clone()
}

fn status(stack: &Stack, port: u16, auth: &str) -> u16 {
    stack.get(port, "/x", &[("authorization", auth)]).status
}

fn wait_status(stack: &Stack, what: &str, port: u16, auth: &str, want: u16) -> Duration {
    let start = Instant::now();
    wait_for(what, Duration::from_secs(15), || {
        (status(stack, port, auth) == want).then_some(())
    });
    start.elapsed()
}

#[test]
fn external_providers_keys_are_fetched_bound_to_their_issuer_and_audiences() {
    let mut stack = Stack::new();
    stack.start_redis();
    // No scheduled refresh within the test: only a reported unknown kid explains a fetch.
    stack.start_sidecar_with(&[
        ("KEYMESH_ISSUER_REFRESH_SECS", "3600"),
        ("KEYMESH_ISSUER_REFETCH_MIN_SECS", "1"),
    ]);
    stack.start_mesh();
    let p = stack.ports;

    let a = TestIdp::start(json!({"keys": [with_kid(fixture().public_jwk(Alg::EdDsa), "a-1")]}));
    let b = TestIdp::start(json!({"keys": [provider_b_key()]}));
    let (iss_a, iss_b) = (a.issuer(), b.issuer());

    // A is found by discovery and trusted at orders only; B by its JWKS URI, at both APIs.
    let added = stack.keymesh(&[
        "issuer",
        "add",
        &iss_a,
        "--discovery",
        "--audience",
        ORDERS,
        "--json",
    ]);
    let added: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(added["kids"], json!(["a-1"]), "{added}");
    assert_eq!(added["jwks_uri"], json!(a.jwks_uri()), "{added}");
    stack.keymesh(&[
        "issuer",
        "add",
        &iss_b,
        "--jwks-uri",
        &b.jwks_uri(),
        "--audience",
        ORDERS,
        "--audience",
        PAYMENTS,
        "--accept-typ",
        "JWT",
    ]);

    let from_a = token(Alg::EdDsa, "a-1", &claims(&iss_a, &[ORDERS, PAYMENTS]));
    wait_status(&stack, "A's key to reach Envoy", p.orders, &from_a, 200);
    let echo = stack
        .responds_with(200, p.orders, "/x", &[("authorization", &from_a)])
        .json();
    assert_eq!(echo["identity"]["x-keymesh-issuer"], json!(iss_a), "{echo}");
    assert_eq!(echo["identity"]["x-keymesh-subject"], "alice", "{echo}");
    // The token names payments too, but A is trusted only at orders.
    let refused = stack.get(p.payments, "/x", &[("authorization", &from_a)]);
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        refused.headers["www-authenticate"].contains("invalid_token"),
        "{:?}",
        refused.headers
    );

    // B's own tokens pass at both APIs.
    let from_b = format!(
        "Bearer {}",
        fixture().other_issuer_token(&claims(&iss_b, &[ORDERS, PAYMENTS]))
    );
    assert_eq!(status(&stack, p.orders, &from_b), 200);
    assert_eq!(status(&stack, p.payments, &from_b), 200);
    // RFC 9068 §4: A's tokens must say `typ: at+jwt`; B was registered with `--accept-typ JWT`, so its `JWT`
    // tokens pass too, but not its tokens without `typ`.
    let a_typed_jwt = {
        let header = json!({"alg": "EdDSA", "kid": "a-1", "typ": "JWT"});
        let signed = fixture().sign_raw(
            Alg::EdDsa,
            &header,
            claims(&iss_a, &[ORDERS]).to_string().as_bytes(),
        );
        format!("Bearer {signed}")
    };
    assert_eq!(status(&stack, p.orders, &a_typed_jwt), 401);
    let b_claims = claims(&iss_b, &[ORDERS]);
    let b_typed_jwt = format!(
        "Bearer {}",
        fixture().other_issuer_typed_token(Some("JWT"), &b_claims)
    );
    assert_eq!(status(&stack, p.orders, &b_typed_jwt), 200);
    let b_untyped = format!(
        "Bearer {}",
        fixture().other_issuer_typed_token(None, &b_claims)
    );
    assert_eq!(status(&stack, p.orders, &b_untyped), 401);
    // A token claiming to be from A but signed with B's key fails, and the other way round.
    let a_signed_by_b = format!(
        "Bearer {}",
        fixture().other_issuer_token(&claims(&iss_a, &[ORDERS]))
    );
    assert_eq!(status(&stack, p.orders, &a_signed_by_b), 401);
    let b_signed_by_a = token(Alg::EdDsa, "a-1", &claims(&iss_b, &[ORDERS]));
    assert_eq!(status(&stack, p.orders, &b_signed_by_a), 401);
    // The sidecar's own issuer cannot be taken over by a registration.
    let own = format!("http://127.0.0.1:{}", p.sidecar);
    let hijack = stack.keymesh_fails(&[
        "issuer",
        "add",
        &own,
        "--jwks-uri",
        &a.jwks_uri(),
        "--audience",
        ORDERS,
    ]);
    assert!(hijack.contains("own issuer"), "{hijack}");

    // A rolls out a new key. The first token naming it is refused, and makes the filter report the kid; the
    // sidecar fetches A (and B) at once rather than at the next scheduled refresh, an hour away.
    a.set_jwks(json!({"keys": [
        with_kid(fixture().public_jwk(Alg::EdDsa), "a-1"),
        with_kid(fixture().public_jwk(Alg::Es256), "a-2"),
    ]}));
    let rolled = token(Alg::Es256, "a-2", &claims(&iss_a, &[ORDERS]));
    assert_eq!(status(&stack, p.orders, &rolled), 401);
    let took = wait_status(&stack, "A's new key to be fetched", p.orders, &rolled, 200);
    eprintln!(
        "a rolled-out key was accepted {} ms after its first token",
        took.as_millis()
    );

    // A flood of made-up kids costs each provider a fetch or two, not one per request: each Envoy reports at
    // most one kid per 5 s, and the sidecar fetches a provider at most once per `issuer_refetch_min_secs` (1 s
    // here) however many proxies report. Here 40 kids arrive through Envoy and, as if from 40 other proxies,
    // straight at the sidecar, over 2 s.
    std::thread::sleep(Duration::from_secs(5));
    let (before_a, before_b) = (a.fetches(), b.fetches());
    for i in 0..40 {
        let junk = token(Alg::EdDsa, &format!("junk-{i}"), &claims(&iss_a, &[ORDERS]));
        assert_eq!(status(&stack, p.orders, &junk), 401);
        let report = keymesh_e2e::request(
            "POST",
            p.sidecar,
            "/v1/issuers/refetch",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(&format!("kid=junk-{i}")),
        )
        .unwrap();
        assert_eq!(report.status, 202, "{}", report.body);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // A fetch of A is discovery plus JWKS (two requests); of B, one.
    let (fetches_a, fetches_b) = ((a.fetches() - before_a) / 2, b.fetches() - before_b);
    eprintln!("80 unknown-kid reports over 2 s: {fetches_a} fetches of A, {fetches_b} of B");
    assert!((1..=4).contains(&fetches_a), "A fetched {fetches_a} times");
    assert!((1..=4).contains(&fetches_b), "B fetched {fetches_b} times");
    let malformed = keymesh_e2e::request(
        "POST",
        p.sidecar,
        "/v1/issuers/refetch",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some("kid=has%20space"),
    )
    .unwrap();
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"], "invalid_request");

    // A goes down: its keys stay, the failure is recorded and shown.
    let mut a = a;
    a.stop();
    let unknown = token(Alg::EdDsa, "a-3", &claims(&iss_a, &[ORDERS]));
    wait_for(
        "the failed fetch of A to be recorded",
        Duration::from_secs(15),
        || {
            assert_eq!(status(&stack, p.orders, &unknown), 401);
            let listed = stack.keymesh(&["issuer", "list", "--json"]);
            let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
            let entry = listed
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["issuer"] == json!(iss_a))
                .cloned()
                .unwrap();
            let failed = entry["status"]["failures"].as_u64().unwrap_or(0) >= 1;
            failed.then_some(entry)
        },
    );
    assert_eq!(
        status(&stack, p.orders, &from_a),
        200,
        "A's keys were dropped when it went down"
    );
    assert_eq!(status(&stack, p.orders, &rolled), 200);
    let status_doc = stack.get(p.sidecar, "/v1/status", &[]).json();
    let listed = status_doc["external_issuers"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{status_doc}");
    let a_status = listed.iter().find(|e| e["issuer"] == json!(iss_a)).unwrap();
    assert_eq!(a_status["kids"], json!(["a-1", "a-2"]), "{status_doc}");
    assert_eq!(a_status["audiences"], json!([ORDERS]), "{status_doc}");

    // Removing A stops its tokens at every API; B is unaffected.
    stack.keymesh(&["issuer", "remove", &iss_a]);
    wait_status(&stack, "A's removal to reach Envoy", p.orders, &from_a, 401);
    assert_eq!(status(&stack, p.orders, &from_b), 200);
}

#[test]
fn registrations_that_cannot_be_trusted_are_refused() {
    let mut stack = Stack::new();
    stack.start_redis();
    stack.start_sidecar();
    let idp = TestIdp::start(json!({"keys": [with_kid(fixture().public_jwk(Alg::EdDsa), "k")]}));

    // Plain http to a host other than loopback.
    let insecure = stack.keymesh_fails(&[
        "issuer",
        "add",
        "http://idp.example.com",
        "--jwks-uri",
        "http://idp.example.com/jwks",
        "--audience",
        ORDERS,
    ]);
    assert!(insecure.contains("https"), "{insecure}");
    // A discovery document for another issuer (OIDC Discovery §4.3).
    idp.set_discovery_issuer("https://impostor.example.com");
    let mismatch = stack.keymesh_fails(&[
        "issuer",
        "add",
        &idp.issuer(),
        "--discovery",
        "--audience",
        ORDERS,
    ]);
    assert!(mismatch.contains("impostor"), "{mismatch}");
    // A JWK Set publishing private key material.
    let mut private = fixture().public_jwk(Alg::EdDsa);
    private["d"] = private["x"].clone();
    idp.set_jwks(json!({"keys": [private]}));
    let leaked = stack.keymesh_fails(&[
        "issuer",
        "add",
        &idp.issuer(),
        "--jwks-uri",
        &idp.jwks_uri(),
        "--audience",
        ORDERS,
    ]);
    assert!(leaked.contains("private"), "{leaked}");
    // No audience.
    let unbounded = stack.keymesh_fails(&[
        "issuer",
        "add",
        &idp.issuer(),
        "--jwks-uri",
        &idp.jwks_uri(),
    ]);
    assert!(unbounded.contains("--audience"), "{unbounded}");
    // Nothing was stored by any of these.
    let listed = stack.keymesh(&["issuer", "list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}

#[test]
fn one_bad_key_does_not_take_down_a_provider() {
    let mut stack = Stack::new();
    stack.start_redis();
    stack.start_sidecar();
    stack.start_mesh();
    let p = stack.ports;
    // The provider publishes a good key and one whose `x` is not a point of Ed25519 (y = 2).
    let sloppy = json!({"kty":"OKP","crv":"Ed25519","kid":"sloppy",
                        "x":"AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    let idp = TestIdp::start(
        json!({"keys": [with_kid(fixture().public_jwk(Alg::EdDsa), "good"), sloppy]}),
    );
    let iss = idp.issuer();
    let added = stack.keymesh(&[
        "issuer",
        "add",
        &iss,
        "--jwks-uri",
        &idp.jwks_uri(),
        "--audience",
        ORDERS,
        "--json",
    ]);
    let added: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(added["kids"], json!(["good"]), "{added}");
    assert_eq!(added["refused_keys"][0]["kid"], "sloppy", "{added}");

    // Tokens signed with the good key work.
    let good = token(Alg::EdDsa, "good", &claims(&iss, &[ORDERS]));
    wait_status(
        &stack,
        "the provider's good key to reach Envoy",
        p.orders,
        &good,
        200,
    );

    // The refused key is reported with its reason: issuer list, /v1/status, and a metric.
    let listed = stack.keymesh(&["issuer", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let refused = &listed[0]["refused_keys"][0];
    assert_eq!(refused["kid"], "sloppy", "{listed}");
    assert!(
        refused["reason"].as_str().unwrap().contains("point"),
        "{listed}"
    );
    let text = stack.keymesh(&["issuer", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("refused=sloppy"));
    let status_doc = stack.get(p.sidecar, "/v1/status", &[]).json();
    assert_eq!(
        status_doc["external_issuers"][0]["refused_keys"][0]["kid"], "sloppy",
        "{status_doc}"
    );
    let metrics = stack.get(p.sidecar, "/metrics", &[]).body;
    let line = format!("keymesh_issuer_refused_keys{{issuer=\"{iss}\"}} 1");
    assert!(metrics.contains(&line), "{metrics}");

    // A provider that publishes a private key next to good ones is a security signal: the set is refused whole.
    let mut private = fixture().public_jwk(Alg::Es256);
    private["d"] = private["x"].clone();
    idp.set_jwks(json!({"keys": [with_kid(fixture().public_jwk(Alg::EdDsa), "good"), private]}));
    let refresh = stack.keymesh_fails(&["issuer", "refresh", &iss]);
    assert!(refresh.contains("private"), "{refresh}");
    assert_eq!(
        status(&stack, p.orders, &good),
        200,
        "the keys held are kept"
    );
}
