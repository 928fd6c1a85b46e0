//! keymesh-bench: keymesh authn against Envoy's native jwt_authn (tokens) and api_key_auth (API keys), on the same
//! Envoy binary and upstream, measured with wrk. `scripts/bench.sh` builds everything and runs `prepare` then
//! `run` (or `prepare-api-keys` then `run-api-keys`): one pipeline (`prepare`, `matrix`, `run`, `report`) with
//! two matrices.

mod capabilities;
mod envoy;
mod http;
mod launch;
mod machine;
mod matrix;
mod prepare;
mod process;
mod report;
mod request_cost;
mod run;
mod sidecar;
mod stats;
mod wrk;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use matrix::{parse_alg, TokenCase, Variant};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "keymesh-bench",
    about = "keymesh authn vs Envoy jwt_authn, measured with wrk"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes the JWKS, the bundle, the wrk script and the token pools.
    Prepare {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Valid tokens per algorithm (as many invalid ones are derived from them).
        #[arg(long, default_value_t = 20_000)]
        pool: usize,
        /// Lifetime of the tokens.
        #[arg(long, default_value_t = 30)]
        ttl_days: u64,
    },
    /// Runs the benchmark on prepared data and writes `latest.md` and `latest.json`.
    Run(Box<RunArgs>),
    /// Writes K API keys (seeded), the keymesh bundle holding them, the native `api_key_auth` credentials and the
    /// wrk key pools.
    PrepareApiKeys {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Keys in the set.
        #[arg(long, default_value_t = 100_000)]
        keys: usize,
        /// Distinct keys in each wrk pool (valid: the first of the set; unknown: as many keys not in it).
        #[arg(long, default_value_t = 20_000)]
        pool: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// API keys: keymesh vs native `api_key_auth` (delivery time, memory, throughput); writes
    /// `api-keys-latest.md` and `api-keys-latest.json`.
    RunApiKeys(Box<KeyRunArgs>),
    /// The release sidecar holding N API keys (and none): its RSS, load time and full-bundle build time; writes
    /// `sidecar-latest.md` and `sidecar-latest.json`.
    SidecarMemory(SidecarArgs),
    /// Counts what one request costs keymesh (wasm instructions, host calls, bytes, allocations) in the wasmtime
    /// host, per case, next to the floors: deterministic, unlike Envoy CPU time.
    RequestCost(request_cost::RequestCostArgs),
    /// Prints the Envoy bootstrap of one variant (ports are placeholders), for reading or debugging.
    Render {
        #[arg(long)]
        variant: String,
        /// Prepared data directory (for the JWKS).
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        wasm: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Prepared data directory (`prepare --out`).
    #[arg(long)]
    data: PathBuf,
    /// Envoy binary [default: $KEYMESH_ENVOY, else .venv/bin/envoy].
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// The keymesh module [default: $CARGO_TARGET_DIR or target, /wasm32-wasip1/release/keymesh_authn.wasm].
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Where rendered configs and logs go [default: DATA/run].
    #[arg(long)]
    work: Option<PathBuf>,
    /// Where latest.md and latest.json go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Measured seconds per cell.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Warm-up seconds of each Envoy after it starts, spread over the algorithms (0: none).
    #[arg(long, default_value_t = 6)]
    warmup: u64,
    /// Warm-up seconds before each measured cell, with its tokens (0: none).
    #[arg(long, default_value_t = 1)]
    cell_warmup: u64,
    /// Interleaved repetitions.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Envoy `--concurrency` (workers) of every proxy and of the upstream.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    #[arg(long, default_value_t = 1)]
    threads: u32,
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk per-request timeout, seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// The module of the `keymesh_base` variant: keymesh built from another commit, to compare a change before
    /// and after in one run [default: keymesh_base.wasm next to the keymesh module].
    #[arg(long)]
    base_wasm: Option<PathBuf>,
    /// Run `keymesh` without `capability_restriction_config` (Envoy then calls every callback the module exports).
    #[arg(long)]
    keymesh_unrestricted: bool,
    /// Run `keymesh_base` with keymesh's `capability_restriction_config` (by default it runs without).
    #[arg(long)]
    base_restricted: bool,
    /// Variants to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,empty_min,empty_sdk,jwt_authn,jwt_authn_cache,keymesh"
    )]
    variants: Vec<String>,
    /// Algorithms: eddsa, es256, rs256.
    #[arg(long, value_delimiter = ',', default_value = "eddsa,es256,rs256")]
    algs: Vec<String>,
    /// Token cases: cached (one token), fresh (pool), invalid (invalid-signature pool).
    #[arg(long, value_delimiter = ',', default_value = "cached,fresh,invalid")]
    cases: Vec<String>,
    /// jwt_cache_config.jwt_cache_size of the jwt_authn_cache variant (keep it below --pool).
    #[arg(long, default_value_t = 100)]
    jwt_cache_size: u32,
    /// --concurrency values of the memory measurement (keymesh vs no filter); more than two steady the per-worker
    /// slope.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    memory_concurrency: Vec<u32>,
    /// Skip the memory measurement.
    #[arg(long)]
    skip_memory: bool,
    /// Pin the proxies to the first --concurrency CPUs and wrk + upstream to the others (taskset).
    #[arg(long)]
    pin: bool,
    /// The command to record in the report [default: this command line].
    #[arg(long)]
    command: Option<String>,
}

#[derive(clap::Args)]
struct KeyRunArgs {
    /// Prepared data directory (`prepare-api-keys --out`).
    #[arg(long)]
    data: PathBuf,
    /// Envoy binary [default: $KEYMESH_ENVOY, else .venv/bin/envoy].
    #[arg(long)]
    envoy: Option<PathBuf>,
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Where rendered configs and logs go [default: DATA/run].
    #[arg(long)]
    work: Option<PathBuf>,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Warm-up seconds of each Envoy (valid pool) before measuring it, and before reading RSS.
    #[arg(long, default_value_t = 4)]
    warmup: u64,
    #[arg(long, default_value_t = 1)]
    cell_warmup: u64,
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Envoy `--concurrency` of the throughput proxies and the upstream.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Envoy `--concurrency` of the delivery/memory starts.
    #[arg(long, default_value_t = 2)]
    memory_concurrency: u32,
    #[arg(long, default_value_t = 1)]
    threads: u32,
    #[arg(long, default_value_t = 32)]
    connections: u32,
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// Seconds a proxy may take to accept the last key of the set.
    #[arg(long, default_value_t = 120)]
    deliver_timeout: u64,
    #[arg(long)]
    command: Option<String>,
}

#[derive(clap::Args)]
struct SidecarArgs {
    /// Key counts, comma-separated (a row with no key is measured first).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    keys: Vec<usize>,
    /// The sidecar binary [default: $CARGO_TARGET_DIR or target, /release/keymesh].
    #[arg(long)]
    sidecar: Option<PathBuf>,
    /// Where Redis and the sidecar keep their logs.
    #[arg(long)]
    work: PathBuf,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds the sidecar may take to load the keys, and a full bundle to arrive.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[arg(long)]
    command: Option<String>,
}

fn default_envoy(envoy: Option<PathBuf>) -> PathBuf {
    envoy.unwrap_or_else(|| {
        std::env::var_os("KEYMESH_ENVOY")
            .map_or_else(|| repo().join(".venv/bin/envoy"), PathBuf::from)
    })
}

fn key_run_options(args: Box<KeyRunArgs>) -> Result<run::api_keys::KeyRunOptions> {
    let data = std::path::absolute(&args.data)?;
    Ok(run::api_keys::KeyRunOptions {
        work: args
            .work
            .map_or_else(|| Ok(data.join("run")), |w| std::path::absolute(&w))?,
        wasm: std::path::absolute(args.wasm.unwrap_or_else(default_wasm))?,
        envoy: default_envoy(args.envoy),
        repo: repo(),
        duration: Duration::from_secs(args.duration.max(1)),
        warmup: Duration::from_secs(args.warmup),
        cell_warmup: Duration::from_secs(args.cell_warmup),
        reps: args.reps.max(1),
        concurrency: args.concurrency.max(1),
        memory_concurrency: args.memory_concurrency.max(1),
        wrk: wrk::WrkSettings {
            threads: args.threads.max(1),
            connections: args.connections.max(args.threads.max(1)),
            timeout_secs: args.timeout.max(1),
            cpus: None,
        },
        deliver_timeout: Duration::from_secs(args.deliver_timeout.max(1)),
        command: args
            .command
            .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" ")),
        data,
    })
}

fn repo() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    here.canonicalize().unwrap_or(here)
}

fn default_wasm() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo().join("target"), PathBuf::from)
        .join("wasm32-wasip1/release/keymesh_authn.wasm")
}

fn parse_list<T>(
    what: &str,
    items: &[String],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>> {
    items
        .iter()
        .map(|s| parse(s.trim()).with_context(|| format!("unknown {what} `{s}`")))
        .collect()
}

fn run_options(args: Box<RunArgs>) -> Result<run::RunOptions> {
    let envoy = args.envoy.unwrap_or_else(|| {
        std::env::var_os("KEYMESH_ENVOY")
            .map_or_else(|| repo().join(".venv/bin/envoy"), PathBuf::from)
    });
    let data = std::path::absolute(&args.data)?;
    let wasm = std::path::absolute(args.wasm.unwrap_or_else(default_wasm))?;
    Ok(run::RunOptions {
        work: args
            .work
            .map_or_else(|| Ok(data.join("run")), |w| std::path::absolute(&w))?,
        base_wasm: std::path::absolute(
            args.base_wasm
                .unwrap_or_else(|| envoy::floor_module(&wasm, "keymesh_base")),
        )?,
        restrict_keymesh: !args.keymesh_unrestricted,
        restrict_base: args.base_restricted,
        wasm,
        envoy,
        repo: repo(),
        duration: Duration::from_secs(args.duration.max(1)),
        warmup: Duration::from_secs(args.warmup),
        cell_warmup: Duration::from_secs(args.cell_warmup),
        reps: args.reps.max(1),
        concurrency: args.concurrency.max(1),
        variants: parse_list("variant", &args.variants, Variant::parse)?,
        algs: parse_list("algorithm", &args.algs, parse_alg)?,
        cases: parse_list("token case", &args.cases, TokenCase::parse)?,
        wrk: wrk::WrkSettings {
            threads: args.threads.max(1),
            connections: args.connections.max(args.threads.max(1)),
            timeout_secs: args.timeout.max(1),
            cpus: None,
        },
        jwt_cache_size: args.jwt_cache_size,
        memory_concurrency: if args.skip_memory {
            vec![]
        } else {
            args.memory_concurrency
        },
        pin: args.pin,
        command: args
            .command
            .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" ")),
        data,
    })
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Prepare {
            out,
            pool,
            ttl_days,
        } => {
            prepare::prepare(&out, pool, ttl_days)?;
            eprintln!("[prepare] wrote {}", out.display());
        }
        Cmd::Run(args) => {
            let out = args.out.clone();
            let results = run::run(run_options(args)?)?;
            std::fs::create_dir_all(&out)?;
            let md = results.markdown();
            std::fs::write(out.join("latest.md"), &md)?;
            std::fs::write(
                out.join("latest.json"),
                serde_json::to_string_pretty(&results)?,
            )?;
            println!("{md}");
            eprintln!(
                "[run] wrote {0}/latest.md and {0}/latest.json",
                out.display()
            );
        }
        Cmd::PrepareApiKeys {
            out,
            keys,
            pool,
            seed,
        } => {
            let m = prepare::prepare_api_keys(&out, keys, pool, seed)?;
            eprintln!(
                "[prepare-api-keys] wrote {} keys to {} (bundle {} bytes, native credentials {} bytes)",
                m.keys,
                out.display(),
                m.bundle_bytes,
                m.native_config_bytes
            );
        }
        Cmd::RunApiKeys(args) => {
            let out = args.out.clone();
            let results = run::api_keys::run(key_run_options(args)?)?;
            std::fs::create_dir_all(&out)?;
            let md = results.markdown();
            std::fs::write(out.join("api-keys-latest.md"), &md)?;
            std::fs::write(
                out.join("api-keys-latest.json"),
                serde_json::to_string_pretty(&results)?,
            )?;
            println!("{md}");
            eprintln!(
                "[run-api-keys] wrote {0}/api-keys-latest.md and {0}/api-keys-latest.json",
                out.display()
            );
        }
        Cmd::SidecarMemory(args) => {
            let opts = sidecar::SidecarOptions {
                keys: args.keys,
                sidecar: std::path::absolute(args.sidecar.unwrap_or_else(|| {
                    std::env::var_os("CARGO_TARGET_DIR")
                        .map_or_else(|| repo().join("target"), PathBuf::from)
                        .join("release/keymesh")
                }))?,
                work: std::path::absolute(&args.work)?,
                repo: repo(),
                envoy: default_envoy(None),
                seed: args.seed,
                timeout: Duration::from_secs(args.timeout.max(1)),
                command: args
                    .command
                    .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" ")),
            };
            let results = sidecar::run(&opts)?;
            std::fs::create_dir_all(&args.out)?;
            let md = results.markdown();
            std::fs::write(args.out.join("sidecar-latest.md"), &md)?;
            std::fs::write(
                args.out.join("sidecar-latest.json"),
                serde_json::to_string_pretty(&results)?,
            )?;
            println!("{md}");
            eprintln!(
                "[sidecar-memory] wrote {0}/sidecar-latest.md and {0}/sidecar-latest.json",
                args.out.display()
            );
        }
        Cmd::RequestCost(args) => request_cost::run(args)?,
        Cmd::Render {
            variant,
            data,
            wasm,
        } => {
            let variant =
                Variant::parse(&variant).with_context(|| format!("unknown variant `{variant}`"))?;
            let jwks = std::fs::read_to_string(data.join("jwks.json"))?;
            let wasm = wasm.unwrap_or_else(default_wasm);
            let empty_sdk = envoy::floor_module(&wasm, "empty_sdk");
            let empty_min = envoy::floor_module(&wasm, "empty_min");
            let keymesh_base = envoy::floor_module(&wasm, "keymesh_base");
            let inputs = envoy::ProxyInputs {
                jwks: &jwks,
                wasm: &wasm,
                empty_sdk: &empty_sdk,
                empty_min: &empty_min,
                keymesh_base: &keymesh_base,
                restrict_keymesh: true,
                restrict_base: false,
                jwt_cache_size: 100,
                upstream: envoy::UpstreamPorts {
                    app: 10001,
                    bundle: 10002,
                    admin: 10003,
                },
            };
            let ports = envoy::ProxyPorts {
                listen: 10000,
                admin: 9901,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&envoy::proxy_bootstrap(variant, ports, &inputs))?
            );
        }
    }
    Ok(())
}
