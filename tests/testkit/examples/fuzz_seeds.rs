//! Writes the seed corpora of every target into `fuzz/corpus/<target>/`: the scenario table's requests, the
//! Wycheproof JWS and JWK vectors, the fixture bundle and damaged variants of it, and filter configurations.
//! `scripts/fuzz.sh` runs it (`cargo run -p keymesh-testkit --example fuzz_seeds -- fuzz/corpus`) before fuzzing;
//! the corpora are not committed. The request format is the `authorize` target's: lines of path, then header
//! values, `k:` marking an `x-api-key` value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    if let Err(e) = fs::write(dir.join(name), bytes) {
        panic!("cannot write seed {name}: {e}");
    }
}

/// Writes only when the content changed, so that the fuzz crate (which includes these files) is not rebuilt.
fn write_if_changed(dir: &Path, name: &str, bytes: &[u8]) {
    if fs::read(dir.join(name)).ok().as_deref() != Some(bytes) {
        write(dir, name, bytes);
    }
}

fn corpus(root: &Path, target: &str) -> PathBuf {
    let dir = root.join(target);
    if let Err(e) = fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

fn wycheproof(repo: &Path, file: &str) -> serde_json::Value {
    let path = repo.join("tests/testdata/wycheproof").join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One request in the `authorize` target's format.
fn encode(path: &str, authorization: &[String], api_key: Option<&str>) -> String {
    let mut out = path.to_owned();
    for value in authorization {
        out.push('\n');
        out.push_str(value);
    }
    if let Some(key) = api_key {
        out.push_str("\nk:");
        out.push_str(key);
    }
    out
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let repo = repo.as_path();

    // authorize: every scenario row, and every Wycheproof JWS as a bearer token on the orders route.
    let dir = corpus(&root, "authorize");
    for (i, s) in keymesh_testkit::scenarios().iter().enumerate() {
        let seed = encode(s.path, &s.authorization, s.x_api_key.as_deref());
        write(&dir, &format!("scenario-{i:03}"), seed.as_bytes());
    }
    let jws = wycheproof(repo, "json_web_signature_test.json");
    let jwk = wycheproof(repo, "json_web_key_test.json");
    let mut n = 0;
    for file in [&jws, &jwk] {
        for group in file["testGroups"].as_array().into_iter().flatten() {
            for test in group["tests"].as_array().into_iter().flatten() {
                if let Some(token) = test["jws"].as_str() {
                    let seed = encode("/orders/1", &[format!("Bearer {token}")], None);
                    write(&dir, &format!("wycheproof-{n:03}"), seed.as_bytes());
                    n += 1;
                }
            }
        }
    }

    // key_set: each Wycheproof key set whole, and each of its keys alone; the fixture's keys.
    let dir = corpus(&root, "key_set");
    let mut n = 0;
    for file in [&jws, &jwk] {
        for group in file["testGroups"].as_array().into_iter().flatten() {
            for set in [&group["public"], &group["private"]] {
                if set.is_null() {
                    continue;
                }
                write(&dir, &format!("set-{n:03}"), set.to_string().as_bytes());
                for key in set["keys"].as_array().into_iter().flatten() {
                    write(
                        &dir,
                        &format!("key-{n:03}-{}", key["kid"].as_str().unwrap_or("x")),
                        key.to_string().as_bytes(),
                    );
                }
                n += 1;
            }
        }
    }
    write(
        &dir,
        "fixture",
        keymesh_testkit::fixture().jwks().to_string().as_bytes(),
    );

    // bundle_apply: the fixture bundle, a delta over it, and a full bundle then a delta (NUL-separated).
    let dir = corpus(&root, "bundle_apply");
    let full = keymesh_testkit::fixture().bundle(1);
    let delta = serde_json::json!({"version": 2, "since": 1, "issuers": serde_json::from_str::<serde_json::Value>(&full)
        .map(|b| b["issuers"].clone()).unwrap_or_default(),
        "api_keys": {"put": [], "delete": [keymesh_testkit::key_hash(keymesh_testkit::KEY_ORDERS)]},
        "revoked_tokens": [{"jti": "jti-1", "exp": keymesh_testkit::NOW + 60}]})
    .to_string();
    write(&dir, "full", full.as_bytes());
    write(&dir, "delta", delta.as_bytes());
    write(
        &dir,
        "full-then-delta",
        format!("{full}\0{delta}").as_bytes(),
    );

    // filter_config: the scenario configuration and small variants.
    let dir = corpus(&root, "filter_config");
    write(
        &dir,
        "scenario",
        keymesh_testkit::SCENARIO_CONFIG.as_bytes(),
    );
    write(
        &dir,
        "minimal",
        br#"{"sidecar":{"cluster":"k"},"routes":[{"prefix":"/","audience":"https://a"}]}"#,
    );
    write(
        &dir,
        "everything",
        br#"{"sidecar":{"cluster":"k","authority":"a","path":"/v1/bundle","refresh_interval_ms":1000,"timeout_ms":2000,"long_poll_secs":25,"max_age_secs":600},"routes":[{"prefix":"/x","audience":"https://a","scopes":["s"],"credential":"either","when_stale":"last_known_keys"}],"api_key_header":"x-api-key","token_cache_size":16,"trusted_issuers":["https://i"],"leeway_secs":30,"max_token_bytes":8192,"token_query_param":"t","forward_token":true,"realm":"r"}"#,
    );
    // The fixed key material the targets decide against (public keys only), so that a fuzz process does not
    // generate the fixture's RSA key: committed under fuzz/fixed/, rewritten here when the fixture changes.
    let fixed = root.join("../fixed");
    let _ = fs::create_dir_all(&fixed);
    write_if_changed(
        &fixed,
        "bundle.json",
        keymesh_testkit::fixture().bundle(1).as_bytes(),
    );
    write_if_changed(
        &fixed,
        "config.json",
        keymesh_testkit::SCENARIO_CONFIG.as_bytes(),
    );
    let token = keymesh_testkit::fixture().token(
        keymesh_testkit::Alg::EdDsa,
        &keymesh_testkit::claims(&["https://orders.local"], "orders:read"),
    );
    write_if_changed(&fixed, "token.txt", token.as_bytes());
    write_if_changed(
        &fixed,
        "now.txt",
        keymesh_testkit::NOW.to_string().as_bytes(),
    );
    println!("seed corpora written to {}", root.display());
}
