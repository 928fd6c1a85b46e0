//! Measuring one cell, the same way for both matrices: wrk on a pool of the prepared data, Envoy's CPU time and
//! RSS around the run, the filters' own counters, and a check that every answer was the expected one.

use crate::http;
use crate::launch::Launcher;
use crate::process::{cpu_ticks, rss_kib, Process, Supervised};
use crate::report::Measured;
use crate::wrk::{self, WrkSettings, WrkTarget};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// What measuring one cell takes, for either matrix: wrk on a pool of the prepared data, Envoy's CPU time and
/// RSS around the run, the filters' counters, and a check that every answer was the expected one.
pub(crate) struct Meter<'a> {
    pub(crate) launcher: &'a Launcher,
    /// The prepared data directory (pool files are relative to it).
    pub(crate) data: &'a Path,
    /// The wrk script.
    pub(crate) script: &'a Path,
    pub(crate) wrk: &'a WrkSettings,
    pub(crate) ticks_per_sec: u64,
    /// Measured time per cell.
    pub(crate) duration: Duration,
    /// Load before each measured cell, with that cell's pool.
    pub(crate) cell_warmup: Duration,
}

/// One cell as the [`Meter`] sees it.
pub(crate) struct CellSpec {
    /// `VARIANT under WORKLOAD`, for errors.
    pub(crate) label: String,
    /// The pool wrk cycles through, relative to the data directory.
    pub(crate) pool_file: String,
    /// The stats prefix of the native filter whose counters are read (`jwt_authn`, `api_key_auth`).
    pub(crate) native: &'static str,
    /// The status every answer must have.
    pub(crate) expected: u16,
    /// The wrk log of the cell warm-up, and of the measured run.
    pub(crate) warmup_log: &'static str,
    pub(crate) log: String,
}

impl Meter<'_> {
    /// Runs wrk for `duration` against `port` with the pool `pool_file`; its output goes to `<work>/<log>.log`.
    pub(crate) fn wrk(
        &self,
        duration: Duration,
        pool_file: &str,
        port: u16,
        log: &str,
    ) -> Result<wrk::WrkReport> {
        let pool = self.data.join(pool_file);
        let target = WrkTarget {
            script: self.script,
            pool: &pool,
            port,
        };
        let (report, _) = wrk::run(
            self.wrk,
            duration,
            target,
            &self.launcher.work,
            log,
            &self.launcher.pids,
        )?;
        Ok(report)
    }

    /// Warm-up, then the measured run with Envoy's CPU time and RSS sampled around it; fails if any answer was
    /// not `spec.expected`.
    pub(crate) fn measure(
        &self,
        envoy: &mut Process,
        listen: u16,
        admin: u16,
        spec: &CellSpec,
    ) -> Result<Measured> {
        if !self.cell_warmup.is_zero() {
            self.wrk(self.cell_warmup, &spec.pool_file, listen, spec.warmup_log)?;
        }
        envoy.ensure_running()?;
        let pid = envoy.pid();
        let counters_before = filter_counters(admin, spec.native)?;
        let rss_warm_kib = rss_kib(pid)?;
        let cpu_before = cpu_ticks(pid)?;
        let report = self.wrk(self.duration, &spec.pool_file, listen, &spec.log)?;
        let cpu_after = cpu_ticks(pid)?;
        let rss_end_kib = rss_kib(pid)?;
        let counters = counter_deltas(&counters_before, &filter_counters(admin, spec.native)?);
        let expected = spec.expected;
        let refused = report.non_2xx;
        let wrong = if expected == 200 {
            refused
        } else {
            report.requests - refused.min(report.requests)
        };
        if wrong > 0 || report.requests == 0 {
            bail!(
                "{}: {wrong} of {} responses were not {expected} (see {}/{}.log and {})",
                spec.label,
                report.requests,
                self.launcher.work.display(),
                spec.log,
                envoy.log_path().display()
            );
        }
        let cpu_secs = (cpu_after - cpu_before) as f64 / self.ticks_per_sec as f64;
        Ok(Measured {
            cpu_us_per_req: cpu_secs * 1e6 / report.requests as f64,
            envoy_cpu_share: cpu_secs / report.duration_secs,
            rss_warm_kib,
            rss_end_kib,
            counters,
            wrk: report,
        })
    }
}

/// The filters' own counters, named without their prefixes (`keymesh.denied.bad_signature`,
/// `jwt_authn.jwt_cache_hit`): keymesh's and those of the native filter whose stats prefix is `native`.
pub(crate) fn filter_counters(admin: u16, native: &str) -> Result<BTreeMap<String, u64>> {
    let stats = http::stats(
        admin,
        &format!(r"^(wasmcustom\.keymesh\.authn|http\.bench\.{native})\."),
    )?;
    let native_prefix = format!("http.bench.{native}.");
    Ok(stats
        .into_iter()
        .filter_map(|(name, v)| {
            let short = name
                .strip_prefix("wasmcustom.keymesh.authn.")
                .map(|n| format!("keymesh.{n}"))
                .or_else(|| {
                    name.strip_prefix(&native_prefix)
                        .map(|n| format!("{native}.{n}"))
                })?;
            Some((short, v))
        })
        .collect())
}

/// What changed between two readings of [`filter_counters`] (gauges such as `keymesh.bundle_version` drop out).
pub(crate) fn counter_deltas(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, &v)| {
            let d = v.saturating_sub(before.get(name).copied().unwrap_or(0));
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}
