//! `run`: one Envoy per variant on the same binary and the same upstream, correctness checked before anything
//! is measured, then every cell of the interleaved schedule measured with wrk, then per-worker VM memory.
//!
//! A cell is measured the same way for both matrices ([`Meter`]); the API-key run (`run-api-keys`) adds its
//! delivery-time phase in [`api_keys`].

pub(crate) mod api_keys;

use crate::envoy::{self, ProxyInputs, UpstreamPorts};
use crate::http;
use crate::launch::{proxy_ports, Launcher, RunningEnvoy};
use crate::machine::{self, Machine};
use crate::matrix::{schedule, Cell, TokenCase, Variant, Workload};
use crate::prepare::{first_token, load_manifest, Manifest};
use crate::process::{
    clock_ticks_per_sec, cpu_ticks, free_port, rss_kib, PidFile, Process, Supervised,
};
use crate::report::{CellResult, Measured, MemoryRow, Results, Settings};
use crate::wrk::{self, WrkSettings, WrkTarget};
use anyhow::{bail, Context, Result};
use keymesh_testkit::Alg;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything `run` is told.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    pub(crate) data: PathBuf,
    pub(crate) envoy: PathBuf,
    pub(crate) wasm: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) repo: PathBuf,
    pub(crate) duration: Duration,
    /// Load on each freshly started proxy before anything is measured, spread over the algorithms.
    pub(crate) warmup: Duration,
    /// Load before each measured cell, with that cell's tokens.
    pub(crate) cell_warmup: Duration,
    pub(crate) reps: usize,
    pub(crate) concurrency: u32,
    pub(crate) variants: Vec<Variant>,
    pub(crate) algs: Vec<Alg>,
    pub(crate) cases: Vec<TokenCase>,
    pub(crate) wrk: WrkSettings,
    pub(crate) jwt_cache_size: u32,
    /// `--concurrency` values of the VM memory measurement; empty skips it.
    pub(crate) memory_concurrency: Vec<u32>,
    pub(crate) pin: bool,
    pub(crate) command: String,
}

/// CPU lists for `taskset`: the proxies on the first `concurrency` CPUs, wrk and the upstream on the rest.
#[derive(Debug, Clone, Default)]
struct Pinning {
    proxy: Option<String>,
    load: Option<String>,
}

fn pinning(pin: bool, concurrency: u32, nproc: usize) -> Pinning {
    let c = usize::try_from(concurrency).unwrap_or(usize::MAX);
    if !pin {
        return Pinning::default();
    }
    if c >= nproc {
        eprintln!(
            "[run] --pin ignored: --concurrency {concurrency} leaves no CPU of {nproc} for wrk"
        );
        return Pinning::default();
    }
    Pinning {
        proxy: Some(format!("0-{}", c - 1)),
        load: Some(format!("{c}-{}", nproc - 1)),
    }
}

/// What every step of the run shares.
struct Ctx {
    opts: RunOptions,
    launcher: Launcher,
    manifest: Manifest,
    jwks: String,
    script: PathBuf,
    upstream: UpstreamPorts,
    ticks_per_sec: u64,
    pinning: Pinning,
}

impl Ctx {
    fn inputs(&self) -> ProxyInputs<'_> {
        ProxyInputs {
            jwks: &self.jwks,
            wasm: &self.opts.wasm,
            jwt_cache_size: self.opts.jwt_cache_size,
            upstream: self.upstream,
        }
    }

    fn workloads(&self) -> Vec<Workload> {
        self.opts
            .algs
            .iter()
            .flat_map(|&alg| {
                self.opts
                    .cases
                    .iter()
                    .map(move |&case| Workload { alg, case })
            })
            .collect()
    }

    fn token(&self, alg: Alg, case: TokenCase) -> Result<String> {
        first_token(&self.opts.data, Workload { alg, case })
    }

    /// Renders, writes and validates the bootstrap of `variant` on fresh ports.
    fn proxy_config(&self, variant: Variant, tag: &str) -> Result<(PathBuf, envoy::ProxyPorts)> {
        let ports = proxy_ports()?;
        let bootstrap = envoy::proxy_bootstrap(variant, ports, &self.inputs());
        let path = self
            .launcher
            .write(&format!("envoy-{variant}{tag}"), &bootstrap)?;
        self.launcher.validate(&path)?;
        Ok((path, ports))
    }

    fn start_proxy(&self, variant: Variant, concurrency: u32, tag: &str) -> Result<Proxy> {
        let (config, ports) = self.proxy_config(variant, tag)?;
        let envoy = self.launcher.start(
            &format!("envoy-{variant}{tag}"),
            &config,
            ports.admin,
            concurrency,
            self.pinning.proxy.as_deref(),
        )?;
        let proxy = Proxy {
            variant,
            envoy,
            listen: ports.listen,
            admin: ports.admin,
        };
        self.check(&proxy)?;
        Ok(proxy)
    }

    /// A benchmark of a misconfigured filter is worthless: a valid token must pass, an invalid one must not.
    fn check(&self, proxy: &Proxy) -> Result<()> {
        let port = proxy.listen;
        let name = proxy.variant.name();
        let first_alg = self.opts.algs.first().copied().unwrap_or(Alg::EdDsa);
        // keymesh answers 503 until its first bundle arrives.
        let valid = self.token(first_alg, TokenCase::Cached)?;
        http::wait_for_status(
            &format!("{name} to accept a valid token"),
            port,
            "/",
            Some(&valid),
            200,
            Duration::from_secs(20),
        )?;
        let mut checks: Vec<(String, Option<String>, u16)> = Vec::new();
        for &alg in &self.opts.algs {
            checks.push((
                format!("{} one-token", alg.name()),
                Some(self.token(alg, TokenCase::Cached)?),
                200,
            ));
            if proxy.variant.authenticates() {
                checks.push((
                    format!("{} pool", alg.name()),
                    Some(self.token(alg, TokenCase::Fresh)?),
                    200,
                ));
                checks.push((
                    format!("{} invalid-signature", alg.name()),
                    Some(self.token(alg, TokenCase::Invalid)?),
                    401,
                ));
            }
        }
        if proxy.variant.authenticates() {
            checks.push(("no token".into(), None, 401));
        }
        for (what, token, expected) in checks {
            let (status, head) = http::get(port, "/", token.as_deref())?;
            if status != expected {
                bail!(
                    "{name}: a {what} request got {status}, expected {expected}:\n{head}\nend of {}:\n{}",
                    proxy.envoy.process.log_path().display(),
                    proxy.envoy.process.log_tail(30)
                );
            }
        }
        if proxy.variant.authenticates() {
            eprintln!("[run] {name}: valid tokens 200, invalid signature 401, no token 401: ok");
        } else {
            eprintln!("[run] {name}: valid tokens 200: ok");
        }
        Ok(())
    }

    fn meter(&self) -> Meter<'_> {
        Meter {
            launcher: &self.launcher,
            data: &self.opts.data,
            script: &self.script,
            wrk: &self.opts.wrk,
            ticks_per_sec: self.ticks_per_sec,
            duration: self.opts.duration,
            cell_warmup: self.opts.cell_warmup,
        }
    }

    fn wrk(
        &self,
        duration: Duration,
        workload: Workload,
        port: u16,
        log: &str,
    ) -> Result<wrk::WrkReport> {
        self.meter().wrk(duration, &workload.pool_file(), port, log)
    }

    /// Warm-up, then the measured run with Envoy's CPU time and RSS sampled around it.
    fn measure(&self, proxy: &mut Proxy, cell: Cell) -> Result<CellResult> {
        let w = cell.workload;
        let spec = CellSpec {
            label: format!("{} under {}", cell.variant, w.label()),
            pool_file: w.pool_file(),
            native: "jwt_authn",
            expected: if cell.variant.authenticates() {
                w.case.expected_status()
            } else {
                200
            },
            warmup_log: "wrk-warmup",
            log: format!(
                "wrk-r{}-{}-{}-{}",
                cell.rep,
                cell.variant,
                crate::matrix::alg_slug(w.alg),
                w.case.name()
            ),
        };
        let measured =
            self.meter()
                .measure(&mut proxy.envoy.process, proxy.listen, proxy.admin, &spec)?;
        Ok(CellResult {
            rep: cell.rep,
            variant: cell.variant,
            alg: w.alg.name().to_owned(),
            case: w.case,
            measured,
        })
    }

    /// Brings a freshly started proxy to steady state (V8 tiers the module up, connections to the upstream
    /// open): every algorithm's pool in turn, sharing `--warmup` seconds (at least 1 s each).
    fn warm_up(&self, proxy: &Proxy, total: Duration) -> Result<()> {
        if total.is_zero() {
            return Ok(());
        }
        let n = u32::try_from(self.opts.algs.len()).unwrap_or(1).max(1);
        let each = (total / n).max(Duration::from_secs(1));
        for &alg in &self.opts.algs {
            let case = if proxy.variant.authenticates() {
                TokenCase::Fresh
            } else {
                TokenCase::Cached
            };
            self.wrk(
                each,
                Workload { alg, case },
                proxy.listen,
                &format!("wrk-warmup-{}", proxy.variant),
            )?;
        }
        Ok(())
    }

    /// Envoy RSS with keymesh and with no filter at `concurrency` workers, after a warm-up under load.
    fn memory(&self, concurrency: u32) -> Result<MemoryRow> {
        let mut rss = BTreeMap::new();
        for variant in [Variant::None, Variant::Keymesh] {
            let proxy = self.start_proxy(variant, concurrency, &format!("-mem-c{concurrency}"))?;
            // Every algorithm's code path runs before RSS is read (RSA allocates most).
            let algs = u32::try_from(self.opts.algs.len()).unwrap_or(1);
            self.warm_up(
                &proxy,
                self.opts.warmup.max(Duration::from_secs(algs.into())),
            )?;
            rss.insert(variant, rss_kib(proxy.envoy.pid())?);
        }
        let none = rss.get(&Variant::None).copied().unwrap_or(0);
        let keymesh = rss.get(&Variant::Keymesh).copied().unwrap_or(0);
        eprintln!(
            "[run] memory at --concurrency {concurrency}: none {none} KiB, keymesh {keymesh} KiB"
        );
        Ok(MemoryRow {
            concurrency,
            rss_none_kib: none,
            rss_keymesh_kib: keymesh,
        })
    }
}

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

struct Proxy {
    variant: Variant,
    envoy: RunningEnvoy,
    listen: u16,
    admin: u16,
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
fn counter_deltas(
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

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs the whole benchmark and returns its results (the caller writes the report).
pub(crate) fn run(mut opts: RunOptions) -> Result<Results> {
    let manifest = load_manifest(&opts.data)?;
    if opts.cases.contains(&TokenCase::Fresh) && manifest.pool <= opts.jwt_cache_size as usize {
        eprintln!(
            "[run] warning: the pool ({}) fits in jwt_cache_size ({}): the `fresh` case would be cached by jwt_authn_cache",
            manifest.pool, opts.jwt_cache_size
        );
    }
    if !opts.wasm.exists() {
        bail!(
            "no module at {}: cargo build --release --target wasm32-wasip1 -p keymesh-authn",
            opts.wasm.display()
        );
    }
    let machine = Machine::gather(&opts.envoy, &opts.repo);
    std::fs::create_dir_all(&opts.work)
        .with_context(|| format!("cannot create {}", opts.work.display()))?;
    let launcher = Launcher {
        envoy: opts.envoy.clone(),
        work: opts.work.clone(),
        pids: PidFile::new(opts.work.join("pids")),
    };
    let upstream = UpstreamPorts {
        app: free_port()?,
        bundle: free_port()?,
        admin: free_port()?,
    };
    let pinning = pinning(opts.pin, opts.concurrency, machine.nproc);
    opts.wrk.cpus.clone_from(&pinning.load);
    let ctx = Ctx {
        jwks: read(&opts.data.join("jwks.json"))?,
        script: opts.data.join("pool.lua"),
        pinning,
        ticks_per_sec: clock_ticks_per_sec(),
        manifest,
        launcher,
        upstream,
        opts,
    };

    // The shared upstream: app answers and the bundle.
    let bundle = read(&ctx.opts.data.join("bundle.json"))?;
    let config = ctx.launcher.write(
        "envoy-upstream",
        &envoy::upstream_bootstrap(upstream, &bundle, ctx.manifest.bundle_version),
    )?;
    ctx.launcher.validate(&config)?;
    let _upstream = ctx.launcher.start(
        "envoy-upstream",
        &config,
        upstream.admin,
        ctx.opts.concurrency,
        ctx.pinning.load.as_deref(),
    )?;
    http::wait_for_status(
        "the upstream",
        upstream.app,
        "/",
        None,
        200,
        Duration::from_secs(5),
    )?;
    http::wait_for_status(
        "the bundle",
        upstream.bundle,
        "/v1/bundle",
        None,
        200,
        Duration::from_secs(5),
    )?;

    // Every variant's Envoy, validated, started and checked before the first measurement.
    let mut proxies = Vec::new();
    for &variant in &ctx.opts.variants {
        proxies.push(ctx.start_proxy(variant, ctx.opts.concurrency, "")?);
    }
    for proxy in &proxies {
        ctx.warm_up(proxy, ctx.opts.warmup)?;
    }

    let cells = schedule(ctx.opts.reps, &ctx.opts.variants, &ctx.workloads());
    let mut results = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        let proxy = proxies
            .iter_mut()
            .find(|p| p.variant == cell.variant)
            .context("no proxy for a scheduled variant")?;
        let result = ctx.measure(proxy, *cell)?;
        let errors = result.measured.wrk.socket_errors;
        let errors = if errors.total() > 0 {
            format!("  socket errors {errors:?}")
        } else {
            String::new()
        };
        eprintln!(
            "[run] {:>3}/{} rep {} {:<16} {:<14} {:>9.0} req/s  p50 {:>8.0} us  p99 {:>8.0} us  {:>6.1} us CPU/req{errors}",
            i + 1,
            cells.len(),
            cell.rep + 1,
            cell.variant.name(),
            cell.workload.label(),
            result.measured.wrk.rps,
            result.measured.wrk.p50_us,
            result.measured.wrk.p99_us,
            result.measured.cpu_us_per_req
        );
        results.push(result);
    }
    drop(proxies);

    let mut memory = Vec::new();
    if ctx.opts.variants.contains(&Variant::Keymesh) {
        for &c in &ctx.opts.memory_concurrency {
            memory.push(ctx.memory(c)?);
        }
    }

    let module_bytes = std::fs::metadata(&ctx.opts.wasm)
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(Results::new(
        machine,
        Settings {
            command: ctx.opts.command.clone(),
            duration_secs: ctx.opts.duration.as_secs(),
            warmup_secs: ctx.opts.warmup.as_secs(),
            cell_warmup_secs: ctx.opts.cell_warmup.as_secs(),
            reps: ctx.opts.reps,
            concurrency: ctx.opts.concurrency,
            wrk: ctx.opts.wrk.clone(),
            pool: ctx.manifest.pool,
            jwt_cache_size: ctx.opts.jwt_cache_size,
            pinned: ctx.pinning.proxy.is_some(),
            module_path: ctx.opts.wasm.display().to_string(),
            module_bytes,
            loadavg_end: machine::loadavg(),
        },
        results,
        memory,
    ))
}
