//! Wycheproof vectors classified by keymesh's JWS layer and signature keys.
//!
//! Rules: every `valid` vector of an algorithm keymesh verifies (EdDSA, ES256, RS256) is accepted, every
//! `invalid` vector is rejected, `acceptable` may go either way. Vectors of algorithms keymesh refuses by design
//! (HMAC, RSA-PSS, RS384/RS512) are rejected too; they are counted and listed, not silently skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_core::bundle::JwksDto;
use keymesh_core::jwk::parse_jwk;
use keymesh_core::{jws, KeySet};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

const SUPPORTED: [&str; 3] = ["EdDSA", "ES256", "RS256"];
/// Vectors labelled `valid` that a strict base64url decoder rejects (the Wycheproof README warns of these).
/// keymesh keeps its decoder strict, so these must be *rejected*; listed by id so a change is noticed.
const STRICT_BASE64_REJECTS: [(u64, &str); 1] = [(372, "invalid character inserted in header")];

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/testdata/wycheproof")
        .join(name);
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The public key set of a JWS/JWK test group: `public` when given, else `private` with private members removed
/// (a symmetric key then has no material left and is refused, as keymesh refuses all symmetric keys).
fn public_set(group: &Value) -> JwksDto {
    let set = group
        .get("public")
        .or_else(|| group.get("private"))
        .unwrap();
    // A group holds either a JWK Set or a single JWK.
    let listed = match set.get("keys") {
        Some(keys) => keys.as_array().unwrap().clone(),
        None => vec![set.clone()],
    };
    let keys = listed
        .iter()
        .map(|k| {
            let mut k: Map<String, Value> = k.as_object().unwrap().clone();
            for m in PRIVATE_MEMBERS {
                if k.get("kty").and_then(Value::as_str) != Some("oct") {
                    k.remove(m);
                }
            }
            k
        })
        .collect();
    JwksDto { keys }
}

fn header_alg(jws: &str) -> String {
    use base64ct::{Base64UrlUnpadded, Encoding};
    jws.split('.')
        .next()
        .and_then(|h| Base64UrlUnpadded::decode_vec(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// Runs one JOSE vector file; returns (checked, refused-by-design counts per alg).
fn run_jose_file(name: &str) -> (usize, BTreeMap<String, usize>) {
    let doc = load(name);
    let mut checked = 0;
    let mut by_design: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let keys = KeySet::single_issuer(1, "wycheproof", &public_set(group));
        for t in group["tests"].as_array().unwrap() {
            let Some(token) = t["jws"].as_str() else {
                // JSON-serialised JWS (an object): keymesh reads only the compact form.
                assert_ne!(
                    t["result"], "valid",
                    "tc {}: a valid vector was not a compact JWS",
                    t["tcId"]
                );
                continue;
            };
            let accepted = keys.as_ref().is_ok_and(|k| jws::verify(token, k).is_ok());
            let alg = header_alg(token);
            checked += 1;
            let id = t["tcId"].as_u64().unwrap();
            if STRICT_BASE64_REJECTS.iter().any(|(tc, _)| *tc == id)
                && name == "json_web_signature_test.json"
            {
                assert!(!accepted, "tc {id}: non-canonical base64url accepted");
                *by_design.entry("strict-base64".into()).or_default() += 1;
                continue;
            }
            let supported = SUPPORTED.contains(&alg.as_str());
            let problem = match (t["result"].as_str().unwrap(), supported, accepted) {
                ("valid", true, false) => Some("valid vector rejected"),
                ("valid", false, true) => Some("accepted an algorithm keymesh refuses"),
                ("invalid", _, true) => Some("invalid vector accepted"),
                ("valid", false, false) => {
                    *by_design.entry(alg.clone()).or_default() += 1;
                    None
                }
                _ => None,
            };
            if let Some(problem) = problem {
                failures.push(format!(
                    "tc {} ({}) {alg}: {problem}",
                    t["tcId"], t["comment"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    (checked, by_design)
}

#[test]
fn json_web_signature_vectors() {
    let (checked, by_design) = run_jose_file("json_web_signature_test.json");
    println!(
        "json_web_signature: {checked} vectors checked; valid but refused by design: {by_design:?}"
    );
    assert!(checked > 300, "only {checked} vectors ran");
    assert_eq!(
        by_design.get("strict-base64"),
        Some(&STRICT_BASE64_REJECTS.len())
    );
    assert!(
        !by_design.contains_key(""),
        "a valid vector had an unreadable header: {by_design:?}"
    );
}

#[test]
fn json_web_key_vectors() {
    let (checked, by_design) = run_jose_file("json_web_key_test.json");
    println!("json_web_key: {checked} vectors checked; valid but refused by design: {by_design:?}");
    assert!(checked >= 20, "only {checked} vectors ran");
}

/// Runs a raw signature vector file against keys parsed from each group's JWK.
fn run_signature_file(name: &str, jwk_field: &str) -> usize {
    let doc = load(name);
    let mut checked = 0;
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let mut jwk = match group.get(jwk_field) {
            Some(jwk) => jwk.as_object().unwrap().clone(),
            None => ec_jwk_from_coordinates(&group["publicKey"]),
        };
        if !jwk.contains_key("kid") {
            jwk.insert("kid".into(), Value::from("k"));
        }
        let key = parse_jwk(&jwk)
            .unwrap_or_else(|e| panic!("{name}: group key refused: {e}"))
            .key;
        for t in group["tests"].as_array().unwrap() {
            let ok = key.verify(
                &hex(t["msg"].as_str().unwrap()),
                &hex(t["sig"].as_str().unwrap()),
            );
            checked += 1;
            let expected = match t["result"].as_str().unwrap() {
                "valid" => true,
                "invalid" => false,
                _ => continue,
            };
            if ok != expected {
                failures.push(format!(
                    "tc {} ({}) expected {expected}",
                    t["tcId"], t["comment"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    checked
}

/// Some ECDSA groups carry no JWK (e.g. coordinates with leading zero bytes); build one from `wx`/`wy`.
fn ec_jwk_from_coordinates(key: &Value) -> Map<String, Value> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let coordinate = |name: &str| {
        let bytes = hex(key[name].as_str().unwrap());
        let mut fixed = [0u8; 32];
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        fixed[32 - trimmed.len()..].copy_from_slice(&trimmed);
        Value::from(Base64UrlUnpadded::encode_string(&fixed))
    };
    let mut jwk = Map::new();
    jwk.insert("kty".into(), "EC".into());
    jwk.insert("crv".into(), "P-256".into());
    jwk.insert("x".into(), coordinate("wx"));
    jwk.insert("y".into(), coordinate("wy"));
    jwk
}

#[test]
fn ecdsa_p256_p1363_vectors() {
    assert!(run_signature_file("ecdsa_secp256r1_sha256_p1363_test.json", "publicKeyJwk") > 250);
}

#[test]
fn ed25519_vectors() {
    assert!(run_signature_file("ed25519_test.json", "publicKeyJwk") > 140);
}

#[test]
fn rsa_pkcs1_2048_sha256_vectors() {
    assert!(run_signature_file("rsa_signature_2048_sha256_test.json", "keyJwk") > 250);
}
