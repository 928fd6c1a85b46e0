//! The API-key report: delivery time and memory of each variant, then the throughput matrix, its summaries and
//! the keymesh / `api_key_auth` ratios, as JSON and markdown.

use super::{Figures, Measured, RatioFigures};
use crate::machine::Machine;
use crate::matrix::{KeyCase, KeyVariant};
use crate::prepare::KeyManifest;
use crate::stats::Spread;
use crate::wrk::WrkSettings;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Delivery time and memory of one variant at `--memory-concurrency`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StartRow {
    pub(crate) variant: KeyVariant,
    pub(crate) concurrency: u32,
    /// From spawning Envoy until a request with the last key of the set was accepted (`none`: any request;
    /// `keymesh_0`: an unknown key refused with 401, i.e. its empty bundle applied).
    pub(crate) deliver_ms: f64,
    /// From spawning Envoy until its admin `/ready` answered 200 (polled every 10 ms, in parallel with the above).
    pub(crate) ready_ms: Option<f64>,
    /// RSS right after delivery.
    pub(crate) rss_delivered_kib: u64,
    /// RSS after the warm-up under load.
    pub(crate) rss_warm_kib: u64,
    /// Envoy CPU time spent until delivery, ms.
    pub(crate) cpu_to_deliver_ms: f64,
    /// What the delivery poll saw, each time the answer changed: (ms since spawn, status; 0 = no connection).
    pub(crate) poll_transitions: Vec<(f64, u16)>,
}

/// One measured cell of the API-key matrix.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyCellResult {
    pub(crate) rep: usize,
    pub(crate) variant: KeyVariant,
    pub(crate) case: KeyCase,
    #[serde(flatten)]
    pub(crate) measured: Measured,
}

/// The repetitions of one (variant, case).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeySummary {
    pub(crate) variant: KeyVariant,
    pub(crate) case: KeyCase,
    #[serde(flatten)]
    pub(crate) figures: Figures,
}

/// keymesh / api_key_auth, pair by pair (same repetition, same case).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyRatio {
    pub(crate) case: KeyCase,
    #[serde(flatten)]
    pub(crate) figures: RatioFigures,
}

/// Everything `run-api-keys` produced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyResults {
    pub(crate) machine: Machine,
    pub(crate) command: String,
    pub(crate) manifest: KeyManifest,
    pub(crate) duration_secs: u64,
    pub(crate) warmup_secs: u64,
    pub(crate) cell_warmup_secs: u64,
    pub(crate) reps: usize,
    pub(crate) concurrency: u32,
    pub(crate) wrk: WrkSettings,
    pub(crate) module_bytes: u64,
    pub(crate) loadavg_end: String,
    pub(crate) starts: Vec<StartRow>,
    pub(crate) summary: Vec<KeySummary>,
    pub(crate) ratios: Vec<KeyRatio>,
    pub(crate) cells: Vec<KeyCellResult>,
}

/// Summaries per (case, variant).
pub(crate) fn summarise(cells: &[KeyCellResult]) -> Vec<KeySummary> {
    let mut out = Vec::new();
    for case in KeyCase::ALL {
        for variant in KeyVariant::THROUGHPUT {
            let mine: Vec<&KeyCellResult> = cells
                .iter()
                .filter(|c| c.variant == variant && c.case == case)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let measured: Vec<&Measured> = mine.iter().map(|c| &c.measured).collect();
            out.push(KeySummary {
                variant,
                case,
                figures: Figures::of(&measured),
            });
        }
    }
    out
}

/// keymesh / api_key_auth, paired by repetition.
pub(crate) fn ratios(cells: &[KeyCellResult]) -> Vec<KeyRatio> {
    let mut out = Vec::new();
    for case in KeyCase::ALL {
        let pairs: Vec<(&Measured, &Measured)> = cells
            .iter()
            .filter(|c| c.variant == KeyVariant::Keymesh && c.case == case)
            .filter_map(|k| {
                cells
                    .iter()
                    .find(|n| {
                        n.variant == KeyVariant::ApiKeyAuth && n.case == case && n.rep == k.rep
                    })
                    .map(|n| (&k.measured, &n.measured))
            })
            .collect();
        if pairs.is_empty() {
            continue;
        }
        out.push(KeyRatio {
            case,
            figures: RatioFigures::of(&pairs),
        });
    }
    out
}

fn fmt_spread(s: Option<Spread>, digits: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 => format!("{:.*}", digits, s.median),
        Some(s) => format!(
            "{:.*} ({:.*}–{:.*})",
            digits, s.median, digits, s.min, digits, s.max
        ),
    }
}

fn mib(kib: i64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

impl KeyResults {
    fn start(&self, v: KeyVariant) -> Option<&StartRow> {
        self.starts.iter().find(|s| s.variant == v)
    }

    pub(crate) fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# keymesh API keys vs Envoy `api_key_auth`\n");
        let _ = writeln!(md, "`{}`\n", self.command);
        let _ = writeln!(
            md,
            "{} on {} CPUs ({}), {}, {}, {}; commit {}; load {} → {}.\n",
            m.date,
            m.nproc,
            m.cpu_model,
            m.envoy_version,
            m.wrk_version,
            m.kernel,
            m.git_commit,
            m.loadavg_start,
            self.loadavg_end
        );
        let _ = writeln!(
            md,
            "{} keys (seed {}): keymesh full bundle {:.1} MB (served by the static bundle server), native `credentials` {:.1} MB inline in the bootstrap. wrk pools: {} distinct valid keys, {} unknown keys, `x-api-key`. Module {} bytes.\n",
            self.manifest.keys,
            self.manifest.seed,
            self.manifest.bundle_bytes as f64 / 1e6,
            self.manifest.native_config_bytes as f64 / 1e6,
            self.manifest.pool,
            self.manifest.pool,
            self.module_bytes
        );

        let _ = writeln!(
            md,
            "## Delivery and memory (`--concurrency {}`)\n",
            self.starts.first().map_or(0, |s| s.concurrency)
        );
        let _ = writeln!(md, "| variant | Envoy start → last key accepted | /ready after | Envoy CPU until then | RSS after delivery | RSS warm | warm RSS − `none` | warm RSS − `keymesh_0` |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        let none = self.start(KeyVariant::None).map(|s| s.rss_warm_kib as i64);
        let km0 = self
            .start(KeyVariant::KeymeshEmpty)
            .map(|s| s.rss_warm_kib as i64);
        for s in &self.starts {
            let w = s.rss_warm_kib as i64;
            let minus_none = none.map_or("–".into(), |n| format!("{} MiB", mib(w - n)));
            let minus_km0 = match (s.variant, km0) {
                (KeyVariant::Keymesh, Some(k)) => format!("{} MiB", mib(w - k)),
                _ => "–".into(),
            };
            let _ = writeln!(
                md,
                "| `{}` | {:.0} ms | {} | {:.0} ms | {} MiB | {} MiB | {} | {} |",
                s.variant.name(),
                s.deliver_ms,
                s.ready_ms.map_or("–".into(), |r| format!("{r:.0} ms")),
                s.cpu_to_deliver_ms,
                mib(s.rss_delivered_kib as i64),
                mib(w),
                minus_none,
                minus_km0
            );
        }
        let _ = writeln!(
            md,
            "\nWhat the delivery poll saw (ms since spawn → status; 0 = connection refused):\n"
        );
        for st in &self.starts {
            let seen: Vec<String> = st
                .poll_transitions
                .iter()
                .map(|(t, s)| format!("{t:.0} ms → {s}"))
                .collect();
            let _ = writeln!(md, "- `{}`: {}", st.variant.name(), seen.join(", "));
        }
        let _ = writeln!(md, "\n`none`: first request answered; `keymesh_0`: keymesh with an empty bundle (its \"last key\" is refused once the bundle is applied). One start per variant, one at a time, RSS after a {} s warm-up on the valid pool.\n", self.warmup_secs);

        let _ = writeln!(
            md,
            "## Throughput (`--concurrency {}`, wrk -t{} -c{}, {} s cells, {} reps, median (min–max))\n",
            self.concurrency, self.wrk.threads, self.wrk.connections, self.duration_secs, self.reps
        );
        let _ = writeln!(
            md,
            "| case | variant | req/s | p50 µs | p99 µs | Envoy CPU µs/req | RSS MiB |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for row in &self.summary {
            let s = &row.figures;
            let _ = writeln!(
                md,
                "| {} | `{}` | {} | {} | {} | {} | {} |",
                row.case.name(),
                row.variant.name(),
                fmt_spread(s.rps, 0),
                fmt_spread(s.p50_us, 0),
                fmt_spread(s.p99_us, 0),
                fmt_spread(s.cpu_us_per_req, 1),
                fmt_spread(
                    s.rss_end_kib.map(|r| Spread {
                        median: r.median / 1024.0,
                        min: r.min / 1024.0,
                        max: r.max / 1024.0,
                        n: r.n
                    }),
                    1
                ),
            );
        }
        let _ = writeln!(
            md,
            "\n## keymesh / api_key_auth (pair by pair, same repetition)\n"
        );
        let _ = writeln!(md, "| case | req/s | p50 | p99 | CPU/req |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for r in &self.ratios {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.case.name(),
                fmt_spread(r.figures.rps, 2),
                fmt_spread(r.figures.p50, 2),
                fmt_spread(r.figures.p99, 2),
                fmt_spread(r.figures.cpu_per_req, 2)
            );
        }
        let mut checks = BTreeMap::<String, u64>::new();
        for c in &self.cells {
            for (k, v) in &c.measured.counters {
                *checks
                    .entry(format!("{} {}: {k}", c.variant.name(), c.case.name()))
                    .or_default() += v;
            }
        }
        if !checks.is_empty() {
            let _ = writeln!(md, "\n## Filter counters over the measured cells\n");
            for (k, v) in checks {
                let _ = writeln!(md, "- {k} = {v}");
            }
        }
        md
    }
}
