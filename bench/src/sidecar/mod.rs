//! `sidecar-memory`: the release sidecar holding N API keys. For each N, with a fresh Redis on a free port:
//!
//! 1. N key records are written into Redis as the sidecar stores them ([`keys`]), and Redis's `used_memory` read;
//! 2. the sidecar is started, and timed until `/healthz` reports its first snapshot (the full load: `SCAN` of
//!    every record); the snapshot's size is checked with `/metrics`;
//! 3. the full set is fetched at once, page by page as a filter of this build asks for it: the sidecar sorts the
//!    keys for paging right after a full load, so this waits for that sort; RSS and its peak (`VmHWM`, the whole
//!    start) are read after it;
//! 4. one more key is created with `keymesh apikey create`, and the sidecar applies it from the change log. Its new
//!    snapshot has nothing serialised and the old one is freed: RSS is read (the mirror alone);
//! 5. the peak is reset (`clear_refs`) and the whole bundle fetched in one document, as an older filter asks for
//!    it: it is built on the request path (**cold**). The time to its first byte is the build time; the peak is
//!    that of building and serving it;
//! 6. the same is fetched again (**cached**).
//!
//! A row with no key at all comes first: the sidecar's memory before any key.

pub(crate) mod keys;
pub(crate) mod probe;
pub(crate) mod resp;

use crate::machine::Machine;
use crate::prepare::{now_secs, BENCH_AUDIENCE};
use crate::process::{
    clock_ticks_per_sec, cpu_ticks, free_port, start, PidFile, Process, Supervised,
};
use crate::report::sidecar::{BundleFetch, SidecarResults, SidecarRow};
use anyhow::{bail, Context, Result};
use probe::{fetch, fetch_full_set, memory, ready_version, reset_peak, FullSet, Paging};
use resp::{info_field, Redis, Reply};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A key-encryption key for the bench's throwaway Redis only (it seals the signing key the sidecar generates).
pub(crate) const BENCH_KEK: &str = "a2V5bWVzaCBiZW5jaCBrZXktZW5jcnlwdGlvbiBrZXk=";
/// How often readiness and the change are polled.
const POLL: Duration = Duration::from_millis(10);

/// Everything `sidecar-memory` is told.
#[derive(Debug, Clone)]
pub(crate) struct SidecarOptions {
    /// Key counts, in order; a 0-key row is measured first whatever they are.
    pub(crate) keys: Vec<usize>,
    /// The `keymesh` binary (release).
    pub(crate) sidecar: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) repo: PathBuf,
    pub(crate) envoy: PathBuf,
    pub(crate) seed: u64,
    /// How long the sidecar may take to load, and a bundle to arrive.
    pub(crate) timeout: Duration,
    pub(crate) command: String,
}

/// Measures every key count, one after the other (one Redis and one sidecar at a time).
pub(crate) fn run(opts: &SidecarOptions) -> Result<SidecarResults> {
    if !opts.sidecar.is_file() {
        bail!(
            "no sidecar at {}: cargo build --release -p keymesh",
            opts.sidecar.display()
        );
    }
    let machine = Machine::gather(&opts.envoy, &opts.repo);
    std::fs::create_dir_all(&opts.work)?;
    let pids = PidFile::new(opts.work.join("pids"));
    let mut rows = Vec::new();
    let counts = std::iter::once(0).chain(opts.keys.iter().copied().filter(|&n| n > 0));
    for count in counts {
        eprintln!("[sidecar-memory] {count} keys");
        let row = measure(opts, &pids, count)
            .with_context(|| format!("measuring the sidecar with {count} keys"))?;
        eprintln!(
            "[sidecar-memory] {count} keys: ready in {:.0} ms, RSS {} KiB, cold full bundle {:.0} ms ({} bytes)",
            row.ready_ms, row.after_cold_bundle.rss_kib, row.cold_bundle.first_byte_ms, row.cold_bundle.bytes
        );
        rows.push(row);
    }
    Ok(SidecarResults {
        machine,
        command: opts.command.clone(),
        seed: opts.seed,
        loadavg_end: crate::machine::loadavg(),
        rows,
    })
}

/// The processes of one measurement, stopped when it ends.
struct Stack {
    _redis: Process,
    redis_port: u16,
    sidecar_port: u16,
    dir: PathBuf,
}

impl Stack {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "KEYMESH_REDIS_URL",
                format!("redis://127.0.0.1:{}/", self.redis_port),
            ),
            ("KEYMESH_LISTEN", format!("127.0.0.1:{}", self.sidecar_port)),
            (
                "KEYMESH_ISSUER",
                format!("http://127.0.0.1:{}", self.sidecar_port),
            ),
            ("KEYMESH_KEK", BENCH_KEK.to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
    }
}

fn start_redis(dir: &std::path::Path, pids: &PidFile) -> Result<(Process, u16)> {
    let port = free_port()?;
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir);
    let mut redis = start("redis", dir, command, pids)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        redis.ensure_running()?;
        let pong = Redis::connect(port).and_then(|mut r| r.call(&[b"PING"]));
        if matches!(pong, Ok(Reply::Status(ref s)) if s == "PONG") {
            return Ok((redis, port));
        }
        if Instant::now() >= deadline {
            bail!("redis-server did not answer PING on port {port}");
        }
        std::thread::sleep(POLL);
    }
}

fn redis_used_memory(port: u16) -> Result<u64> {
    let info = match Redis::connect(port)?.call(&[b"INFO", b"memory"])? {
        Reply::Bulk(Some(text)) => String::from_utf8_lossy(&text).into_owned(),
        other => bail!("unexpected INFO answer {other:?}"),
    };
    info_field(&info, "used_memory").context("no used_memory in INFO memory")
}

fn measure(opts: &SidecarOptions, pids: &PidFile, count: usize) -> Result<SidecarRow> {
    let dir = opts.work.join(format!("sidecar-{count}"));
    std::fs::create_dir_all(&dir)?;
    let (redis, redis_port) = start_redis(&dir, pids)?;
    let stack = Stack {
        _redis: redis,
        redis_port,
        sidecar_port: free_port()?,
        dir,
    };

    let loading = Instant::now();
    keys::load(
        &mut Redis::connect(stack.redis_port)?,
        keys::KEY_PREFIX,
        count,
        opts.seed,
        now_secs(),
    )?;
    let redis_load_ms = ms(loading.elapsed());
    let redis_used_memory = redis_used_memory(stack.redis_port)?;

    let mut command = Command::new(&opts.sidecar);
    command.arg("serve").envs(stack.env());
    let spawned = Instant::now();
    let mut sidecar = start("sidecar", &stack.dir, command, pids)?;
    let pid = sidecar.pid();
    let loaded_version = wait_for(&mut sidecar, opts.timeout, "/healthz", || {
        ready_version(stack.sidecar_port)
    })?;
    let ready_ms = ms(spawned.elapsed());
    let cpu_to_ready_ms = ticks_ms(cpu_ticks(pid)?);
    let at_ready = memory(pid)?;
    let mirrored = metric(stack.sidecar_port, "keymesh_api_keys")?;
    if mirrored != count as u64 {
        bail!("the sidecar loaded {mirrored} API keys, not {count}");
    }

    // As a filter of this build asks for it: page by page.
    let first = checked_full_set(stack.sidecar_port, opts.timeout, count, Paging::Pages)?;
    if first.version != loaded_version {
        bail!(
            "the first bundle is version {}, the loaded one {loaded_version}",
            first.version
        );
    }
    let after_first_bundle = memory(pid)?;

    create_one_key(opts, &stack)?;
    let changed_version = wait_for(&mut sidecar, opts.timeout, "the change", || {
        ready_version(stack.sidecar_port).filter(|v| *v > first.version)
    })?;
    // Let the request that saw the old snapshot finish, so its bundle is freed.
    std::thread::sleep(Duration::from_millis(200));
    let after_change = memory(pid)?;

    let peak_reset = reset_peak(pid);
    let cpu_before_cold = cpu_ticks(pid)?;
    // One document, as an older filter asks for it: the whole bundle built on the request. (Pages asked for now
    // would join the version paged above, which the sidecar holds for a while, and catch up with a delta.)
    let cold = checked_full_set(stack.sidecar_port, opts.timeout, count + 1, Paging::Whole)?;
    let cold_cpu_ms = ticks_ms(cpu_ticks(pid)?.saturating_sub(cpu_before_cold));
    if cold.version != changed_version {
        bail!(
            "the cold bundle is version {}, the sidecar reported {changed_version}",
            cold.version
        );
    }
    let after_cold_bundle = memory(pid)?;
    let cached = checked_full_set(stack.sidecar_port, opts.timeout, count + 1, Paging::Whole)?;
    let after_cached = memory(pid)?;
    sidecar.ensure_running()?;
    drop(sidecar);
    drop(stack);
    Ok(SidecarRow {
        keys: count,
        redis_load_ms,
        redis_used_memory,
        ready_ms,
        cpu_to_ready_ms,
        at_ready,
        first_bundle: bundle_fetch(&first),
        after_first_bundle,
        after_change,
        cold_peak_reset: peak_reset,
        cold_bundle: bundle_fetch(&cold),
        cold_cpu_ms,
        after_cold_bundle,
        cached_bundle: bundle_fetch(&cached),
        after_cached,
    })
}

/// The full set, checked to hold `expected` API keys.
fn checked_full_set(
    port: u16,
    timeout: Duration,
    expected: usize,
    paging: Paging,
) -> Result<FullSet> {
    let set = fetch_full_set(port, timeout, paging)?;
    if set.entries != expected {
        bail!(
            "the full bundle holds {} API keys, not {expected}",
            set.entries
        );
    }
    Ok(set)
}

/// `keymesh apikey create` with the sidecar's settings: one change through the commit protocol.
fn create_one_key(opts: &SidecarOptions, stack: &Stack) -> Result<()> {
    let out = Command::new(&opts.sidecar)
        .args(["apikey", "create", "--owner", "bench-change", "--label"])
        .args(["one more", "--resource", BENCH_AUDIENCE, "--json"])
        .envs(stack.env())
        .output()
        .context("cannot run keymesh apikey create")?;
    if !out.status.success() {
        bail!(
            "keymesh apikey create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Polls `probe` every [`POLL`] until it gives a value; fails if the sidecar exits or `timeout` passes.
fn wait_for<T>(
    sidecar: &mut Process,
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        sidecar.ensure_running()?;
        if let Some(value) = probe() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// One gauge of the sidecar's `/metrics`.
fn metric(port: u16, name: &str) -> Result<u64> {
    let answer = fetch(port, "/metrics", Duration::from_secs(5))?;
    let text = String::from_utf8_lossy(&answer.body);
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
        .with_context(|| format!("no {name} in /metrics"))
}

fn bundle_fetch(set: &FullSet) -> BundleFetch {
    BundleFetch {
        first_byte_ms: ms(set.first_byte),
        total_ms: ms(set.total),
        bytes: set.bytes,
        pages: set.pages,
        entries: set.entries,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn ticks_ms(ticks: u64) -> f64 {
    ticks as f64 * 1_000.0 / clock_ticks_per_sec() as f64
}
