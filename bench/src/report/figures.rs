//! What one cell measured, the spreads of a group of cells, and keymesh/native ratios of paired cells: the same
//! for the token and the API-key matrix.

use crate::stats::{pairwise_ratio, spread, Spread};
use crate::wrk::WrkReport;
use serde::Serialize;
use std::collections::BTreeMap;

/// What one measured cell (of either matrix) saw.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measured {
    /// Envoy user+system CPU time during the measured run, per completed request.
    pub(crate) cpu_us_per_req: f64,
    /// Envoy CPU seconds per second of the run (1.0 = one core busy).
    pub(crate) envoy_cpu_share: f64,
    pub(crate) rss_warm_kib: u64,
    pub(crate) rss_end_kib: u64,
    /// The filter's counters that moved during the measured run (`keymesh.*`, `jwt_authn.*`, `api_key_auth.*`).
    pub(crate) counters: BTreeMap<String, u64>,
    pub(crate) wrk: WrkReport,
}

/// The repetitions of one group of cells, each figure as median (min–max).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figures {
    pub(crate) rps: Option<Spread>,
    pub(crate) p50_us: Option<Spread>,
    pub(crate) p99_us: Option<Spread>,
    pub(crate) cpu_us_per_req: Option<Spread>,
    pub(crate) rss_end_kib: Option<Spread>,
}

impl Figures {
    pub(crate) fn of(cells: &[&Measured]) -> Self {
        let metric =
            |f: fn(&Measured) -> f64| spread(&cells.iter().map(|c| f(c)).collect::<Vec<_>>());
        Self {
            rps: metric(|c| c.wrk.rps),
            p50_us: metric(|c| c.wrk.p50_us),
            p99_us: metric(|c| c.wrk.p99_us),
            cpu_us_per_req: metric(|c| c.cpu_us_per_req),
            rss_end_kib: metric(|c| c.rss_end_kib as f64),
        }
    }
}

/// keymesh / native over (keymesh, native) cell pairs, each ratio taken within one pair (one repetition).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RatioFigures {
    /// > 1: keymesh serves more.
    pub(crate) rps: Option<Spread>,
    /// < 1: keymesh answers faster.
    pub(crate) p50: Option<Spread>,
    pub(crate) p99: Option<Spread>,
    /// < 1: keymesh costs less CPU per request.
    pub(crate) cpu_per_req: Option<Spread>,
}

impl RatioFigures {
    pub(crate) fn of(pairs: &[(&Measured, &Measured)]) -> Self {
        let ratio = |f: fn(&Measured) -> f64| {
            pairwise_ratio(&pairs.iter().map(|(k, n)| (f(k), f(n))).collect::<Vec<_>>())
        };
        Self {
            rps: ratio(|c| c.wrk.rps),
            p50: ratio(|c| c.wrk.p50_us),
            p99: ratio(|c| c.wrk.p99_us),
            cpu_per_req: ratio(|c| c.cpu_us_per_req),
        }
    }
}
