//! `run`: one Envoy per variant on the same binary and the same upstream, correctness checked before anything
//! is measured, then every cell of the interleaved schedule measured with wrk, then per-worker VM memory.
//!
//! A cell is measured the same way for both matrices ([`Meter`]); the API-key run (`run-api-keys`) adds its
//! delivery-time phase in [`api_keys`].

pub(crate) mod api_keys;
mod meter;

pub(crate) use meter::{CellSpec, Meter};

use crate::envoy::{self, ProxyInputs, UpstreamPorts};
use crate::http;
use crate::launch::{proxy_ports, Launcher, RunningEnvoy};
use crate::machine::{self, Machine};
use crate::matrix::{schedule, Cell, TokenCase, Variant, Workload};
use crate::prepare::{first_token, load_manifest, Manifest};
use crate::process::{clock_ticks_per_sec, free_port, rss_kib, PidFile};
use crate::report::{CellResult, MemoryRow, Results, Settings};
use crate::wrk::{self, WrkSettings};
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
    /// The previous keymesh build of the `keymesh_base` variant.
    pub(crate) base_wasm: PathBuf,
    /// `capability_restriction_config` on `keymesh` and on `keymesh_base`.
    pub(crate) restrict_keymesh: bool,
    pub(crate) restrict_base: bool,
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
    empty_sdk: PathBuf,
    empty_min: PathBuf,
}

impl Ctx {
    fn inputs(&self) -> ProxyInputs<'_> {
        ProxyInputs {
            jwks: &self.jwks,
            wasm: &self.opts.wasm,
            empty_sdk: &self.empty_sdk,
            empty_min: &self.empty_min,
            keymesh_base: &self.opts.base_wasm,
            restrict_keymesh: self.opts.restrict_keymesh,
            restrict_base: self.opts.restrict_base,
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

struct Proxy {
    variant: Variant,
    envoy: RunningEnvoy,
    listen: u16,
    admin: u16,
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
    let empty_sdk = crate::envoy::floor_module(&opts.wasm, "empty_sdk");
    let empty_min = crate::envoy::floor_module(&opts.wasm, "empty_min");
    if opts.variants.contains(&Variant::KeymeshBase) && !opts.base_wasm.exists() {
        bail!(
            "no module at {}: build keymesh at the commit to compare with and pass it as --base-wasm",
            opts.base_wasm.display()
        );
    }
    for (variant, module, package) in [
        (Variant::EmptySdk, &empty_sdk, "keymesh-bench-empty-sdk"),
        (Variant::EmptyMin, &empty_min, "keymesh-bench-empty-min"),
    ] {
        if opts.variants.contains(&variant) && !module.exists() {
            bail!(
                "no module at {}: cargo build --release --target wasm32-wasip1 -p {package}",
                module.display()
            );
        }
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
        empty_sdk,
        empty_min,
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
