//! `run-api-keys`: keymesh (K keys delivered as a bundle by the static bundle server) against Envoy's native
//! `envoy.filters.http.api_key_auth` (the same K keys inline in its config), on the same Envoy binary, in one run.
//!
//! It measures, in this order:
//! 1. **Delivery and memory** at `--memory-concurrency` (default 2) workers, one Envoy at a time (nothing else
//!    competes for the CPU while it starts): the time from spawning Envoy until a request carrying the *last* key
//!    of the set is accepted (polled every 10 ms), then RSS after a warm-up under load. Variants: `none`,
//!    `api_key_auth`, `keymesh`, and `keymesh_0` (keymesh with an empty bundle, to separate the key set from the
//!    VM).
//! 2. **Throughput** at `--concurrency` (default 1): `none`, `api_key_auth` and `keymesh` run side by side,
//!    checked (valid key 200, unknown key 401), warmed up, then the cells of the shared schedule measured by the
//!    shared [`Meter`], like the token run.

use super::{CellSpec, Meter};
use crate::envoy::{
    key_proxy_bootstrap, key_upstream_bootstrap, ProxyPorts, UpstreamPorts, API_KEY_HEADER,
    FULL_BUNDLE_PATH,
};
use crate::http;
use crate::launch::{proxy_ports, Launcher};
use crate::machine::{self, Machine};
use crate::matrix::{key_schedule, Cell, KeyCase, KeyVariant};
use crate::prepare::{first_line, load_key_manifest};
use crate::process::{
    clock_ticks_per_sec, cpu_ticks, free_port, rss_kib, PidFile, Process, Supervised,
};
use crate::report::api_keys::{ratios, summarise, KeyCellResult, KeyResults, StartRow};
use crate::wrk::{WrkReport, WrkSettings};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Everything `run-api-keys` is told.
#[derive(Debug, Clone)]
pub(crate) struct KeyRunOptions {
    pub(crate) data: PathBuf,
    pub(crate) envoy: PathBuf,
    pub(crate) wasm: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) repo: PathBuf,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) cell_warmup: Duration,
    pub(crate) reps: usize,
    pub(crate) concurrency: u32,
    pub(crate) memory_concurrency: u32,
    pub(crate) wrk: WrkSettings,
    /// How long a proxy may take to accept the last key.
    pub(crate) deliver_timeout: Duration,
    pub(crate) command: String,
}

/// Delivery poll outcome: ms to the accepted answer, ms to `/ready`, and the poll's status transitions.
type Delivered = (f64, Option<f64>, Vec<(f64, u16)>);

struct KeyProxy {
    variant: KeyVariant,
    process: Process,
    listen: u16,
    admin: u16,
}

struct KeyCtx {
    opts: KeyRunOptions,
    launcher: Launcher,
    upstream: UpstreamPorts,
    credentials: Value,
    last_key: String,
    valid_key: String,
    unknown_key: String,
    script: PathBuf,
    ticks_per_sec: u64,
}

fn key_get(port: u16, key: Option<&str>) -> Result<(u16, String)> {
    let headers: Vec<(&str, &str)> = key.map(|k| (API_KEY_HEADER, k)).into_iter().collect();
    http::get_with(port, "/", &headers)
}

impl KeyCtx {
    fn config(&self, variant: KeyVariant, tag: &str) -> Result<(PathBuf, ProxyPorts)> {
        let ports = proxy_ports()?;
        let bootstrap = key_proxy_bootstrap(
            variant,
            ports,
            self.upstream,
            &self.opts.wasm,
            &self.credentials,
        );
        let path = self.launcher.write(
            &format!("envoy-apikeys-{}{tag}", variant.name()),
            &bootstrap,
        )?;
        self.launcher.validate(&path)?;
        Ok((path, ports))
    }

    /// Starts the proxy of `variant` without waiting for it: the delivery poll times it from the spawn.
    fn spawn(
        &self,
        variant: KeyVariant,
        concurrency: u32,
        tag: &str,
    ) -> Result<(KeyProxy, Instant)> {
        let (config, ports) = self.config(variant, tag)?;
        let started = Instant::now();
        let process = self.launcher.spawn(
            &format!("envoy-apikeys-{}{tag}", variant.name()),
            &config,
            concurrency,
            None,
        )?;
        Ok((
            KeyProxy {
                variant,
                process,
                listen: ports.listen,
                admin: ports.admin,
            },
            started,
        ))
    }

    /// Polls every 10 ms until the proxy accepts the last key (see [`StartRow::deliver_ms`]); also notes when
    /// `/ready` first answered.
    fn wait_delivered(&self, proxy: &mut KeyProxy, started: Instant) -> Result<Delivered> {
        let (key, want) = match proxy.variant {
            KeyVariant::KeymeshEmpty => (Some(self.last_key.as_str()), 401),
            _ => (Some(self.last_key.as_str()), 200),
        };
        let deadline = started + self.opts.deliver_timeout;
        let mut ready = None;
        let mut last: String;
        let mut seen: Vec<(f64, u16)> = Vec::new();
        loop {
            if ready.is_none() {
                if let Ok((200, _)) = http::get_with(proxy.admin, "/ready", &[]) {
                    ready = Some(started.elapsed().as_secs_f64() * 1e3);
                }
            }
            let answer = key_get(proxy.listen, key);
            let status = answer.as_ref().map_or(0, |(s, _)| *s);
            if seen.last().map(|(_, s)| *s) != Some(status) {
                seen.push((started.elapsed().as_secs_f64() * 1e3, status));
            }
            match answer {
                Ok((s, _)) if s == want => {
                    return Ok((started.elapsed().as_secs_f64() * 1e3, ready, seen));
                }
                Ok((_, head)) => last = head,
                Err(e) => last = e.to_string(),
            }
            proxy.process.ensure_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "{} did not accept the last key within {:?}; last answer: {last}\nend of {}:\n{}",
                    proxy.variant.name(),
                    self.opts.deliver_timeout,
                    proxy.process.log_path().display(),
                    proxy.process.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A valid key must pass and an unknown key (and no key) must not, on the filtering variants.
    fn check(&self, proxy: &KeyProxy) -> Result<()> {
        let mut checks = vec![
            ("valid (first of pool)", Some(self.valid_key.as_str()), 200),
            ("valid (last of set)", Some(self.last_key.as_str()), 200),
        ];
        if proxy.variant.holds_keys() {
            checks.push(("unknown", Some(self.unknown_key.as_str()), 401));
            checks.push(("no key", None, 401));
        }
        for (what, key, expected) in checks {
            let (status, head) = key_get(proxy.listen, key)?;
            if status != expected {
                bail!(
                    "{}: a {what} request got {status}, expected {expected}:\n{head}\nend of {}:\n{}",
                    proxy.variant.name(),
                    proxy.process.log_path().display(),
                    proxy.process.log_tail(30)
                );
            }
        }
        eprintln!(
            "[api-keys] {}: {}",
            proxy.variant.name(),
            if proxy.variant.holds_keys() {
                "valid key 200, unknown key 401, no key 401: ok"
            } else {
                "valid key 200: ok"
            }
        );
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

    fn wrk(&self, duration: Duration, case: KeyCase, port: u16, log: &str) -> Result<WrkReport> {
        self.meter().wrk(duration, &case.pool_file(), port, log)
    }

    fn start_row(&self, variant: KeyVariant) -> Result<StartRow> {
        let c = self.opts.memory_concurrency;
        let (mut proxy, started) = self.spawn(variant, c, &format!("-mem-c{c}"))?;
        let (deliver_ms, ready_ms, poll_transitions) = self.wait_delivered(&mut proxy, started)?;
        let pid = proxy.process.pid();
        let cpu_to_deliver_ms = cpu_ticks(pid)? as f64 * 1e3 / self.ticks_per_sec as f64;
        let rss_delivered_kib = rss_kib(pid)?;
        if variant != KeyVariant::KeymeshEmpty {
            self.check(&proxy)?;
        }
        if !self.opts.warmup.is_zero() {
            // keymesh_0 refuses every key: it is warmed up on the unknown pool (its code path is the same).
            let case = if variant == KeyVariant::KeymeshEmpty {
                KeyCase::Unknown
            } else {
                KeyCase::Valid
            };
            self.wrk(
                self.opts.warmup,
                case,
                proxy.listen,
                &format!("wrk-apikeys-warmup-mem-{}", variant.name()),
            )?;
        }
        proxy.process.ensure_running()?;
        let rss_warm_kib = rss_kib(pid)?;
        eprintln!(
            "[api-keys] {} at --concurrency {c}: last key accepted after {deliver_ms:.0} ms (ready {}), RSS {} KiB after delivery, {} KiB warm",
            variant.name(),
            ready_ms.map_or("-".into(), |r| format!("{r:.0} ms")),
            rss_delivered_kib,
            rss_warm_kib
        );
        Ok(StartRow {
            variant,
            concurrency: c,
            deliver_ms,
            ready_ms,
            rss_delivered_kib,
            rss_warm_kib,
            cpu_to_deliver_ms,
            poll_transitions,
        })
    }

    fn measure(
        &self,
        proxy: &mut KeyProxy,
        cell: Cell<KeyVariant, KeyCase>,
    ) -> Result<KeyCellResult> {
        let (variant, case) = (cell.variant, cell.workload);
        let spec = CellSpec {
            label: format!("{} under {}", variant.name(), case.name()),
            pool_file: case.pool_file(),
            native: "api_key_auth",
            expected: case.expected_status(variant),
            warmup_log: "wrk-apikeys-warmup",
            log: format!(
                "wrk-apikeys-r{}-{}-{}",
                cell.rep,
                variant.name(),
                case.name()
            ),
        };
        let measured =
            self.meter()
                .measure(&mut proxy.process, proxy.listen, proxy.admin, &spec)?;
        Ok(KeyCellResult {
            rep: cell.rep,
            variant,
            case,
            measured,
        })
    }
}

/// Runs the API-key benchmark (delivery and memory, then throughput).
pub(crate) fn run(opts: KeyRunOptions) -> Result<KeyResults> {
    let manifest = load_key_manifest(&opts.data)?;
    if !opts.wasm.exists() {
        bail!(
            "no module at {}: cargo build --release --target wasm32-wasip1 -p keymesh-authn",
            opts.wasm.display()
        );
    }
    let empty_min = crate::envoy::floor_module(&opts.wasm, "empty_min");
    if !empty_min.exists() {
        bail!(
            "no module at {}: cargo build --release --target wasm32-wasip1 -p keymesh-bench-empty-min",
            empty_min.display()
        );
    }
    let machine = Machine::gather(&opts.envoy, &opts.repo);
    std::fs::create_dir_all(&opts.work)?;
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
    let credentials: Value = serde_json::from_str(
        &std::fs::read_to_string(opts.data.join("credentials.json"))
            .context("cannot read credentials.json")?,
    )?;
    let ctx = KeyCtx {
        last_key: first_line(&opts.data.join("last.txt"))?,
        valid_key: first_line(&opts.data.join(KeyCase::Valid.pool_file()))?,
        unknown_key: first_line(&opts.data.join(KeyCase::Unknown.pool_file()))?,
        script: opts.data.join("apikey_pool.lua"),
        ticks_per_sec: clock_ticks_per_sec(),
        credentials,
        launcher,
        upstream,
        opts,
    };

    let full = ctx.opts.data.join("bundle.json");
    let empty = ctx.opts.data.join("bundle-empty.json");
    let pages: Vec<(u64, std::path::PathBuf)> = manifest
        .pages
        .iter()
        .map(|from| {
            let file = ctx
                .opts
                .data
                .join(crate::prepare::PAGES_DIR)
                .join(format!("{from}.json"));
            (*from, file)
        })
        .collect();
    let config = ctx.launcher.write(
        "envoy-apikeys-upstream",
        &key_upstream_bootstrap(
            upstream,
            &full,
            &empty,
            &pages,
            manifest.bundle_bytes + 1024,
        ),
    )?;
    ctx.launcher.validate(&config)?;
    let _upstream = ctx.launcher.start(
        "envoy-apikeys-upstream",
        &config,
        upstream.admin,
        ctx.opts.concurrency,
        None,
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
        "the full bundle",
        upstream.bundle,
        FULL_BUNDLE_PATH,
        None,
        200,
        Duration::from_secs(10),
    )?;
    eprintln!(
        "[api-keys] {} keys; bundle {} bytes ({} pages, the largest {} bytes), native credentials {} bytes",
        manifest.keys,
        manifest.bundle_bytes,
        manifest.pages.len(),
        manifest.largest_page_bytes,
        manifest.native_config_bytes
    );

    // 1. Delivery and memory, one Envoy at a time.
    let mut starts = Vec::new();
    for variant in KeyVariant::MEMORY {
        starts.push(ctx.start_row(variant)?);
    }

    // 2. Throughput, side by side.
    let mut proxies = Vec::new();
    for variant in KeyVariant::THROUGHPUT {
        let (mut proxy, started) = ctx.spawn(variant, ctx.opts.concurrency, "")?;
        ctx.wait_delivered(&mut proxy, started)?;
        ctx.check(&proxy)?;
        proxies.push(proxy);
    }
    for proxy in &proxies {
        if !ctx.opts.warmup.is_zero() {
            ctx.wrk(
                ctx.opts.warmup,
                KeyCase::Valid,
                proxy.listen,
                &format!("wrk-apikeys-warmup-{}", proxy.variant.name()),
            )?;
        }
    }
    let cells = key_schedule(ctx.opts.reps, &KeyVariant::THROUGHPUT, &KeyCase::ALL);
    let mut results = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        let proxy = proxies
            .iter_mut()
            .find(|p| p.variant == cell.variant)
            .context("no proxy for a scheduled variant")?;
        let r = ctx.measure(proxy, *cell)?;
        eprintln!(
            "[api-keys] {:>3}/{} rep {} {:<13} {:<8} {:>9.0} req/s  p50 {:>8.0} us  p99 {:>8.0} us  {:>6.1} us CPU/req",
            i + 1,
            cells.len(),
            cell.rep + 1,
            cell.variant.name(),
            cell.workload.name(),
            r.measured.wrk.rps,
            r.measured.wrk.p50_us,
            r.measured.wrk.p99_us,
            r.measured.cpu_us_per_req
        );
        results.push(r);
    }
    drop(proxies);

    Ok(KeyResults {
        machine,
        command: ctx.opts.command.clone(),
        manifest,
        duration_secs: ctx.opts.duration.as_secs(),
        warmup_secs: ctx.opts.warmup.as_secs(),
        cell_warmup_secs: ctx.opts.cell_warmup.as_secs(),
        reps: ctx.opts.reps,
        concurrency: ctx.opts.concurrency,
        wrk: ctx.opts.wrk.clone(),
        module_bytes: std::fs::metadata(&ctx.opts.wasm).map_or(0, |m| m.len()),
        loadavg_end: machine::loadavg(),
        starts,
        summary: summarise(&results),
        ratios: ratios(&results),
        cells: results,
    })
}
