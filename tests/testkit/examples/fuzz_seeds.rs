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
    sidecar_seeds(&root, &jws, &jwk);
    println!("seed corpora written to {}", root.display());
}

/// The sidecar's targets: token, revocation and introspection forms of every grant and client authentication
/// method; authorization queries and the login and consent forms; client registration bodies; discovery documents
/// and JWK Sets of an external provider (`https://idp.fuzz.example`, the issuer those targets register).
fn sidecar_seeds(root: &Path, jws: &serde_json::Value, jwk: &serde_json::Value) {
    use base64ct::{Base64, Encoding};
    let basic = |id: &str, secret: &str| {
        format!(
            "Basic {}",
            Base64::encode_string(format!("{id}:{secret}").as_bytes())
        )
    };
    let verifier = "dBjftJeZ4CVP-mJ0t5sqcgRFqsAOsQhd8uHvpHRy-Ka";
    // token_request: the `Authorization` line (empty for none), then the form.
    let dir = corpus(root, "token_request");
    let forms: &[(&str, String)] = &[
        ("cc-basic", format!("{}\ngrant_type=client_credentials&scope=orders%3Aread&resource=https%3A%2F%2Forders.example", basic("svc", "s3cret"))),
        ("cc-post", "\ngrant_type=client_credentials&client_id=svc&client_secret=s3cret&resource=https%3A%2F%2Forders.example&resource=urn%3Ab&scope=read+write".into()),
        ("cc-encoded-basic", format!("{}\ngrant_type=client_credentials", basic("svc%3Aa", "p%40ss+word"))),
        ("code-public", format!("\ngrant_type=authorization_code&client_id=native&code=Zm9vYmFy&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcb&code_verifier={verifier}")),
        ("code-confidential", format!("{}\ngrant_type=authorization_code&code=Zm9vYmFy&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Ftenant%3Da&code_verifier={verifier}", basic("web", "s3cret"))),
        ("refresh", format!("{}\ngrant_type=refresh_token&refresh_token=cmVmcmVzaA&scope=orders%3Aread", basic("web", "s3cret"))),
        ("refresh-public", "\ngrant_type=refresh_token&client_id=native&refresh_token=cmVmcmVzaA&resource=https%3A%2F%2Forders.example".into()),
        ("password", "\ngrant_type=password&username=alice&password=x&client_id=svc".into()),
        ("mixed-auth", format!("{}\ngrant_type=client_credentials&client_id=svc&client_secret=s", basic("svc", "s"))),
        ("mismatch", format!("{}\ngrant_type=client_credentials&client_id=other", basic("svc", "s"))),
        ("repeated", "\ngrant_type=a&grant_type=b".into()),
        ("bad-escape", "\ngrant_type=%zz&scope".into()),
        ("revoke", format!("{}\ntoken=cmVmcmVzaA&token_type_hint=refresh_token", basic("web", "s3cret"))),
        ("introspect-jwt", format!("{}\ntoken=eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln", basic("web", "s3cret"))),
        ("revoke-public", "\nclient_id=native&token=cmVmcmVzaA".into()),
        ("bearer", "Bearer abc\ngrant_type=client_credentials&client_id=a".into()),
    ];
    for (name, form) in forms {
        write(&dir, name, form.as_bytes());
    }
    // authorize_request: the `Cookie` line, then the query (or a login or consent form body).
    let dir = corpus(root, "authorize_request");
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let queries: &[(&str, String)] = &[
        ("native", format!("\nclient_id=native&response_type=code&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcb&scope=orders%3Aread&resource=https%3A%2F%2Forders.example&code_challenge={challenge}&code_challenge_method=S256&state=xyz")),
        ("native-scheme", format!("keymesh_session=abc; theme=dark\nclient_id=native&response_type=code&redirect_uri=com.example.app%3A%2Fcallback&code_challenge={challenge}&code_challenge_method=S256")),
        ("web", "\nclient_id=web&response_type=code&scope=orders%3Aread+orders%3Awrite&state=s+p%26a%3Dc&response_mode=query".into()),
        ("web-resources", "\nclient_id=web&response_type=code&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Ftenant%3Da&resource=https%3A%2F%2Forders.example&resource=https%3A%2F%2Fpayments.example".into()),
        ("plain-pkce", "\nclient_id=native&response_type=code&code_challenge=abc&code_challenge_method=plain&state=1".into()),
        ("implicit", "\nclient_id=web&response_type=token&state=1".into()),
        ("fragment-mode", "\nclient_id=web&response_type=code&response_mode=fragment".into()),
        ("login", "keymesh_session=c2Vzc2lvbg\ncsrf=Y3NyZg&request=cmVx&action=login&username=alice&password=correct+horse".into()),
        ("consent", "keymesh_session=c2Vzc2lvbg\ncsrf=Y3NyZg&request=cmVx&action=approve".into()),
    ];
    for (name, query) in queries {
        write(&dir, name, query.as_bytes());
    }
    // client_registration: RFC 7591 bodies, as MCP clients and native apps send them.
    let dir = corpus(root, "client_registration");
    let bodies = [
        (
            "mcp-public",
            serde_json::json!({"client_name": "Inspector", "redirect_uris": ["http://127.0.0.1:6274/oauth/callback"], "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], "token_endpoint_auth_method": "none", "scope": "orders:read"}),
        ),
        (
            "confidential",
            serde_json::json!({"redirect_uris": ["https://app.example/cb?tenant=a", "https://app.example/other"], "token_endpoint_auth_method": "client_secret_post", "scope": "orders:read orders:write"}),
        ),
        (
            "native-scheme",
            serde_json::json!({"redirect_uris": ["com.example.app:/callback"], "token_endpoint_auth_method": "none", "client_name": "App"}),
        ),
        (
            "update",
            serde_json::json!({"client_id": "dyn-abc", "redirect_uris": ["http://[::1]/cb"], "token_endpoint_auth_method": "none", "logo_uri": "https://x"}),
        ),
        (
            "refused",
            serde_json::json!({"redirect_uris": ["javascript:alert(1)", "http://evil.example/cb"], "grant_types": ["client_credentials"], "response_types": ["token"], "token_endpoint_auth_method": "private_key_jwt"}),
        ),
    ];
    for (name, body) in bodies {
        write(&dir, name, body.to_string().as_bytes());
    }
    // issuer_discovery: OIDC and RFC 8414 documents of the provider, an impostor's, and bad jwks_uris.
    let dir = corpus(root, "issuer_discovery");
    let issuer = "https://idp.fuzz.example";
    let documents = [
        (
            "oidc",
            serde_json::json!({"issuer": issuer, "authorization_endpoint": format!("{issuer}/authorize"), "token_endpoint": format!("{issuer}/token"), "jwks_uri": format!("{issuer}/.well-known/jwks.json"), "response_types_supported": ["code"], "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"]}),
        ),
        (
            "rfc8414",
            serde_json::json!({"issuer": issuer, "token_endpoint": format!("{issuer}/oauth/token"), "jwks_uri": "https://keys.fuzz.example:8443/v1/keys?tenant=a", "grant_types_supported": ["client_credentials"]}),
        ),
        (
            "impostor",
            serde_json::json!({"issuer": "https://evil.example", "jwks_uri": "https://evil.example/jwks"}),
        ),
        (
            "loopback",
            serde_json::json!({"issuer": issuer, "jwks_uri": "http://127.0.0.1:8080/jwks"}),
        ),
        (
            "plain-http",
            serde_json::json!({"issuer": issuer, "jwks_uri": "http://keys.example/jwks"}),
        ),
        (
            "credentials",
            serde_json::json!({"issuer": issuer, "jwks_uri": "https://user:pass@keys.example/jwks"}),
        ),
        ("no-jwks-uri", serde_json::json!({"issuer": issuer})),
    ];
    for (name, document) in documents {
        write(&dir, name, document.to_string().as_bytes());
    }
    // issuer_jwks: the Wycheproof key sets and the fixture's, and a provider's set with one key of each kind of
    // trouble beside a good one.
    let dir = corpus(root, "issuer_jwks");
    let mut n = 0;
    for file in [jws, jwk] {
        for group in file["testGroups"].as_array().into_iter().flatten() {
            if group["public"].is_object() {
                write(
                    &dir,
                    &format!("wycheproof-{n:03}"),
                    group["public"].to_string().as_bytes(),
                );
                n += 1;
            }
        }
    }
    let fixture = keymesh_testkit::fixture().jwks();
    write(&dir, "fixture", fixture.to_string().as_bytes());
    let good = fixture["keys"][0].clone();
    let mixed = serde_json::json!({"keys": [
        good,
        {"kty": "OKP", "crv": "Ed25519", "kid": "not-a-point", "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
    ]});
    write(&dir, "mixed", mixed.to_string().as_bytes());
}
