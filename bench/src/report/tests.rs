//! The token report: ratios paired by repetition, the summary and markdown, and the checks.

use super::*;
use crate::stats::pairwise_ratio;
use crate::wrk::SocketErrors;
use crate::wrk::WrkReport;
use std::collections::BTreeMap;

fn cell(rep: usize, variant: Variant, case: TokenCase, rps: f64, cpu: f64) -> CellResult {
    CellResult {
        rep,
        variant,
        alg: "EdDSA".into(),
        case,
        measured: Measured {
            cpu_us_per_req: cpu,
            envoy_cpu_share: 1.0,
            rss_warm_kib: 50_000,
            rss_end_kib: 51_200,
            counters: BTreeMap::new(),
            wrk: WrkReport {
                requests: 1000,
                duration_secs: 1.0,
                rps,
                p50_us: 1e6 / rps,
                p75_us: 0.0,
                p90_us: 0.0,
                p99_us: 2e6 / rps,
                non_2xx: 0,
                socket_errors: SocketErrors::default(),
            },
        },
    }
}

#[test]
fn ratios_pair_keymesh_and_native_by_repetition() {
    let f = TokenCase::Fresh;
    let cells = vec![
        cell(0, Variant::Keymesh, f, 900.0, 100.0),
        cell(0, Variant::JwtAuthn, f, 1000.0, 80.0),
        cell(1, Variant::JwtAuthn, f, 500.0, 160.0), // a busy moment hits both cells of rep 1
        cell(1, Variant::Keymesh, f, 450.0, 200.0),
        cell(2, Variant::Keymesh, f, 1200.0, 90.0),
        cell(2, Variant::JwtAuthn, f, 1000.0, 90.0),
    ];
    let r = ratios(&cells);
    assert_eq!(r.len(), 1, "no jwt_authn_cache cells, so one pair");
    let rps = r[0].figures.rps.unwrap();
    assert!(
        (rps.median - 0.9).abs() < 1e-12
            && (rps.min - 0.9).abs() < 1e-12
            && (rps.max - 1.2).abs() < 1e-12
    );
    let cpu = r[0].figures.cpu_per_req.unwrap();
    assert!((cpu.median - 1.25).abs() < 1e-12);
    assert!((r[0].figures.p50.unwrap().median - 1.0 / 0.9).abs() < 1e-12);
}

#[test]
fn summary_and_markdown_cover_every_cell() {
    let cells = vec![
        cell(0, Variant::None, TokenCase::Cached, 2000.0, 40.0),
        cell(0, Variant::Keymesh, TokenCase::Cached, 1500.0, 60.0),
        cell(0, Variant::JwtAuthnCache, TokenCase::Cached, 1800.0, 50.0),
    ];
    let s = summarise(&cells);
    assert_eq!(
        s.iter().map(|s| s.variant).collect::<Vec<_>>(),
        [Variant::None, Variant::JwtAuthnCache, Variant::Keymesh]
    );
    let memory = vec![
        MemoryRow {
            concurrency: 1,
            rss_none_kib: 40_960,
            rss_keymesh_kib: 51_200,
        },
        MemoryRow {
            concurrency: 2,
            rss_none_kib: 43_008,
            rss_keymesh_kib: 58_368,
        },
    ];
    assert_eq!(per_worker_kib(&memory), Some(5120.0));
    let three = [
        MemoryRow {
            concurrency: 1,
            rss_none_kib: 0,
            rss_keymesh_kib: 1000,
        },
        MemoryRow {
            concurrency: 2,
            rss_none_kib: 0,
            rss_keymesh_kib: 1300,
        },
        MemoryRow {
            concurrency: 4,
            rss_none_kib: 0,
            rss_keymesh_kib: 1600,
        },
    ];
    let slope = per_worker_kib(&three).unwrap();
    assert!((slope - 8100.0 / 42.0).abs() < 1e-9, "{slope}");
    assert_eq!(per_worker_kib(&three[..1]), None);
    assert_eq!(latency(850.0), "850 µs");
    assert_eq!(latency(1230.0), "1.23 ms");
    assert_eq!(ratio_cell(pairwise_ratio(&[(1.0, 2.0)])), "0.50");
}

#[test]
fn checks_read_the_cache_hit_rate_and_refusal_reasons() {
    let mut hit = cell(0, Variant::JwtAuthnCache, TokenCase::Cached, 1000.0, 50.0);
    hit.measured.counters = BTreeMap::from([
        ("jwt_authn.jwt_cache_hit".into(), 990),
        ("jwt_authn.jwt_cache_miss".into(), 10),
    ]);
    let mut miss = cell(0, Variant::JwtAuthnCache, TokenCase::Fresh, 1000.0, 50.0);
    miss.measured.counters = BTreeMap::from([("jwt_authn.jwt_cache_miss".into(), 1000)]);
    let mut refused = cell(0, Variant::Keymesh, TokenCase::Invalid, 1000.0, 50.0);
    refused.measured.counters = BTreeMap::from([("keymesh.denied.bad_signature".into(), 1000)]);
    let lines = checks(&[hit, miss, refused]);
    assert_eq!(
        lines[0],
        "jwt_authn_cache hit rate: cached 99.0%, fresh 0.0%"
    );
    assert!(
        lines[1].starts_with(
            "keymesh decisions in `invalid` runs that were `bad_signature` refusals: 100.0%"
        ),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("bundle fetch failures 0"));
}
