//! RFC 9728 at the filter, natively: with `resource_metadata` configured, every scenario of the shared table gets
//! the same verdict as without it, and every bearer challenge names the audience's metadata URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_core::{
    authorize, EmptyDirectory, FilterConfig, KeyMaterial, KeySet, RequestParts, Verdict,
};
use keymesh_testkit::{fixture, scenarios, NOW, SCENARIO_CONFIG};

const METADATA_URL: &str = "https://orders.local/.well-known/oauth-protected-resource";

fn with_metadata() -> FilterConfig {
    let mut config: serde_json::Value = serde_json::from_str(SCENARIO_CONFIG).unwrap();
    config["resource_metadata"] =
        serde_json::json!({"authorization_servers": ["https://issuer.keymesh.test"]});
    FilterConfig::parse(config.to_string().as_bytes()).unwrap()
}

fn challenge(verdict: &Verdict) -> Option<(u16, String)> {
    match verdict {
        Verdict::Allow(_) => None,
        Verdict::Deny(d) => Some((
            d.status,
            d.reply
                .headers
                .iter()
                .find(|(n, _)| *n == "www-authenticate")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        )),
    }
}

#[test]
fn every_bearer_challenge_names_the_metadata_url_and_verdicts_are_unchanged() {
    let plain = FilterConfig::parse(SCENARIO_CONFIG.as_bytes()).unwrap();
    let config = with_metadata();
    let (keys, _) = KeySet::parse_bundle(fixture().bundle(1).as_bytes()).unwrap();
    let material = KeyMaterial {
        keys: Some(&keys),
        age_secs: 0,
        directory: &EmptyDirectory,
        cache: None,
    };
    let param = format!("resource_metadata=\"{METADATA_URL}\"");
    let mut bearer_challenges = 0;
    for s in scenarios() {
        let req = RequestParts {
            path: s.path,
            authorization: s.authorization.iter().map(String::as_str).collect(),
            api_key: s.x_api_key.iter().map(String::as_str).collect(),
        };
        let before = challenge(&authorize(&plain, &req, &material, NOW));
        let after = challenge(&authorize(&config, &req, &material, NOW));
        let (Some((status_before, plain_challenge)), Some((status, with))) = (before, after) else {
            continue;
        };
        assert_eq!(status_before, status, "{}", s.name);
        if plain_challenge.starts_with("Bearer ") {
            bearer_challenges += 1;
            assert_eq!(with.matches(&param).count(), 1, "{}: {with}", s.name);
            // Added to the Bearer challenge, nothing else changed.
            assert_eq!(
                with.replacen(&format!(", {param}"), "", 1),
                plain_challenge,
                "{}",
                s.name
            );
            if let Some(at) = with.find(", apikey ") {
                assert!(
                    with.find(&param).unwrap() < at,
                    "{}: parameter after the apikey challenge",
                    s.name
                );
            }
        } else {
            assert_eq!(
                with, plain_challenge,
                "{}: apikey challenges are unchanged",
                s.name
            );
        }
    }
    assert!(
        bearer_challenges > 20,
        "only {bearer_challenges} bearer challenges"
    );
}

#[test]
fn missing_token_on_an_either_route_names_the_url_in_the_bearer_challenge() {
    let config = with_metadata();
    let (keys, _) = KeySet::parse_bundle(fixture().bundle(1).as_bytes()).unwrap();
    let material = KeyMaterial {
        keys: Some(&keys),
        age_secs: 0,
        directory: &EmptyDirectory,
        cache: None,
    };
    let req = RequestParts {
        path: "/mixed/1",
        authorization: vec![],
        api_key: vec![],
    };
    let (status, c) = challenge(&authorize(&config, &req, &material, NOW)).unwrap();
    assert_eq!(status, 401);
    assert_eq!(
        c,
        format!("Bearer realm=\"keymesh\", resource_metadata=\"{METADATA_URL}\", apikey realm=\"keymesh\"")
    );
}
