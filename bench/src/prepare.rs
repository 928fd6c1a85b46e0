//! `prepare` and `prepare-api-keys`: everything a run needs that costs time to make, written once to a directory.
//!
//! Tokens: the JWKS (native `jwt_authn`'s `local_jwks`) and the bundle (keymesh) hold the same fixture keys; the
//! token pools are signed by them. API keys: K seeded keys, the keymesh bundle holding their hashes, the native
//! `api_key_auth` credential list holding them in clear, and the valid/unknown key pools.

use crate::matrix::{alg_slug, KeyCase, TokenCase, Workload, ALGS};
use anyhow::{bail, Context, Result};
use keymesh_core::apikey::{format_key, hash_key};
use keymesh_core::bundle::{ApiKeyChangesDto, ApiKeyDto, BundleDto, PageDto};
use keymesh_core::delivery::paging::{by_hash_bytes, page_end};
use keymesh_testkit::{fixture, tamper_signature, Alg, ISSUER};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The audience of every bench token: the resource URI of the API behind the benchmarked Envoy.
pub(crate) const BENCH_AUDIENCE: &str = "https://api.bench.keymesh.test";
/// The version of the prepared bundle.
pub(crate) const BUNDLE_VERSION: u64 = 1;
/// The wrk script, written next to the pools.
pub(crate) const POOL_LUA: &str = include_str!("pool.lua");
/// The wrk script of the API-key workloads.
pub(crate) const APIKEY_POOL_LUA: &str = include_str!("apikey_pool.lua");

/// What `prepare` wrote, read back by `run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// Valid tokens per algorithm (the invalid pool has as many).
    pub(crate) pool: usize,
    /// `exp` of every token, seconds since the epoch.
    pub(crate) expires_at: u64,
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) bundle_version: u64,
    pub(crate) created_at: u64,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The claims of one bench token: valid for [`BENCH_AUDIENCE`], its `jti` made distinct by `jti` and the alg.
pub(crate) fn bench_claims(alg: Alg, jti: &str, iat: u64, exp: u64) -> serde_json::Value {
    json!({
        "iss": ISSUER, "sub": "bench-client", "aud": [BENCH_AUDIENCE], "client_id": "bench-client",
        "scope": "bench:read", "iat": iat, "exp": exp, "jti": format!("{}-{jti}", alg_slug(alg)),
    })
}

/// Signs `count` distinct valid tokens, spread over every core (RS256 signing dominates).
pub(crate) fn mint_pool(alg: Alg, count: usize, iat: u64, exp: u64) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let fixture = fixture();
    let mut tokens = Vec::with_capacity(count);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || {
                    (start..(start + chunk).min(count))
                        .map(|i| fixture.token(alg, &bench_claims(alg, &i.to_string(), iat, exp)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            // A signing thread only panics on a testkit bug; keep what the others made and let the count check
            // below report it.
            if let Ok(part) = handle.join() {
                tokens.extend(part);
            }
        }
    });
    tokens
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn write_lines(path: &Path, lines: &[String]) -> Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    write(path, &text)
}

/// Writes the JWKS, the bundle, the wrk script and, per algorithm, the cached/fresh/invalid token pools.
pub(crate) fn prepare(out: &Path, pool: usize, ttl_days: u64) -> Result<Manifest> {
    if pool == 0 {
        bail!("--pool must be at least 1");
    }
    std::fs::create_dir_all(out.join("tokens"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let fixture = fixture(); // RSA key generation happens here, once
    let iat = now_secs().saturating_sub(60);
    let exp = now_secs() + ttl_days * 86_400;

    write(&out.join("jwks.json"), &fixture.jwks().to_string())?;
    write(&out.join("bundle.json"), &fixture.bundle(BUNDLE_VERSION))?;
    write(&out.join("pool.lua"), POOL_LUA)?;

    for alg in ALGS {
        let started = std::time::Instant::now();
        let cached = fixture.token(alg, &bench_claims(alg, "cached", iat, exp));
        let fresh = mint_pool(alg, pool, iat, exp);
        if fresh.len() != pool {
            bail!(
                "minted {} {} tokens, wanted {pool}",
                fresh.len(),
                alg.name()
            );
        }
        // Same claims as the valid pool but one signature character flipped: full verification, then refusal.
        let invalid: Vec<String> = fresh.iter().map(|t| tamper_signature(t)).collect();
        for (case, tokens) in [
            (TokenCase::Cached, std::slice::from_ref(&cached)),
            (TokenCase::Fresh, fresh.as_slice()),
            (TokenCase::Invalid, invalid.as_slice()),
        ] {
            write_lines(&out.join(Workload { alg, case }.pool_file()), tokens)?;
        }
        eprintln!(
            "[prepare] {}: {pool} valid + {pool} invalid tokens in {:.1} s",
            alg.name(),
            started.elapsed().as_secs_f64()
        );
    }

    let manifest = Manifest {
        pool,
        expires_at: exp,
        issuer: ISSUER.to_owned(),
        audience: BENCH_AUDIENCE.to_owned(),
        bundle_version: BUNDLE_VERSION,
        created_at: now_secs(),
    };
    write(
        &out.join("manifest.json"),
        &serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

/// Reads a prepared directory's manifest, refusing one whose tokens expire within a day.
pub(crate) fn load_manifest(data: &Path) -> Result<Manifest> {
    let path = data.join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: run `keymesh-bench prepare --out {}` first",
            path.display(),
            data.display()
        )
    })?;
    let manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("bad {}", path.display()))?;
    if manifest.expires_at < now_secs() + 86_400 {
        bail!(
            "the tokens in {} expire within a day: prepare again",
            data.display()
        );
    }
    Ok(manifest)
}

/// The first line of a pool file.
pub(crate) fn first_token(data: &Path, workload: Workload) -> Result<String> {
    first_line(&data.join(workload.pool_file()))
}

/// The first line of a file, which must not be empty.
pub(crate) fn first_line(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("{} is empty", path.display()))
}

// ---------------------------------------------------------------------------------------------------------------
// API keys

/// SplitMix64: a small seeded generator, enough for bench keys (they only need to be distinct and well formed).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn secret(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// `count` keymesh keys (`km_…`) from `seed`.
pub(crate) fn generate_keys(count: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    (0..count).map(|_| format_key(&rng.secret())).collect()
}

/// The bundle entries of `keys` (by hash), each valid for the bench audience with no scope.
fn bench_entries(keys: &[String]) -> Vec<ApiKeyDto> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| ApiKeyDto {
            hash: hash_key(key),
            id: format!("ak_bench{i}"),
            owner: format!("bench-owner-{i}"),
            resources: vec![BENCH_AUDIENCE.to_owned()],
            scopes: vec![],
            expires_at: None,
            tier: None,
        })
        .collect()
}

/// The keymesh full bundle holding `keys` (by hash), each valid for the bench audience with no scope.
pub(crate) fn api_key_bundle_json(keys: &[String], version: u64) -> Result<String> {
    let dto = BundleDto {
        version,
        since: None,
        issuers: vec![],
        api_keys: ApiKeyChangesDto {
            put: bench_entries(keys),
            delete: vec![],
        },
        revoked_tokens: vec![],
    };
    Ok(serde_json::to_string(&dto)?)
}

/// Directory (under the prepared data) of the full bundle in pages, one `<from>.json` per page.
pub(crate) const PAGES_DIR: &str = "bundle-pages";

/// Writes the full bundle of `keys` (in hash-byte order) at `version` in pages under `dir`, cut as the sidecar
/// cuts them; returns where each page starts and the largest page's size.
pub(crate) fn write_bundle_pages(
    dir: &Path,
    keys: &[String],
    version: u64,
) -> Result<(Vec<u64>, u64)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let entries = bench_entries(keys);
    let total = entries.len() as u64;
    let (mut starts, mut largest, mut from) = (Vec::new(), 0u64, 0usize);
    loop {
        let end = page_end(&entries, from, |entry| entry)?;
        let page = json!({"version": version, "issuers": [],
            "api_keys": {"put": &entries[from..end]},
            "page": PageDto {from: from as u64, next: (end < entries.len()).then_some(end as u64), keys: total}});
        let text = page.to_string();
        largest = largest.max(text.len() as u64);
        write(&dir.join(format!("{from}.json")), &text)?;
        starts.push(from as u64);
        if end >= entries.len() {
            return Ok((starts, largest));
        }
        from = end;
    }
}

/// The native `api_key_auth` credential list: `[{key, client}]`.
pub(crate) fn native_credentials(keys: &[String]) -> Value {
    Value::Array(
        keys.iter()
            .enumerate()
            .map(|(i, key)| json!({"key": key, "client": format!("bench-client-{i}")}))
            .collect(),
    )
}

/// What `prepare-api-keys` wrote, read back by `run-api-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyManifest {
    pub(crate) keys: usize,
    pub(crate) pool: usize,
    pub(crate) seed: u64,
    pub(crate) bundle_bytes: u64,
    pub(crate) native_config_bytes: u64,
    pub(crate) created_at: u64,
    /// Where each page of the paged full bundle starts (`bundle-pages/<from>.json`); empty in data prepared
    /// before pages existed, which is then served whole.
    #[serde(default)]
    pub(crate) pages: Vec<u64>,
    /// The largest page's size in bytes.
    #[serde(default)]
    pub(crate) largest_page_bytes: u64,
}

/// Writes `bundle.json` (keymesh), the same in pages under `bundle-pages/`, `bundle-empty.json`, `credentials.json` (native), the pools `keys/valid.txt`
/// (the first `pool` keys) and `keys/unknown.txt` (as many well-formed keys that are not in the set), `last.txt`
/// (the last key of the set, for the delivery poll), the wrk script and `manifest.json`.
pub(crate) fn prepare_api_keys(
    out: &Path,
    keys: usize,
    pool: usize,
    seed: u64,
) -> Result<KeyManifest> {
    if keys == 0 || pool == 0 {
        bail!("--keys and --pool must be at least 1");
    }
    std::fs::create_dir_all(out.join("keys"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut set = generate_keys(keys, seed);
    // In hash-byte order, as the sidecar serves a full bundle; `last.txt` is then the key the filter stores last.
    let mut hashed: Vec<(String, String)> =
        set.into_iter().map(|key| (hash_key(&key), key)).collect();
    hashed.sort_by(|a, b| by_hash_bytes(&a.0, &b.0));
    set = hashed.into_iter().map(|(_, key)| key).collect();
    let unknown = generate_keys(pool, seed ^ 0x005E_ED0F_0DD0_BEEF);
    let known: std::collections::HashSet<&String> = set.iter().collect();
    if unknown.iter().any(|k| known.contains(k)) {
        bail!("an unknown key collides with the set: pick another --seed");
    }
    let bundle = api_key_bundle_json(&set, BUNDLE_VERSION)?;
    write(&out.join("bundle.json"), &bundle)?;
    let (pages, largest_page_bytes) =
        write_bundle_pages(&out.join(PAGES_DIR), &set, BUNDLE_VERSION)?;
    write(
        &out.join("bundle-empty.json"),
        &api_key_bundle_json(&[], BUNDLE_VERSION)?,
    )?;
    let native = native_credentials(&set).to_string();
    write(&out.join("credentials.json"), &native)?;
    let pool_keys = &set[..pool.min(keys)];
    write_lines(&out.join(KeyCase::Valid.pool_file()), pool_keys)?;
    write_lines(&out.join(KeyCase::Unknown.pool_file()), &unknown)?;
    write(&out.join("last.txt"), set.last().map_or("", String::as_str))?;
    write(&out.join("apikey_pool.lua"), APIKEY_POOL_LUA)?;
    let manifest = KeyManifest {
        keys,
        pool: pool_keys.len(),
        seed,
        bundle_bytes: bundle.len() as u64,
        native_config_bytes: native.len() as u64,
        created_at: now_secs(),
        pages,
        largest_page_bytes,
    };
    write(
        &out.join("manifest.json"),
        &serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

/// Reads a directory prepared by [`prepare_api_keys`].
pub(crate) fn load_key_manifest(data: &Path) -> Result<KeyManifest> {
    let path = data.join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: run `keymesh-bench prepare-api-keys --out {}` first",
            path.display(),
            data.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("bad {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64UrlUnpadded, Encoding};
    use keymesh_core::{FilterConfig, KeySet};

    fn segment(token: &str, n: usize) -> serde_json::Value {
        let part = token.split('.').nth(n).unwrap();
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(part).unwrap()).unwrap()
    }

    /// keymesh-core accepts the bundle and the filter config the bench uses; the pools hold distinct tokens for
    /// the bench audience, and each invalid token is a valid one with its signature changed. (Whether the filter
    /// and jwt_authn accept them is checked against the real Envoys before every run.)
    #[test]
    fn prepares_distinct_tokens_for_the_bench_bundle_and_config() {
        let dir = std::env::temp_dir().join(format!("keymesh-bench-test-{}", std::process::id()));
        let manifest = prepare(&dir, 3, 30).unwrap();
        assert_eq!(manifest.pool, 3);
        let bundle = std::fs::read(dir.join("bundle.json")).unwrap();
        let (keys, skipped) = KeySet::parse_bundle(&bundle).unwrap();
        assert!(skipped.is_empty());
        assert!(keys.len() >= 3);
        FilterConfig::parse(
            crate::envoy::keymesh_filter_config(true, Some(crate::envoy::TOKEN_IDENTITY_HEADERS))
                .as_bytes(),
        )
        .unwrap();
        let pool = |alg, case| -> Vec<String> {
            let text =
                std::fs::read_to_string(dir.join(Workload { alg, case }.pool_file())).unwrap();
            text.lines().map(str::to_owned).collect()
        };
        for alg in ALGS {
            let (cached, fresh, invalid) = (
                pool(alg, TokenCase::Cached),
                pool(alg, TokenCase::Fresh),
                pool(alg, TokenCase::Invalid),
            );
            assert_eq!((cached.len(), fresh.len(), invalid.len()), (1, 3, 3));
            let mut jtis = std::collections::HashSet::new();
            for token in cached.iter().chain(&fresh) {
                let (header, claims) = (segment(token, 0), segment(token, 1));
                assert_eq!(header["alg"], alg.name());
                assert_eq!(header["kid"], alg.kid());
                assert_eq!(claims["iss"], ISSUER);
                assert_eq!(claims["aud"][0], BENCH_AUDIENCE);
                assert!(claims["exp"].as_u64().unwrap() > now_secs() + 29 * 86_400);
                assert!(
                    jtis.insert(claims["jti"].as_str().unwrap().to_owned()),
                    "jti repeated"
                );
            }
            for (good, bad) in fresh.iter().zip(&invalid) {
                let (good_input, good_sig) = good.rsplit_once('.').unwrap();
                let (bad_input, bad_sig) = bad.rsplit_once('.').unwrap();
                assert_eq!(good_input, bad_input);
                assert_ne!(good_sig, bad_sig);
                assert_eq!(good_sig.len(), bad_sig.len());
            }
        }
        let jwks: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("jwks.json")).unwrap()).unwrap();
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(3));
        assert!(load_manifest(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_are_seeded_distinct_and_well_formed() {
        let a = generate_keys(200, 7);
        assert_eq!(a, generate_keys(200, 7));
        assert_ne!(a, generate_keys(200, 8));
        assert!(a.iter().all(|k| keymesh_core::apikey::is_well_formed(k)));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 200);
    }

    #[test]
    fn api_key_bundle_holds_the_hashes_for_the_bench_audience_and_parses() {
        let keys = generate_keys(3, 1);
        let text = api_key_bundle_json(&keys, 1).unwrap();
        assert!(
            !keys.iter().any(|k| text.contains(k.as_str())),
            "a key leaked into the bundle"
        );
        let dto: BundleDto = serde_json::from_str(&text).unwrap();
        assert_eq!(dto.api_keys.put.len(), 3);
        assert_eq!(dto.api_keys.put[2].hash, hash_key(&keys[2]));
        assert_eq!(dto.api_keys.put[0].resources, [BENCH_AUDIENCE]);
        assert!(dto.api_keys.put[0].scopes.is_empty());
        assert!(dto.since.is_none());
        KeySet::parse_bundle(text.as_bytes()).unwrap();
        FilterConfig::parse(
            crate::envoy::keymesh_api_key_filter_config(crate::envoy::FULL_BUNDLE_PATH, 10_000)
                .as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn prepare_api_keys_writes_pools_and_a_parseable_bundle() {
        let dir = std::env::temp_dir().join(format!("keymesh-bench-keys-{}", std::process::id()));
        let m = prepare_api_keys(&dir, 5, 3, 9).unwrap();
        assert_eq!((m.keys, m.pool), (5, 3));
        let valid = std::fs::read_to_string(dir.join("keys/valid.txt")).unwrap();
        let unknown = std::fs::read_to_string(dir.join("keys/unknown.txt")).unwrap();
        assert_eq!(valid.lines().count(), 3);
        assert_eq!(unknown.lines().count(), 3);
        let all = generate_keys(5, 9);
        // `last.txt` is the key stored last: the greatest hash's bytes, as the bundle is in that order.
        let last = all
            .iter()
            .max_by(|a, b| by_hash_bytes(&hash_key(a), &hash_key(b)))
            .unwrap();
        assert_eq!(
            &std::fs::read_to_string(dir.join("last.txt")).unwrap(),
            last
        );
        assert!(unknown.lines().all(|k| !all.iter().any(|a| a == k)));
        let (keys, _) =
            KeySet::parse_bundle(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
        let _ = keys;
        let manifest = load_key_manifest(&dir).unwrap();
        assert_eq!((manifest.keys, manifest.pages.as_slice()), (5, &[0][..]));
        let page: Value =
            serde_json::from_slice(&std::fs::read(dir.join(PAGES_DIR).join("0.json")).unwrap())
                .unwrap();
        assert_eq!(page["page"], json!({"from": 0, "keys": 5}));
        assert_eq!(page["api_keys"]["put"].as_array().unwrap().len(), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
