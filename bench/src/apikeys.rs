//! API keys: keymesh (K keys delivered as a bundle by the static bundle server) against Envoy's native
//! `envoy.filters.http.api_key_auth` (the same K keys inline in its config), on the same Envoy binary, in one run.
//!
//! `prepare-api-keys` writes the keys (seeded, so a run can be repeated), the keymesh full bundle, the native
//! credential list and the wrk pools. `run-api-keys` measures, in this order:
//! 1. **Delivery and memory** at `--memory-concurrency` (default 2) workers, one Envoy at a time (nothing else
//!    competes for the CPU while it starts): the time from spawning Envoy until a request carrying the *last* key
//!    of the set is accepted (polled every 10 ms), then RSS after a warm-up under load. Variants: `none`,
//!    `api_key_auth`, `keymesh`, and `keymesh_0` (keymesh with an empty bundle, to separate the key set from the
//!    VM).
//! 2. **Throughput** at `--concurrency` (default 1): `none`, `api_key_auth` and `keymesh` run side by side,
//!    checked (valid key 200, unknown key 401), warmed up, then measured with wrk in interleaved repetitions, each
//!    rotating both the workload and the variant order, like the JWT run.

use crate::envoy::{self, ProxyPorts, UpstreamPorts};
use crate::http;
use crate::launch::{proxy_ports, Launcher};
use crate::machine::{self, Machine};
use crate::prepare::{now_secs, BENCH_AUDIENCE};
use crate::process::{
    self, clock_ticks_per_sec, cpu_ticks, free_port, rss_kib, PidFile, Process, Supervised,
};
use crate::stats::{pairwise_ratio, spread, Spread};
use crate::wrk::{self, WrkReport, WrkSettings, WrkTarget};
use anyhow::{bail, Context, Result};
use keymesh_core::apikey::{format_key, hash_key};
use keymesh_core::bundle::{ApiKeyChangesDto, ApiKeyDto, BundleDto};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The header both filters read the key from.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";
/// The wrk script of the API-key workloads.
pub(crate) const APIKEY_POOL_LUA: &str = include_str!("apikey_pool.lua");
/// Bundle paths on the upstream: the full set, and an empty bundle (keymesh with 0 keys).
pub(crate) const FULL_BUNDLE_PATH: &str = "/v1/bundle";
pub(crate) const EMPTY_BUNDLE_PATH: &str = "/v1/bundle-empty";
const BUNDLE_VERSION: u64 = 1;

/// One Envoy configuration of the API-key run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyVariant {
    /// Only the router.
    None,
    /// Envoy's native `api_key_auth`, every key inline.
    ApiKeyAuth,
    /// keymesh, route `credential: api_key`, the full bundle.
    Keymesh,
    /// keymesh with an empty bundle (memory baseline of the VM without keys).
    KeymeshEmpty,
}

impl KeyVariant {
    pub(crate) const THROUGHPUT: [KeyVariant; 3] = [
        KeyVariant::None,
        KeyVariant::ApiKeyAuth,
        KeyVariant::Keymesh,
    ];
    pub(crate) const MEMORY: [KeyVariant; 4] = [
        KeyVariant::None,
        KeyVariant::ApiKeyAuth,
        KeyVariant::Keymesh,
        KeyVariant::KeymeshEmpty,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyVariant::None => "none",
            KeyVariant::ApiKeyAuth => "api_key_auth",
            KeyVariant::Keymesh => "keymesh",
            KeyVariant::KeymeshEmpty => "keymesh_0",
        }
    }

    /// True when the variant holds the prepared key set (a valid key gets 200, an unknown one 401).
    fn holds_keys(self) -> bool {
        matches!(self, KeyVariant::ApiKeyAuth | KeyVariant::Keymesh)
    }
}

/// What wrk sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KeyCase {
    /// A different valid key per request, cycling through the pool.
    Valid,
    /// A different well-formed unknown key per request.
    Unknown,
}

impl KeyCase {
    pub(crate) const ALL: [KeyCase; 2] = [KeyCase::Valid, KeyCase::Unknown];

    pub(crate) fn name(self) -> &'static str {
        match self {
            KeyCase::Valid => "valid",
            KeyCase::Unknown => "unknown",
        }
    }

    pub(crate) fn pool_file(self) -> String {
        format!("keys/{}.txt", self.name())
    }

    fn expected(self, variant: KeyVariant) -> u16 {
        match (self, variant) {
            (KeyCase::Valid, _) | (KeyCase::Unknown, KeyVariant::None) => 200,
            (KeyCase::Unknown, _) => 401,
        }
    }
}

/// One measured cell of the throughput phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyCell {
    pub(crate) rep: usize,
    pub(crate) variant: KeyVariant,
    pub(crate) case: KeyCase,
}

/// The interleaved order: every repetition rotates the workloads and, within each, the variants; `none` runs only
/// the valid case (it forwards everything).
pub(crate) fn key_schedule(
    reps: usize,
    variants: &[KeyVariant],
    cases: &[KeyCase],
) -> Vec<KeyCell> {
    let mut cells = Vec::new();
    for rep in 0..reps {
        for case in rotated(cases, rep) {
            let here: Vec<KeyVariant> = variants
                .iter()
                .copied()
                .filter(|v| *v != KeyVariant::None || case == KeyCase::Valid)
                .collect();
            for variant in rotated(&here, rep) {
                cells.push(KeyCell { rep, variant, case });
            }
        }
    }
    cells
}

fn rotated<T: Copy>(items: &[T], by: usize) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let k = by % items.len();
    items[k..].iter().chain(&items[..k]).copied().collect()
}

// ---------------------------------------------------------------------------------------------------------------
// prepare

/// SplitMix64: a small seeded generator, enough for bench keys (they only need to be distinct and well formed).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn secret(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// `count` keymesh keys (`km_…`) from `seed`.
pub(crate) fn generate_keys(count: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    (0..count).map(|_| format_key(&rng.secret())).collect()
}

/// The keymesh full bundle holding `keys` (by hash), each valid for the bench audience with no scope.
pub(crate) fn bundle_json(keys: &[String], version: u64) -> Result<String> {
    let dto = BundleDto {
        version,
        since: None,
        issuers: vec![],
        api_keys: ApiKeyChangesDto {
            put: keys
                .iter()
                .enumerate()
                .map(|(i, key)| ApiKeyDto {
                    hash: hash_key(key),
                    id: format!("ak_bench{i}"),
                    owner: format!("bench-owner-{i}"),
                    resources: vec![BENCH_AUDIENCE.to_owned()],
                    scopes: vec![],
                    expires_at: None,
                })
                .collect(),
            delete: vec![],
        },
        revoked_tokens: vec![],
    };
    Ok(serde_json::to_string(&dto)?)
}

/// The native `api_key_auth` credential list: `[{key, client}]`.
pub(crate) fn native_credentials(keys: &[String]) -> Value {
    Value::Array(
        keys.iter()
            .enumerate()
            .map(|(i, key)| json!({"key": key, "client": format!("bench-client-{i}")}))
            .collect(),
    )
}

/// What `prepare-api-keys` wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyManifest {
    pub(crate) keys: usize,
    pub(crate) pool: usize,
    pub(crate) seed: u64,
    pub(crate) bundle_bytes: u64,
    pub(crate) native_config_bytes: u64,
    pub(crate) created_at: u64,
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn lines(items: &[String]) -> String {
    let mut text = items.join("\n");
    text.push('\n');
    text
}

/// Writes `bundle.json` (keymesh), `bundle-empty.json`, `credentials.json` (native), the pools `keys/valid.txt`
/// (the first `pool` keys) and `keys/unknown.txt` (as many well-formed keys that are not in the set), `last.txt`
/// (the last key of the set, for the delivery poll), the wrk script and `manifest.json`.
pub(crate) fn prepare(out: &Path, keys: usize, pool: usize, seed: u64) -> Result<KeyManifest> {
    if keys == 0 || pool == 0 {
        bail!("--keys and --pool must be at least 1");
    }
    std::fs::create_dir_all(out.join("keys"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let set = generate_keys(keys, seed);
    let unknown = generate_keys(pool, seed ^ 0x005E_ED0F_0DD0_BEEF);
    let known: std::collections::HashSet<&String> = set.iter().collect();
    if unknown.iter().any(|k| known.contains(k)) {
        bail!("an unknown key collides with the set: pick another --seed");
    }
    let bundle = bundle_json(&set, BUNDLE_VERSION)?;
    write(&out.join("bundle.json"), &bundle)?;
    write(
        &out.join("bundle-empty.json"),
        &bundle_json(&[], BUNDLE_VERSION)?,
    )?;
    let native = native_credentials(&set).to_string();
    write(&out.join("credentials.json"), &native)?;
    let pool_keys = &set[..pool.min(keys)];
    write(&out.join(KeyCase::Valid.pool_file()), &lines(pool_keys))?;
    write(&out.join(KeyCase::Unknown.pool_file()), &lines(&unknown))?;
    write(&out.join("last.txt"), set.last().map_or("", String::as_str))?;
    write(&out.join("apikey_pool.lua"), APIKEY_POOL_LUA)?;
    let manifest = KeyManifest {
        keys,
        pool: pool_keys.len(),
        seed,
        bundle_bytes: bundle.len() as u64,
        native_config_bytes: native.len() as u64,
        created_at: now_secs(),
    };
    write(
        &out.join("manifest.json"),
        &serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

// ---------------------------------------------------------------------------------------------------------------
// Envoy configs

/// The keymesh filter configuration of the API-key run: one route taking API keys only, for the bench audience.
pub(crate) fn keymesh_filter_config(bundle_path: &str) -> String {
    json!({
        "sidecar": {"cluster": "keymesh_sidecar", "path": bundle_path, "refresh_interval_ms": 1000,
                    "timeout_ms": 30000},
        "routes": [{"prefix": "/", "audience": BENCH_AUDIENCE, "credential": "api_key"}],
        "forward_token": true,
    })
    .to_string()
}

fn keymesh_filter(wasm: &Path, bundle_path: &str) -> Value {
    json!({"name": "keymesh.authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": "keymesh_authn_bench",
            "root_id": "keymesh_authn",
            "vm_config": {
                "vm_id": "keymesh",
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": wasm.display().to_string()}},
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": keymesh_filter_config(bundle_path),
            },
        },
    }})
}

/// Envoy's native `api_key_auth` with `credentials` inline, the key read from `x-api-key`.
pub(crate) fn api_key_auth_filter(credentials: Value) -> Value {
    json!({"name": "envoy.filters.http.api_key_auth", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
        "credentials": credentials,
        "key_sources": [{"header": API_KEY_HEADER}],
    }})
}

/// The proxy bootstrap of `variant`: the JWT run's listener and cluster settings, a different filter.
pub(crate) fn key_proxy_bootstrap(
    variant: KeyVariant,
    ports: ProxyPorts,
    upstream: UpstreamPorts,
    wasm: &Path,
    credentials: &Value,
) -> Value {
    let mut filters = match variant {
        KeyVariant::None => vec![],
        KeyVariant::ApiKeyAuth => vec![api_key_auth_filter(credentials.clone())],
        KeyVariant::Keymesh => vec![keymesh_filter(wasm, FULL_BUNDLE_PATH)],
        KeyVariant::KeymeshEmpty => vec![keymesh_filter(wasm, EMPTY_BUNDLE_PATH)],
    };
    filters.push(envoy::router());
    let routes = json!({"virtual_hosts": [{"name": "bench", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}
    ]}]});
    let mut clusters = vec![envoy::static_cluster("upstream", upstream.app)];
    if matches!(variant, KeyVariant::Keymesh | KeyVariant::KeymeshEmpty) {
        clusters.push(envoy::static_cluster("keymesh_sidecar", upstream.bundle));
    }
    json!({
        "admin": envoy::admin(ports.admin),
        "static_resources": {
            "listeners": [envoy::listener("bench", ports.listen, routes, filters)],
            "clusters": clusters,
        },
    })
}

/// The upstream: app answers, and the full and empty bundles read from files (`direct_response` `filename`, so the
/// large bundle is not escaped into the bootstrap), each with its `ETag` and 304 to `If-None-Match` of it.
pub(crate) fn key_upstream_bootstrap(
    ports: UpstreamPorts,
    full: &Path,
    empty: &Path,
    max_body: u64,
) -> Value {
    let app_routes = json!({"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
    ]}]});
    let etag = format!("\"{BUNDLE_VERSION}\"");
    let mut routes = Vec::new();
    for (path, file) in [(EMPTY_BUNDLE_PATH, empty), (FULL_BUNDLE_PATH, full)] {
        routes.push(json!({"match": {"path": path, "headers": [
            {"name": "if-none-match", "string_match": {"exact": etag}}]},
            "direct_response": {"status": 304}}));
        routes.push(json!({"match": {"path": path},
            "direct_response": {"status": 200, "body": {"filename": file.display().to_string()}},
            "response_headers_to_add": [
                {"header": {"key": "etag", "value": etag}},
                {"header": {"key": "content-type", "value": "application/json"}}]}));
    }
    let bundle_routes = json!({
        "max_direct_response_body_size_bytes": max_body.max(1_048_576),
        "virtual_hosts": [{"name": "bundle", "domains": ["*"], "routes": routes}],
    });
    json!({
        "admin": envoy::admin(ports.admin),
        "static_resources": {"listeners": [
            envoy::listener("app", ports.app, app_routes, vec![envoy::router()]),
            envoy::listener("bundle", ports.bundle, bundle_routes, vec![envoy::router()]),
        ]},
    })
}

// ---------------------------------------------------------------------------------------------------------------
// run

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

/// One measured cell.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyCellResult {
    pub(crate) rep: usize,
    pub(crate) variant: KeyVariant,
    pub(crate) case: KeyCase,
    pub(crate) cpu_us_per_req: f64,
    pub(crate) envoy_cpu_share: f64,
    pub(crate) rss_end_kib: u64,
    pub(crate) counters: BTreeMap<String, u64>,
    pub(crate) wrk: WrkReport,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeySummary {
    pub(crate) variant: KeyVariant,
    pub(crate) case: KeyCase,
    pub(crate) rps: Option<Spread>,
    pub(crate) p50_us: Option<Spread>,
    pub(crate) p99_us: Option<Spread>,
    pub(crate) cpu_us_per_req: Option<Spread>,
    pub(crate) rss_end_kib: Option<Spread>,
}

/// keymesh / api_key_auth, pair by pair (same repetition, same case).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KeyRatio {
    pub(crate) case: KeyCase,
    pub(crate) rps: Option<Spread>,
    pub(crate) p50: Option<Spread>,
    pub(crate) p99: Option<Spread>,
    pub(crate) cpu_per_req: Option<Spread>,
}

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

fn first_line(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("{} is empty", path.display()))
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

    fn spawn(
        &self,
        variant: KeyVariant,
        concurrency: u32,
        tag: &str,
    ) -> Result<(KeyProxy, Instant)> {
        let (config, ports) = self.config(variant, tag)?;
        let mut cmd = Command::new(&self.launcher.envoy);
        cmd.arg("-c")
            .arg(&config)
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--disable-hot-restart", "-l", "info"]);
        let started = Instant::now();
        let process = process::start(
            &format!("envoy-apikeys-{}{tag}", variant.name()),
            &self.launcher.work,
            cmd,
            &self.launcher.pids,
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

    fn wrk(&self, duration: Duration, case: KeyCase, port: u16, log: &str) -> Result<WrkReport> {
        let pool = self.opts.data.join(case.pool_file());
        let target = WrkTarget {
            script: &self.script,
            pool: &pool,
            port,
        };
        let (report, _) = wrk::run(
            &self.opts.wrk,
            duration,
            target,
            &self.launcher.work,
            log,
            &self.launcher.pids,
        )?;
        Ok(report)
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

    fn measure(&self, proxy: &mut KeyProxy, cell: KeyCell) -> Result<KeyCellResult> {
        if !self.opts.cell_warmup.is_zero() {
            self.wrk(
                self.opts.cell_warmup,
                cell.case,
                proxy.listen,
                "wrk-apikeys-warmup",
            )?;
        }
        proxy.process.ensure_running()?;
        let pid = proxy.process.pid();
        let before = crate::run::filter_counters(proxy.admin, "api_key_auth")?;
        let cpu_before = cpu_ticks(pid)?;
        let log = format!(
            "wrk-apikeys-r{}-{}-{}",
            cell.rep,
            cell.variant.name(),
            cell.case.name()
        );
        let report = self.wrk(self.opts.duration, cell.case, proxy.listen, &log)?;
        let cpu_after = cpu_ticks(pid)?;
        let rss_end_kib = rss_kib(pid)?;
        let after = crate::run::filter_counters(proxy.admin, "api_key_auth")?;
        let deltas: BTreeMap<String, u64> = after
            .iter()
            .filter_map(|(k, &v)| {
                let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
                (d > 0).then(|| (k.clone(), d))
            })
            .collect();
        let expected = cell.case.expected(cell.variant);
        let wrong = if expected == 200 {
            report.non_2xx
        } else {
            report.requests - report.non_2xx.min(report.requests)
        };
        if wrong > 0 || report.requests == 0 {
            bail!(
                "{} under {}: {wrong} of {} responses were not {expected} (see {}/{log}.log and {})",
                cell.variant.name(),
                cell.case.name(),
                report.requests,
                self.launcher.work.display(),
                proxy.process.log_path().display()
            );
        }
        let cpu_secs = (cpu_after - cpu_before) as f64 / self.ticks_per_sec as f64;
        Ok(KeyCellResult {
            rep: cell.rep,
            variant: cell.variant,
            case: cell.case,
            cpu_us_per_req: cpu_secs * 1e6 / report.requests as f64,
            envoy_cpu_share: cpu_secs / report.duration_secs,
            rss_end_kib,
            counters: deltas,
            wrk: report,
        })
    }
}

pub(crate) fn load_key_manifest(data: &Path) -> Result<KeyManifest> {
    let path = data.join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: run `keymesh-bench prepare-api-keys --out {}` first",
            path.display(),
            data.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("bad {}", path.display()))
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
    let config = ctx.launcher.write(
        "envoy-apikeys-upstream",
        &key_upstream_bootstrap(upstream, &full, &empty, manifest.bundle_bytes + 1024),
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
        "[api-keys] {} keys; bundle {} bytes, native credentials {} bytes",
        manifest.keys, manifest.bundle_bytes, manifest.native_config_bytes
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
            cell.case.name(),
            r.wrk.rps,
            r.wrk.p50_us,
            r.wrk.p99_us,
            r.cpu_us_per_req
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

// ---------------------------------------------------------------------------------------------------------------
// report

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
            let of = |f: fn(&KeyCellResult) -> f64| {
                spread(&mine.iter().map(|c| f(c)).collect::<Vec<_>>())
            };
            out.push(KeySummary {
                variant,
                case,
                rps: of(|c| c.wrk.rps),
                p50_us: of(|c| c.wrk.p50_us),
                p99_us: of(|c| c.wrk.p99_us),
                cpu_us_per_req: of(|c| c.cpu_us_per_req),
                rss_end_kib: of(|c| c.rss_end_kib as f64),
            });
        }
    }
    out
}

pub(crate) fn ratios(cells: &[KeyCellResult]) -> Vec<KeyRatio> {
    let mut out = Vec::new();
    for case in KeyCase::ALL {
        let pairs: Vec<(&KeyCellResult, &KeyCellResult)> = cells
            .iter()
            .filter(|c| c.variant == KeyVariant::Keymesh && c.case == case)
            .filter_map(|k| {
                cells
                    .iter()
                    .find(|n| {
                        n.variant == KeyVariant::ApiKeyAuth && n.case == case && n.rep == k.rep
                    })
                    .map(|n| (k, n))
            })
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let of = |f: fn(&KeyCellResult) -> f64| {
            pairwise_ratio(&pairs.iter().map(|(k, n)| (f(k), f(n))).collect::<Vec<_>>())
        };
        out.push(KeyRatio {
            case,
            rps: of(|c| c.wrk.rps),
            p50: of(|c| c.wrk.p50_us),
            p99: of(|c| c.wrk.p99_us),
            cpu_per_req: of(|c| c.cpu_us_per_req),
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
        for s in &self.summary {
            let _ = writeln!(
                md,
                "| {} | `{}` | {} | {} | {} | {} | {} |",
                s.case.name(),
                s.variant.name(),
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
                fmt_spread(r.rps, 2),
                fmt_spread(r.p50, 2),
                fmt_spread(r.p99, 2),
                fmt_spread(r.cpu_per_req, 2)
            );
        }
        let mut checks = BTreeMap::<String, u64>::new();
        for c in &self.cells {
            for (k, v) in &c.counters {
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

#[cfg(test)]
mod tests {
    use super::*;
    use keymesh_core::apikey::is_well_formed;
    use keymesh_core::KeySet;

    #[test]
    fn keys_are_seeded_distinct_and_well_formed() {
        let a = generate_keys(200, 7);
        assert_eq!(a, generate_keys(200, 7));
        assert_ne!(a, generate_keys(200, 8));
        assert!(a.iter().all(|k| is_well_formed(k)));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 200);
    }

    #[test]
    fn bundle_holds_the_hashes_for_the_bench_audience_and_parses() {
        let keys = generate_keys(3, 1);
        let text = bundle_json(&keys, 1).unwrap();
        assert!(
            !keys.iter().any(|k| text.contains(k.as_str())),
            "a key leaked into the bundle"
        );
        let dto: BundleDto = serde_json::from_str(&text).unwrap();
        assert_eq!(dto.api_keys.put.len(), 3);
        assert_eq!(dto.api_keys.put[2].hash, hash_key(&keys[2]));
        assert_eq!(dto.api_keys.put[0].resources, [BENCH_AUDIENCE]);
        assert!(dto.api_keys.put[0].scopes.is_empty());
        assert!(dto.since.is_none());
        KeySet::parse_bundle(text.as_bytes()).unwrap();
        keymesh_core::FilterConfig::parse(keymesh_filter_config(FULL_BUNDLE_PATH).as_bytes())
            .unwrap();
    }

    #[test]
    fn native_config_lists_every_key_with_a_client() {
        let keys = generate_keys(2, 1);
        let filter = api_key_auth_filter(native_credentials(&keys));
        let config = &filter["typed_config"];
        assert_eq!(
            config["@type"],
            "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth"
        );
        assert_eq!(config["credentials"][1]["key"], keys[1].as_str());
        assert_eq!(config["credentials"][1]["client"], "bench-client-1");
        assert_eq!(config["key_sources"][0]["header"], "x-api-key");
    }

    #[test]
    fn proxies_differ_only_in_the_filter_and_keymesh_uses_its_bundle_path() {
        let ports = ProxyPorts {
            listen: 1,
            admin: 2,
        };
        let up = UpstreamPorts {
            app: 3,
            bundle: 4,
            admin: 5,
        };
        let creds = native_credentials(&generate_keys(1, 1));
        let names = |v| {
            let b = key_proxy_bootstrap(v, ports, up, Path::new("/m.wasm"), &creds);
            b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
                ["http_filters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(KeyVariant::None), ["envoy.filters.http.router"]);
        assert_eq!(
            names(KeyVariant::ApiKeyAuth),
            [
                "envoy.filters.http.api_key_auth",
                "envoy.filters.http.router"
            ]
        );
        for (v, path) in [
            (KeyVariant::Keymesh, FULL_BUNDLE_PATH),
            (KeyVariant::KeymeshEmpty, EMPTY_BUNDLE_PATH),
        ] {
            let b = key_proxy_bootstrap(v, ports, up, Path::new("/m.wasm"), &creds);
            let text = b.to_string();
            assert!(text.contains("keymesh_sidecar"));
            let cfg = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["http_filters"][0]["typed_config"]["config"]["configuration"]
                ["value"];
            let cfg: Value = serde_json::from_str(cfg.as_str().unwrap()).unwrap();
            assert_eq!(cfg["sidecar"]["path"], path);
            assert_eq!(cfg["routes"][0]["credential"], "api_key");
        }
    }

    #[test]
    fn upstream_serves_both_bundles_from_files_with_a_large_enough_limit() {
        let b = key_upstream_bootstrap(
            UpstreamPorts {
                app: 1,
                bundle: 2,
                admin: 3,
            },
            Path::new("/d/bundle.json"),
            Path::new("/d/bundle-empty.json"),
            20_000_000,
        );
        let text = b.to_string();
        assert!(text.contains("/d/bundle.json") && text.contains("/d/bundle-empty.json"));
        let rc = &b["static_resources"]["listeners"][1]["filter_chains"][0]["filters"][0]
            ["typed_config"]["route_config"];
        assert_eq!(rc["max_direct_response_body_size_bytes"], 20_000_000);
        // The empty bundle's route comes first: `/v1/bundle` is an exact path, but keep the specific one first.
        assert_eq!(
            rc["virtual_hosts"][0]["routes"].as_array().unwrap().len(),
            4
        );
    }

    #[test]
    fn schedule_rotates_and_runs_none_only_on_valid_keys() {
        let cells = key_schedule(2, &KeyVariant::THROUGHPUT, &KeyCase::ALL);
        assert_eq!(cells.len(), 2 * (3 + 2));
        assert!(!cells
            .iter()
            .any(|c| c.variant == KeyVariant::None && c.case == KeyCase::Unknown));
        assert_eq!(cells[0].case, KeyCase::Valid);
        assert_eq!(cells[5].case, KeyCase::Unknown);
        assert_eq!(cells[0].variant, KeyVariant::None);
        assert_eq!(cells[5].variant, KeyVariant::Keymesh);
    }

    #[test]
    fn prepare_writes_pools_and_a_parseable_bundle() {
        let dir = std::env::temp_dir().join(format!("keymesh-bench-keys-{}", std::process::id()));
        let m = prepare(&dir, 5, 3, 9).unwrap();
        assert_eq!((m.keys, m.pool), (5, 3));
        let valid = std::fs::read_to_string(dir.join("keys/valid.txt")).unwrap();
        let unknown = std::fs::read_to_string(dir.join("keys/unknown.txt")).unwrap();
        assert_eq!(valid.lines().count(), 3);
        assert_eq!(unknown.lines().count(), 3);
        let all = generate_keys(5, 9);
        assert_eq!(
            std::fs::read_to_string(dir.join("last.txt")).unwrap(),
            all[4]
        );
        assert!(unknown.lines().all(|k| !all.iter().any(|a| a == k)));
        let (keys, _) =
            KeySet::parse_bundle(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
        let _ = keys;
        assert_eq!(load_key_manifest(&dir).unwrap().keys, 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
