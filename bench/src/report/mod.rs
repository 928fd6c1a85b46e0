//! The results of a run: raw cells, their summaries, the keymesh/native ratios, memory; as JSON and markdown.
//!
//! What one cell measured ([`Measured`]), the spreads of a group of cells ([`Figures`]) and the keymesh/native
//! ratios of paired cells ([`RatioFigures`]) are the same for both matrices; the token report is here, the
//! API-key report in [`api_keys`].

pub(crate) mod api_keys;
mod figures;
pub(crate) mod sidecar;

pub(crate) use figures::{Figures, Measured, RatioFigures};

use crate::machine::Machine;
use crate::matrix::{TokenCase, Variant};
use crate::stats::Spread;
use crate::wrk::WrkSettings;
use serde::Serialize;
use std::fmt::Write as _;

/// One measured cell of the token matrix.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CellResult {
    pub(crate) rep: usize,
    pub(crate) variant: Variant,
    pub(crate) alg: String,
    pub(crate) case: TokenCase,
    #[serde(flatten)]
    pub(crate) measured: Measured,
}

/// How the run was made.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub(crate) command: String,
    pub(crate) duration_secs: u64,
    pub(crate) warmup_secs: u64,
    pub(crate) cell_warmup_secs: u64,
    pub(crate) reps: usize,
    pub(crate) concurrency: u32,
    pub(crate) wrk: WrkSettings,
    pub(crate) pool: usize,
    pub(crate) jwt_cache_size: u32,
    pub(crate) pinned: bool,
    pub(crate) module_path: String,
    pub(crate) module_bytes: u64,
    pub(crate) loadavg_end: String,
}

/// Envoy RSS with and without keymesh at one `--concurrency`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemoryRow {
    pub(crate) concurrency: u32,
    pub(crate) rss_none_kib: u64,
    pub(crate) rss_keymesh_kib: u64,
}

impl MemoryRow {
    pub(crate) fn keymesh_extra_kib(&self) -> i64 {
        i64::try_from(self.rss_keymesh_kib).unwrap_or(i64::MAX)
            - i64::try_from(self.rss_none_kib).unwrap_or(0)
    }
}

/// The repetitions of one (variant, alg, case).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) variant: Variant,
    pub(crate) alg: String,
    pub(crate) case: TokenCase,
    #[serde(flatten)]
    pub(crate) figures: Figures,
}

/// keymesh / native for one (alg, case), each ratio taken within one repetition.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Ratio {
    pub(crate) alg: String,
    pub(crate) case: TokenCase,
    pub(crate) native: Variant,
    #[serde(flatten)]
    pub(crate) figures: RatioFigures,
}

/// keymesh's Envoy CPU per request above a floor variant (`empty_min`, `empty_sdk`, `none`), for one (alg, case),
/// each difference taken within one repetition (the floor's cell is its `cached` cell of the same algorithm: a
/// floor does not look at the token).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AboveFloor {
    pub(crate) alg: String,
    pub(crate) case: TokenCase,
    pub(crate) floor: Variant,
    /// keymesh CPU/req − floor CPU/req, µs.
    pub(crate) cpu_us_per_req: Option<Spread>,
    /// keymesh req/s ÷ floor req/s.
    pub(crate) rps_ratio: Option<Spread>,
}

/// The floor variants keymesh's cost is measured above.
const FLOORS: [Variant; 3] = [Variant::EmptyMin, Variant::EmptySdk, Variant::None];

/// keymesh above each floor, pair by pair.
pub(crate) fn above_floors(cells: &[CellResult]) -> Vec<AboveFloor> {
    let mut out = Vec::new();
    for alg in in_order(cells, |c| c.alg.clone()) {
        for case in TokenCase::ALL {
            for floor in FLOORS {
                let mut diffs = Vec::new();
                let mut rps = Vec::new();
                for rep in in_order(cells, |c| c.rep) {
                    let keymesh = cells.iter().find(|c| {
                        c.alg == alg
                            && c.case == case
                            && c.variant == Variant::Keymesh
                            && c.rep == rep
                    });
                    let base = cells.iter().find(|c| {
                        c.alg == alg
                            && c.case == TokenCase::Cached
                            && c.variant == floor
                            && c.rep == rep
                    });
                    if let (Some(k), Some(b)) = (keymesh, base) {
                        diffs.push(k.measured.cpu_us_per_req - b.measured.cpu_us_per_req);
                        rps.push((k.measured.wrk.rps, b.measured.wrk.rps));
                    }
                }
                if diffs.is_empty() {
                    continue;
                }
                out.push(AboveFloor {
                    alg: alg.clone(),
                    case,
                    floor,
                    cpu_us_per_req: crate::stats::spread(&diffs),
                    rps_ratio: crate::stats::pairwise_ratio(&rps),
                });
            }
        }
    }
    out
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Results {
    pub(crate) machine: Machine,
    pub(crate) settings: Settings,
    pub(crate) summary: Vec<Summary>,
    pub(crate) ratios: Vec<Ratio>,
    pub(crate) above_floor: Vec<AboveFloor>,
    pub(crate) memory: Vec<MemoryRow>,
    pub(crate) cells: Vec<CellResult>,
}

/// The distinct values of `key` in order of first appearance.
fn in_order<T: PartialEq + Clone>(cells: &[CellResult], key: impl Fn(&CellResult) -> T) -> Vec<T> {
    let mut seen: Vec<T> = Vec::new();
    for c in cells {
        let k = key(c);
        if !seen.contains(&k) {
            seen.push(k);
        }
    }
    seen
}

/// Summaries per (alg, case, variant), in a stable reading order.
pub(crate) fn summarise(cells: &[CellResult]) -> Vec<Summary> {
    let mut out = Vec::new();
    for alg in in_order(cells, |c| c.alg.clone()) {
        for case in TokenCase::ALL {
            for variant in Variant::ALL {
                let mine: Vec<&CellResult> = cells
                    .iter()
                    .filter(|c| c.alg == alg && c.case == case && c.variant == variant)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let measured: Vec<&Measured> = mine.iter().map(|c| &c.measured).collect();
                out.push(Summary {
                    variant,
                    alg: alg.clone(),
                    case,
                    figures: Figures::of(&measured),
                });
            }
        }
    }
    out
}

/// keymesh/native ratios, paired by repetition.
pub(crate) fn ratios(cells: &[CellResult]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for alg in in_order(cells, |c| c.alg.clone()) {
        for case in TokenCase::ALL {
            for native in Variant::COMPARED {
                let find = |variant: Variant, rep: usize| {
                    cells.iter().find(|c| {
                        c.alg == alg && c.case == case && c.variant == variant && c.rep == rep
                    })
                };
                let pairs: Vec<(&Measured, &Measured)> = in_order(cells, |c| c.rep)
                    .into_iter()
                    .filter_map(|rep| {
                        Some((
                            &find(Variant::Keymesh, rep)?.measured,
                            &find(native, rep)?.measured,
                        ))
                    })
                    .collect();
                if pairs.is_empty() {
                    continue;
                }
                out.push(Ratio {
                    alg: alg.clone(),
                    case,
                    native,
                    figures: RatioFigures::of(&pairs),
                });
            }
        }
    }
    out
}

fn latency(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn med(s: Option<Spread>, f: impl Fn(f64) -> String) -> String {
    s.map_or_else(|| "–".into(), |s| f(s.median))
}

fn ratio_cell(s: Option<Spread>) -> String {
    s.map_or_else(
        || "–".into(),
        |s| {
            if s.n > 1 {
                format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
            } else {
                format!("{:.2}", s.median)
            }
        },
    )
}

impl Results {
    pub(crate) fn new(
        machine: Machine,
        settings: Settings,
        cells: Vec<CellResult>,
        memory: Vec<MemoryRow>,
    ) -> Self {
        Self {
            summary: summarise(&cells),
            ratios: ratios(&cells),
            above_floor: above_floors(&cells),
            machine,
            settings,
            memory,
            cells,
        }
    }

    /// The report, in markdown, ready for BENCHMARKS.md.
    pub(crate) fn markdown(&self) -> String {
        let m = &self.machine;
        let s = &self.settings;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# keymesh benchmark: keymesh authn vs Envoy jwt_authn\n"
        );
        let _ = writeln!(md, "- command: `{}`", s.command);
        let _ = writeln!(md, "- date: {} · keymesh commit {}", m.date, m.git_commit);
        let _ = writeln!(
            md,
            "- machine: {} CPUs (`nproc`), {}, {} · load average (1/5/15 min) {} at start, {} at end",
            m.nproc, m.cpu_model, m.kernel, m.loadavg_start, s.loadavg_end
        );
        let _ = writeln!(
            md,
            "- versions: Envoy {} · {} · {}",
            m.envoy_version, m.rustc_version, m.wrk_version
        );
        let _ = writeln!(
            md,
            "- setup: one Envoy per variant (same binary, `--concurrency {}`{}), one shared upstream Envoy \
             (`direct_response` 200), loopback; {} s warm-up per Envoy; wrk {} thread(s), {} connections, {} s \
             measured after {} s warm-up per cell; {} interleaved repetition(s); pools of {} tokens per algorithm; \
             `jwt_cache_size` {}",
            s.concurrency,
            if s.pinned { ", pinned apart from wrk and the upstream" } else { "" },
            s.warmup_secs,
            s.wrk.threads,
            s.wrk.connections,
            s.duration_secs,
            s.cell_warmup_secs,
            s.reps,
            s.pool,
            s.jwt_cache_size
        );
        let _ = writeln!(
            md,
            "- module: `keymesh_authn.wasm` {:.1} KiB ({} bytes)\n",
            s.module_bytes as f64 / 1024.0,
            s.module_bytes
        );

        let _ = writeln!(
            md,
            "## Throughput, latency, CPU (median of {} repetitions)\n",
            s.reps
        );
        let cases: Vec<String> = TokenCase::ALL
            .iter()
            .map(|c| format!("`{}` = {}", c.name(), c.describe()))
            .collect();
        let _ = writeln!(
            md,
            "Tokens: {} (every answer 401). CPU is Envoy's user+system time over the measured run \
            divided by the requests completed; RSS is Envoy's VmRSS at the end of the run.\n",
            cases.join("; ")
        );
        let _ = writeln!(md, "| alg | tokens | variant | req/s | req/s min–max | p50 | p99 | Envoy CPU/req | Envoy RSS |");
        let _ = writeln!(md, "|---|---|---|---:|---:|---:|---:|---:|---:|");
        for r in &self.summary {
            let (variant, alg, case, r) = (r.variant, &r.alg, r.case, &r.figures);
            let range = r
                .rps
                .map_or_else(|| "–".into(), |s| format!("{:.0}–{:.0}", s.min, s.max));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                alg,
                case.name(),
                variant,
                med(r.rps, |v| format!("{v:.0}")),
                range,
                med(r.p50_us, latency),
                med(r.p99_us, latency),
                med(r.cpu_us_per_req, |v| format!("{v:.1} µs")),
                med(r.rss_end_kib, mib),
            );
        }

        if !self.ratios.is_empty() {
            let _ = writeln!(
                md,
                "\n## keymesh / native (and / `keymesh_base`, its previous build), pair by pair\n"
            );
            let _ = writeln!(md, "Each ratio is taken between the keymesh and native cells of the same repetition (run back to \
                back), then summarised as median (min–max) over repetitions. req/s above 1: keymesh serves more; \
                latency and CPU/req below 1: keymesh is faster / cheaper.\n");
            let _ = writeln!(md, "| alg | tokens | vs | req/s | p50 | p99 | CPU/req |");
            let _ = writeln!(md, "|---|---|---|---:|---:|---:|---:|");
            for r in &self.ratios {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    r.alg,
                    r.case.name(),
                    r.native,
                    ratio_cell(r.figures.rps),
                    ratio_cell(r.figures.p50),
                    ratio_cell(r.figures.p99),
                    ratio_cell(r.figures.cpu_per_req)
                );
            }
        }

        if !self.above_floor.is_empty() {
            let _ = writeln!(md, "\n## keymesh above the floor, pair by pair\n");
            let _ = writeln!(md, "`empty_min` is the leanest do-nothing wasm module (the price of any wasm filter on this \
                Envoy), `empty_sdk` a do-nothing filter built with the proxy-wasm Rust SDK, `none` no filter. Each \
                figure is keymesh's cell minus (CPU) or over (req/s) the floor's `cached` cell of the same algorithm \
                and repetition, as median (min–max) over repetitions.\n");
            let _ = writeln!(
                md,
                "| alg | tokens | floor | keymesh CPU/req above it | keymesh req/s ÷ its req/s |"
            );
            let _ = writeln!(md, "|---|---|---|---:|---:|");
            for a in &self.above_floor {
                let cpu = a.cpu_us_per_req.map_or_else(
                    || "–".into(),
                    |s| {
                        if s.n > 1 {
                            format!("{:.1} µs ({:.1}–{:.1})", s.median, s.min, s.max)
                        } else {
                            format!("{:.1} µs", s.median)
                        }
                    },
                );
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    a.alg,
                    a.case.name(),
                    a.floor,
                    cpu,
                    ratio_cell(a.rps_ratio)
                );
            }
        }

        let checks = checks(&self.cells);
        if !checks.is_empty() {
            let _ = writeln!(
                md,
                "\n## Checks (the filters' own counters over the measured runs)\n"
            );
            for line in checks {
                let _ = writeln!(md, "- {line}");
            }
        }

        if !self.memory.is_empty() {
            let _ = writeln!(md, "\n## Memory\n");
            let _ = writeln!(md, "Envoy RSS (VmRSS) after a warm-up under load, keymesh vs no filter, by `--concurrency`. \
                Each worker runs its own keymesh VM.\n");
            let _ = writeln!(
                md,
                "| --concurrency | no filter | keymesh | keymesh − no filter |"
            );
            let _ = writeln!(md, "|---:|---:|---:|---:|");
            for row in &self.memory {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    row.concurrency,
                    mib(row.rss_none_kib as f64),
                    mib(row.rss_keymesh_kib as f64),
                    mib(row.keymesh_extra_kib() as f64)
                );
            }
            if let Some(per_worker) = per_worker_kib(&self.memory) {
                let _ = writeln!(
                    md,
                    "\nPer additional worker VM: {} (least-squares slope of the last column over \
                    `--concurrency`; single RSS readings move by a few MiB).",
                    mib(per_worker)
                );
            }
        }
        md
    }
}

fn counter(cells: &[&CellResult], name: &str) -> u64 {
    cells
        .iter()
        .map(|c| c.measured.counters.get(name).copied().unwrap_or(0))
        .sum()
}

fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// What the filters' own counters say about the measured runs: the cache hit rate of `jwt_authn_cache` by token
/// case (the cached case should hit, the pool cases should not), and that keymesh refused the invalid tokens for
/// their signature and never lost its bundle source.
pub(crate) fn checks(cells: &[CellResult]) -> Vec<String> {
    let select = |variant: Variant, case: Option<TokenCase>| -> Vec<&CellResult> {
        cells
            .iter()
            .filter(|c| c.variant == variant && case.is_none_or(|k| c.case == k))
            .collect()
    };
    let mut out = Vec::new();
    let rates: Vec<String> = TokenCase::ALL
        .iter()
        .filter_map(|&case| {
            let mine = select(Variant::JwtAuthnCache, Some(case));
            let hits = counter(&mine, "jwt_authn.jwt_cache_hit");
            let misses = counter(&mine, "jwt_authn.jwt_cache_miss");
            (!mine.is_empty()).then(|| format!("{} {}", case.name(), share(hits, hits + misses)))
        })
        .collect();
    if !rates.is_empty() {
        out.push(format!("jwt_authn_cache hit rate: {}", rates.join(", ")));
    }
    // Shares of the filters' decisions (not of wrk's completed requests: the counters also see the requests in
    // flight when wrk stops).
    let native_invalid: Vec<&CellResult> = cells
        .iter()
        .filter(|c| Variant::NATIVE.contains(&c.variant) && c.case == TokenCase::Invalid)
        .collect();
    if !native_invalid.is_empty() {
        let denied = counter(&native_invalid, "jwt_authn.denied");
        let decisions = denied + counter(&native_invalid, "jwt_authn.allowed");
        out.push(format!(
            "jwt_authn decisions in `invalid` runs that were refusals: {}",
            share(denied, decisions)
        ));
    }
    let keymesh = select(Variant::Keymesh, None);
    if !keymesh.is_empty() {
        let invalid = select(Variant::Keymesh, Some(TokenCase::Invalid));
        let decisions: u64 = invalid
            .iter()
            .flat_map(|c| c.measured.counters.iter())
            .filter(|(name, _)| {
                name.as_str() == "keymesh.allowed" || name.starts_with("keymesh.denied.")
            })
            .map(|(_, v)| v)
            .sum();
        out.push(format!(
            "keymesh decisions in `invalid` runs that were `bad_signature` refusals: {}; bundle fetch failures {}, \
             bundles rejected {} during the measured runs",
            share(counter(&invalid, "keymesh.denied.bad_signature"), decisions),
            counter(&keymesh, "keymesh.bundle_fetch_failures"),
            counter(&keymesh, "keymesh.bundle_rejected")
        ));
    }
    out
}

/// The extra RSS one more worker's VM costs: the least-squares slope of (keymesh − none) over `--concurrency`
/// (single RSS readings move by a few MiB with V8's garbage collection, so more than two points help).
pub(crate) fn per_worker_kib(rows: &[MemoryRow]) -> Option<f64> {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (f64::from(r.concurrency), r.keymesh_extra_kib() as f64))
        .collect();
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests;
