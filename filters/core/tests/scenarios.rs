//! The shared scenario table, run natively against `keymesh_core::authorize`. The wasm host runs the same table
//! against the compiled filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_core::bundle::{ApiKeyDto, BundleDto};
use keymesh_core::{
    authorize, Directory, EmptyDirectory, FilterConfig, KeyMaterial, KeySet, RequestParts,
    TokenCache, Verdict,
};
use keymesh_testkit::{fixture, scenarios, NOW, SCENARIO_CONFIG};
use std::collections::{HashMap, HashSet};

/// The fixture bundle's API keys and revocations, looked up as the filter does from shared data.
struct FixtureDirectory {
    keys: HashMap<String, ApiKeyDto>,
    revoked: HashSet<String>,
}

impl FixtureDirectory {
    fn new() -> Self {
        let dto: BundleDto = serde_json::from_str(&fixture().bundle(1)).unwrap();
        Self {
            keys: dto
                .api_keys
                .put
                .into_iter()
                .map(|k| (k.hash.clone(), k))
                .collect(),
            revoked: dto.revoked_tokens.into_iter().map(|r| r.jti).collect(),
        }
    }
}

fn material<'a>(keys: Option<&'a KeySet>, directory: &'a dyn Directory) -> KeyMaterial<'a> {
    KeyMaterial {
        keys,
        age_secs: 0,
        directory,
        cache: None,
    }
}

fn challenge_error(challenge: &str) -> Option<&str> {
    let start = challenge.find("error=\"")? + 7;
    Some(&challenge[start..start + challenge[start..].find('"')?])
}

impl Directory for FixtureDirectory {
    fn api_key(&self, hash: &str) -> Option<ApiKeyDto> {
        self.keys.get(hash).cloned()
    }
    fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains(jti)
    }
}

#[test]
fn scenario_table_natively() {
    let config = FilterConfig::parse(SCENARIO_CONFIG.as_bytes()).unwrap();
    let (keys, skipped) = KeySet::parse_bundle(fixture().bundle(1).as_bytes()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let directory = FixtureDirectory::new();
    let table = scenarios();
    assert!(table.len() >= 40, "table has {} scenarios", table.len());
    let mut failures = Vec::new();
    // Three passes: without a cache, then twice through one cache (the second pass is all hits). Every answer
    // must be the same.
    let cache = TokenCache::new(1024);
    let passes: [(&str, Option<&TokenCache>); 3] = [
        ("uncached", None),
        ("cold cache", Some(&cache)),
        ("warm cache", Some(&cache)),
    ];
    for (pass, cache) in passes {
        for s in &table {
            let req = RequestParts {
                path: s.path,
                authorization: s.authorization.iter().map(String::as_str).collect(),
                api_key: s.x_api_key.iter().map(String::as_str).collect(),
            };
            let material = KeyMaterial {
                cache,
                ..material(Some(&keys), &directory)
            };
            match authorize(&config, &req, &material, NOW) {
                Verdict::Allow(identity) => {
                    if s.status != 200 {
                        failures.push(format!(
                            "{pass}: {}: allowed, expected {}",
                            s.name, s.status
                        ));
                    } else if Some(identity.principal.subject.as_str()) != s.subject {
                        failures.push(format!(
                            "{pass}: {}: subject {}",
                            s.name, identity.principal.subject
                        ));
                    }
                }
                Verdict::Deny(d) => {
                    let challenge = d
                        .reply
                        .headers
                        .iter()
                        .find(|(n, _)| *n == "www-authenticate")
                        .map(|(_, v)| v.as_str());
                    let error = challenge.and_then(challenge_error);
                    if d.status != s.status || error != s.error {
                        failures.push(format!(
                            "{pass}: {}: got {} {:?} ({:?}), expected {} {:?}",
                            s.name, d.status, error, d.reason, s.status, s.error
                        ));
                    }
                    let expected = format!("{} realm=\"keymesh\"", s.scheme);
                    if d.status == 401 && !challenge.is_some_and(|c| c.starts_with(&expected)) {
                        failures.push(format!(
                            "{pass}: {}: 401 challenge {challenge:?}, expected {expected}",
                            s.name
                        ));
                    }
                }
            }
        }
    }
    assert!(
        cache.len() > 20,
        "the cache was not used: {} entries",
        cache.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

#[test]
fn no_key_material_fails_closed_with_503() {
    let config = FilterConfig::parse(SCENARIO_CONFIG.as_bytes()).unwrap();
    let req = RequestParts {
        path: "/orders/1",
        authorization: vec!["Bearer x.y.z"],
        api_key: vec![],
    };
    let Verdict::Deny(d) = authorize(&config, &req, &material(None, &EmptyDirectory), NOW) else {
        panic!("allowed without keys")
    };
    assert_eq!(d.status, 503);
    assert!(d.reply.body.contains("key material"), "{}", d.reply.body);
}

#[test]
fn insufficient_scope_names_required_scope() {
    let config = FilterConfig::parse(SCENARIO_CONFIG.as_bytes()).unwrap();
    let (keys, _) = KeySet::parse_bundle(fixture().bundle(1).as_bytes()).unwrap();
    let token = fixture().token(
        keymesh_testkit::Alg::EdDsa,
        &keymesh_testkit::claims(&["https://orders.local"], "orders:read"),
    );
    let auth = format!("Bearer {token}");
    let req = RequestParts {
        path: "/admin",
        authorization: vec![&auth],
        api_key: vec![],
    };
    let Verdict::Deny(d) = authorize(&config, &req, &material(Some(&keys), &EmptyDirectory), NOW)
    else {
        panic!("allowed")
    };
    let challenge = &d
        .reply
        .headers
        .iter()
        .find(|(n, _)| *n == "www-authenticate")
        .unwrap()
        .1;
    assert!(challenge.contains("scope=\"orders:admin\""), "{challenge}");
    assert!(
        d.reply.body.contains("\"error\":\"insufficient_scope\""),
        "{}",
        d.reply.body
    );
}

#[test]
fn trusted_issuers_restrict_the_bundle() {
    let config = FilterConfig::parse(
        br#"{"sidecar":{"cluster":"k"},"trusted_issuers":["https://other-issuer.keymesh.test"],
             "routes":[{"prefix":"/","audience":"https://orders.local"}]}"#,
    )
    .unwrap();
    let (keys, _) = KeySet::parse_bundle(fixture().bundle(1).as_bytes()).unwrap();
    let claims = keymesh_testkit::claims(&["https://orders.local"], "");
    let ours = format!(
        "Bearer {}",
        fixture().token(keymesh_testkit::Alg::EdDsa, &claims)
    );
    let req = RequestParts {
        path: "/x",
        authorization: vec![&ours],
        api_key: vec![],
    };
    assert!(
        matches!(authorize(&config, &req, &material(Some(&keys), &EmptyDirectory), NOW), Verdict::Deny(d) if d.status == 401)
    );
    let other_claims = keymesh_testkit::with(
        claims,
        "iss",
        serde_json::json!(keymesh_testkit::OTHER_ISSUER),
    );
    let theirs = format!("Bearer {}", fixture().other_issuer_token(&other_claims));
    let req = RequestParts {
        path: "/x",
        authorization: vec![&theirs],
        api_key: vec![],
    };
    assert!(matches!(
        authorize(&config, &req, &material(Some(&keys), &EmptyDirectory), NOW),
        Verdict::Allow(_)
    ));
}

#[test]
fn stale_key_material_fails_closed_unless_the_route_keeps_the_last_keys() {
    let config = FilterConfig::parse(
        br#"{"sidecar":{"cluster":"k","max_age_secs":60},"routes":[
             {"prefix":"/strict","audience":"https://orders.local"},
             {"prefix":"/lenient","audience":"https://orders.local","when_stale":"last_known_keys"}]}"#,
    )
    .unwrap();
    let (keys, _) = KeySet::parse_bundle(fixture().bundle(1).as_bytes()).unwrap();
    let claims = keymesh_testkit::claims(&["https://orders.local"], "");
    let auth = format!(
        "Bearer {}",
        fixture().token(keymesh_testkit::Alg::EdDsa, &claims)
    );
    let decide = |path: &str, age_secs: u64| {
        let req = RequestParts {
            path,
            authorization: vec![&auth],
            api_key: vec![],
        };
        let material = KeyMaterial {
            keys: Some(&keys),
            age_secs,
            directory: &EmptyDirectory,
            cache: None,
        };
        match authorize(&config, &req, &material, NOW) {
            Verdict::Allow(_) => (200, String::new()),
            Verdict::Deny(d) => (d.status, d.reply.body.clone()),
        }
    };
    assert_eq!(decide("/strict", 60).0, 200);
    let (status, body) = decide("/strict", 61);
    assert_eq!(status, 503);
    assert!(body.contains("stale") && body.contains("61 s"), "{body}");
    assert_eq!(decide("/lenient", 3600).0, 200);
}

#[test]
fn the_token_cache_never_outlives_what_it_cached() {
    let config = FilterConfig::parse(SCENARIO_CONFIG.as_bytes()).unwrap();
    let fx = fixture();
    let (v1, _) = KeySet::parse_bundle(fx.bundle(1).as_bytes()).unwrap();
    let claims = keymesh_testkit::claims(&["https://orders.local"], "orders:read");
    let es = format!("Bearer {}", fx.token(keymesh_testkit::Alg::Es256, &claims));
    let cache = TokenCache::new(16);
    let decide = |keys: &KeySet, directory: &dyn Directory, now: i64| {
        let req = RequestParts {
            path: "/orders/1",
            authorization: vec![&es],
            api_key: vec![],
        };
        let material = KeyMaterial {
            keys: Some(keys),
            age_secs: 0,
            directory,
            cache: Some(&cache),
        };
        match authorize(&config, &req, &material, now) {
            Verdict::Allow(_) => 200,
            Verdict::Deny(d) => d.status,
        }
    };
    assert_eq!(decide(&v1, &EmptyDirectory, NOW), 200);
    assert_eq!(cache.len(), 1);
    // Time is checked on every hit: the cached token expires like any other.
    assert_eq!(decide(&v1, &EmptyDirectory, NOW + 3600), 401);
    // Revocation is checked on every hit.
    let revoking = Revoking("jti-1");
    assert_eq!(decide(&v1, &revoking, NOW), 401);
    // A new key set (here: the ES256 key retired) empties the cache: the token no longer verifies.
    let only_ed = serde_json::json!({"version": 2, "issuers": [{"issuer": keymesh_testkit::ISSUER,
        "jwks": {"keys": [fx.public_jwk(keymesh_testkit::Alg::EdDsa)]}}]});
    let (v2, _) = KeySet::parse_bundle(only_ed.to_string().as_bytes()).unwrap();
    assert_eq!(decide(&v2, &EmptyDirectory, NOW), 401);
}

#[test]
fn failed_signatures_are_remembered() {
    let config = FilterConfig::parse(SCENARIO_CONFIG.as_bytes()).unwrap();
    let (keys, _) = KeySet::parse_bundle(fixture().bundle(1).as_bytes()).unwrap();
    let claims = keymesh_testkit::claims(&["https://orders.local"], "orders:read");
    let bad =
        keymesh_testkit::tamper_signature(&fixture().token(keymesh_testkit::Alg::Rs256, &claims));
    let auth = format!("Bearer {bad}");
    let cache = TokenCache::new(16);
    for _ in 0..3 {
        let req = RequestParts {
            path: "/orders/1",
            authorization: vec![&auth],
            api_key: vec![],
        };
        let material = KeyMaterial {
            keys: Some(&keys),
            age_secs: 0,
            directory: &EmptyDirectory,
            cache: Some(&cache),
        };
        let Verdict::Deny(d) = authorize(&config, &req, &material, NOW) else {
            panic!("allowed a bad signature")
        };
        assert_eq!(
            d.reason,
            keymesh_core::DenyReason::Token(keymesh_core::CredentialError::BadSignature)
        );
    }
    assert_eq!(cache.len(), 1, "the failed token was not remembered");
}

struct Revoking(&'static str);

impl Directory for Revoking {
    fn api_key(&self, _: &str) -> Option<ApiKeyDto> {
        None
    }
    fn is_revoked(&self, jti: &str) -> bool {
        jti == self.0
    }
}

#[test]
fn the_actor_of_an_exchanged_token_is_forwarded_and_must_be_header_safe() {
    let config = FilterConfig::parse(SCENARIO_CONFIG.as_bytes()).unwrap();
    let (keys, _) = KeySet::parse_bundle(fixture().bundle(1).as_bytes()).unwrap();
    let verdict = |act: serde_json::Value| {
        let mut claims = keymesh_testkit::claims(&["https://orders.local"], "orders:read");
        claims["act"] = act;
        let auth = format!(
            "Bearer {}",
            fixture().token(keymesh_testkit::Alg::EdDsa, &claims)
        );
        let req = RequestParts {
            path: "/orders/1",
            authorization: vec![&auth],
            api_key: vec![],
        };
        authorize(&config, &req, &material(Some(&keys), &EmptyDirectory), NOW)
    };
    let Verdict::Allow(identity) =
        verdict(serde_json::json!({"sub": "orders", "act": {"sub": "web"}}))
    else {
        panic!("refused")
    };
    assert_eq!(identity.principal.actor.as_deref(), Some("orders"));
    assert!(identity
        .upstream_headers()
        .contains(&("x-keymesh-actor", "orders".to_owned())));
    for bad in [
        serde_json::json!({"sub": "orders\r\nx-keymesh-subject: admin"}),
        serde_json::json!("orders"),
        serde_json::json!({}),
    ] {
        assert!(matches!(verdict(bad.clone()), Verdict::Deny(_)), "{bad}");
    }
}

#[test]
fn typ_is_checked_per_issuer_and_refusals_say_why() {
    use keymesh_core::policy::verify_jwt;
    use keymesh_core::CredentialError;
    use keymesh_testkit::{claims, with, Alg, OTHER_ISSUER};
    use serde_json::json;
    let fx = fixture();
    let ok = claims(&["https://orders.local"], "orders:read");
    let ours_jwt = fx.typed_token(Alg::EdDsa, Some("JWT"), &ok);
    let (keys, _) = KeySet::parse_bundle(fx.bundle(1).as_bytes()).unwrap();
    assert_eq!(
        verify_jwt(&ours_jwt, &keys, None, 0, NOW).unwrap_err(),
        CredentialError::WrongTokenType
    );
    // The same bundle with the first issuer opted in to `JWT` and to no `typ` accepts both; the second issuer,
    // opted in to `JWT` only, still refuses a token without `typ`.
    let mut bundle: serde_json::Value = serde_json::from_str(&fx.bundle(1)).unwrap();
    bundle["issuers"][0]["accept_typ"] = json!(["jwt"]);
    bundle["issuers"][0]["accept_missing_typ"] = json!(true);
    let (lenient, _) = KeySet::parse_bundle(bundle.to_string().as_bytes()).unwrap();
    assert!(verify_jwt(&ours_jwt, &lenient, None, 0, NOW).is_ok());
    let untyped = fx.typed_token(Alg::Rs256, None, &ok);
    assert!(verify_jwt(&untyped, &lenient, None, 0, NOW).is_ok());
    assert_eq!(
        verify_jwt(&untyped, &keys, None, 0, NOW).unwrap_err(),
        CredentialError::WrongTokenType
    );
    let theirs = with(ok, "iss", json!(OTHER_ISSUER));
    let theirs_untyped = fx.other_issuer_typed_token(None, &theirs);
    assert_eq!(
        verify_jwt(&theirs_untyped, &lenient, None, 0, NOW).unwrap_err(),
        CredentialError::WrongTokenType
    );
}

/// An Ed25519 `x` that is not a point of the curve (y = 2 has no x).
const NOT_A_POINT: &str = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn bundle_with_first_issuer_keys(extra: &[serde_json::Value]) -> String {
    let mut bundle: serde_json::Value = serde_json::from_str(&fixture().bundle(1)).unwrap();
    let keys = bundle["issuers"][0]["jwks"]["keys"].as_array_mut().unwrap();
    keys.extend(extra.iter().cloned());
    bundle.to_string()
}

fn verifies(keys: &KeySet, alg: keymesh_testkit::Alg) -> bool {
    let token = fixture().token(alg, &keymesh_testkit::claims(&["https://orders.local"], ""));
    keymesh_core::policy::verify_jwt(&token, keys, None, 0, NOW).is_ok()
}

#[test]
fn one_bad_key_costs_only_itself() {
    use keymesh_testkit::Alg;
    use serde_json::json;
    let bad = [
        json!({"kty":"OKP","crv":"Ed25519","x":NOT_A_POINT,"kid":"not-a-point","alg":"EdDSA"}),
        json!({"kty":"RSA","n":"AQAB","e":"AQAB","kid":"weak-rsa"}),
        json!({"kty":"EC","crv":"P-256","x":NOT_A_POINT,"kid":"no-y"}),
        json!({"kty":"OKP","crv":"Ed25519","x":NOT_A_POINT}),
    ];
    let (keys, skipped) =
        KeySet::parse_bundle(bundle_with_first_issuer_keys(&bad).as_bytes()).unwrap();
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    let reasons: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    assert!(
        reasons.iter().any(|r| r.contains("not-a-point")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("weak-rsa")),
        "{reasons:?}"
    );
    for alg in [Alg::EdDsa, Alg::Es256, Alg::Rs256] {
        assert!(verifies(&keys, alg), "{alg:?} stopped verifying");
    }
    assert!(keys.candidates("not-a-point").is_empty());
}

#[test]
fn private_material_or_a_repeated_kid_refuses_the_issuer_whole() {
    use keymesh_testkit::Alg;
    use serde_json::json;
    let x = fixture().public_jwk(Alg::EdDsa)["x"].clone();
    let private = json!({"kty":"OKP","crv":"Ed25519","x":x,"d":x,"kid":"leaked"});
    let repeated = fixture().public_jwk(Alg::EdDsa);
    for (what, extra) in [("private key", private), ("repeated kid", repeated)] {
        let (keys, skipped) =
            KeySet::parse_bundle(bundle_with_first_issuer_keys(&[extra]).as_bytes()).unwrap();
        assert_eq!(skipped.len(), 1, "{what}: {skipped:?}");
        for alg in [Alg::EdDsa, Alg::Es256, Alg::Rs256] {
            assert!(!verifies(&keys, alg), "{what}: {alg:?} still verifies");
        }
        // The other issuer of the bundle is not affected.
        let theirs = fixture().other_issuer_token(&keymesh_testkit::with(
            keymesh_testkit::claims(&["https://orders.local"], ""),
            "iss",
            json!(keymesh_testkit::OTHER_ISSUER),
        ));
        assert!(
            keymesh_core::policy::verify_jwt(&theirs, &keys, None, 0, NOW).is_ok(),
            "{what}"
        );
    }
}
