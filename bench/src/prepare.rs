//! `prepare`: everything the run needs that costs time to make, written once to a directory. The JWKS (native
//! `jwt_authn`'s `local_jwks`) and the bundle (keymesh) hold the same fixture keys; the token pools are signed
//! by them.

use crate::matrix::{alg_slug, TokenCase, Workload, ALGS};
use anyhow::{bail, Context, Result};
use keymesh_testkit::{fixture, tamper_signature, Alg, ISSUER};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The audience of every bench token: the resource URI of the API behind the benchmarked Envoy.
pub(crate) const BENCH_AUDIENCE: &str = "https://api.bench.keymesh.test";
/// The version of the prepared bundle.
pub(crate) const BUNDLE_VERSION: u64 = 1;
/// The wrk script, written next to the pools.
pub(crate) const POOL_LUA: &str = include_str!("pool.lua");

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
    let path = data.join(workload.pool_file());
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("{} is empty", path.display()))
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
        FilterConfig::parse(crate::envoy::keymesh_filter_config(true).as_bytes()).unwrap();
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
}
