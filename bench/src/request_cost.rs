//! `keymesh-bench request-cost`: what one request costs keymesh, counted rather than timed. The compiled modules run
//! in the wasmtime host (`keymesh-wasm-host`, which answers host calls as Envoy 1.40 does) with fuel on, and each
//! case's request is booked: wasm instructions per callback, and every host call with the bytes it copied and the
//! allocations it made in the VM. Unlike Envoy CPU time on a shared machine, these figures are the same on every
//! run, so a change of a few hundred instructions shows.
//!
//! The configuration, bundle and tokens are the Envoy bench's (`crate::envoy`, `crate::prepare`), so the figures
//! speak to the same work. Only the callbacks Envoy enters are counted: for keymesh, those its
//! `capability_restriction_config` allows; for the floors, every one they export (the bench runs them unrestricted).

use crate::capabilities::KEYMESH_CAPABILITIES;
use crate::envoy::{
    keymesh_api_key_filter_config, keymesh_filter_config, API_KEY_HEADER, FULL_BUNDLE_PATH,
    TOKEN_IDENTITY_HEADERS,
};
use crate::prepare::{api_key_bundle_json, bench_claims, generate_keys, BENCH_AUDIENCE};
use anyhow::{anyhow, bail, Result};
use keymesh_testkit::{fixture, tamper_signature, Alg, NOW};
use keymesh_wasm_host::{
    build_filter, FilterModule, HostError, HttpResponse, Ledger, LogLevel, Vm,
};
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

const SIDECAR: &str = "keymesh_sidecar";

/// Which filter configuration a case runs with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// The token bench's, plus an `/admin` route requiring a scope the bench tokens lack (for the 403 case).
    Tokens,
    /// The API-key bench's, with `keys` keys loaded.
    ApiKeys,
}

/// One measured request.
struct Case {
    name: String,
    setup: Setup,
    path: &'static str,
    /// The credential header, if any.
    credential: Option<(&'static str, String)>,
    /// The request sent once before the measured one, on the same VM, so that what is done once per worker
    /// (metric definitions, the first read of the delivery record) is not booked to the case.
    warm: Warm,
    status: u16,
}

/// The warm-up request of a case.
enum Warm {
    /// The same request (for a token: its verdict is then cached).
    Same,
    /// The same path with this credential instead.
    Other(Option<(&'static str, String)>),
}

/// What a case cost one module.
pub(crate) struct CaseCost {
    pub(crate) case: String,
    pub(crate) status: u16,
    pub(crate) ledger: Ledger,
    /// The callbacks counted (those Envoy enters for this module).
    pub(crate) entered: Vec<&'static str>,
}

impl CaseCost {
    /// Wasm instructions of the callbacks Envoy enters.
    pub(crate) fn instructions(&self) -> u64 {
        self.ledger
            .entries
            .iter()
            .filter(|e| self.entered.contains(&e.export))
            .map(|e| e.instructions)
            .sum()
    }
}

fn token_cases() -> Vec<Case> {
    let fx = fixture();
    let (iat, exp) = (nonneg(NOW - 60), nonneg(NOW + 30 * 86_400));
    let token = |alg: Alg| fx.token(alg, &bench_claims(alg, "cached", iat, exp));
    let bearer = |t: String| Some(("authorization", format!("Bearer {t}")));
    let reused = |alg: Alg, label: &str| Case {
        name: format!("reused token {label} (cache hit)"),
        setup: Setup::Tokens,
        path: "/",
        credential: bearer(token(alg)),
        warm: Warm::Same,
        status: 200,
    };
    let bad = tamper_signature(&token(Alg::EdDsa));
    vec![
        reused(Alg::EdDsa, "EdDSA"),
        reused(Alg::Es256, "ES256"),
        reused(Alg::Rs256, "RS256"),
        Case {
            name: "no token (401)".into(),
            setup: Setup::Tokens,
            path: "/",
            credential: None,
            warm: Warm::Same,
            status: 401,
        },
        Case {
            name: "bad signature EdDSA, seen before (401)".into(),
            setup: Setup::Tokens,
            path: "/",
            credential: bearer(bad.clone()),
            warm: Warm::Same,
            status: 401,
        },
        Case {
            name: "bad signature EdDSA, first time (401)".into(),
            setup: Setup::Tokens,
            path: "/",
            credential: bearer(bad),
            // Another bad signature: the denial counter is defined, this token's verdict is not cached.
            warm: Warm::Other(bearer(tamper_signature(&token(Alg::Es256)))),
            status: 401,
        },
        Case {
            name: "insufficient scope, reused EdDSA token (403)".into(),
            setup: Setup::Tokens,
            path: "/admin",
            credential: bearer(token(Alg::EdDsa)),
            warm: Warm::Same,
            status: 403,
        },
    ]
}

fn key_cases(keys: &[String]) -> Result<Vec<Case>> {
    let valid = keys
        .first()
        .ok_or_else(|| anyhow!("--keys must be at least 1"))?;
    let unknown = generate_keys(1, u64::MAX)
        .pop()
        .ok_or_else(|| anyhow!("no unknown key"))?;
    let key_case = |name: &str, key: &str, status| Case {
        name: name.into(),
        setup: Setup::ApiKeys,
        path: "/",
        credential: Some((API_KEY_HEADER, key.to_owned())),
        warm: Warm::Same,
        status,
    };
    Ok(vec![
        key_case("valid API key", valid, 200),
        key_case("unknown API key (401)", &unknown, 401),
    ])
}

fn nonneg(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0)
}

/// The filter configuration of `setup`.
fn config(setup: Setup) -> Result<String> {
    Ok(match setup {
        Setup::Tokens => {
            let mut config: serde_json::Value =
                serde_json::from_str(&keymesh_filter_config(true, Some(TOKEN_IDENTITY_HEADERS)))?;
            let routes = config["routes"]
                .as_array_mut()
                .ok_or_else(|| anyhow!("bench config has no routes"))?;
            routes.insert(
                0,
                json!({"prefix": "/admin", "audience": BENCH_AUDIENCE, "scopes": ["bench:admin"]}),
            );
            config.to_string()
        }
        Setup::ApiKeys => keymesh_api_key_filter_config(FULL_BUNDLE_PATH, 10_000),
    })
}

/// A keymesh VM holding the bundle of `setup`.
fn keymesh_vm(module: &FilterModule, setup: Setup, bundle: &str) -> Result<Vm> {
    let mut vm = module
        .vm()
        .root_id("keymesh_authn")
        .vm_id("keymesh")
        .cluster(SIDECAR)
        .plugin_configuration(config(setup)?)
        .property(&["xds", "node", "id"], "bench")
        .start_time(UNIX_EPOCH + Duration::from_secs(nonneg(NOW)))
        // Envoy's default: what the filter takes on configure decides which lines it formats.
        .log_level(LogLevel::Info)
        .build()?;
    vm.start()?;
    vm.advance_time(vm.tick_period().unwrap_or(Duration::from_millis(200)))?;
    let call = vm.next_http_call(SIDECAR)?;
    vm.respond_to_http_call(call.token, HttpResponse::new(200).body(bundle.to_owned()))?;
    Ok(vm)
}

/// Sends `case`'s request once, as Envoy would for a request wrk sends, and returns its status.
fn send(vm: &mut Vm, case: &Case) -> Result<u16, HostError> {
    let mut headers = vec![
        (":authority", "127.0.0.1:10000"),
        (":path", case.path),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "5d3c8e0e-5a8e-4b8e-9a55-0d4f4c3b8a11"),
    ];
    if let Some((name, value)) = &case.credential {
        headers.push((name, value));
    }
    let mut stream = vm.new_http_stream()?;
    stream.on_request_headers(&headers, true)?;
    let status = match stream.take_local_response() {
        Some(local) => local.status_code,
        None => {
            stream.on_response_headers(&[(":status", "200"), ("content-length", "2")], false)?;
            stream.on_response_body(b"ok", true)?;
            200
        }
    };
    stream.finish()?;
    Ok(status)
}

/// Books `case` on a fresh VM of `module` (keymesh when `keymesh`, else a floor that ignores the configuration).
fn measure(module: &FilterModule, keymesh: bool, case: &Case, bundle: &str) -> Result<CaseCost> {
    let mut vm = if keymesh {
        keymesh_vm(module, case.setup, bundle)?
    } else {
        let mut vm = module.vm().log_level(LogLevel::Info).build()?;
        vm.start()?;
        vm
    };
    match &case.warm {
        Warm::Same => send(&mut vm, case)?,
        Warm::Other(credential) => send(
            &mut vm,
            &Case {
                credential: credential.clone(),
                warm: Warm::Same,
                name: case.name.clone(),
                ..*case
            },
        )?,
    };
    vm.take_ledger();
    let status = send(&mut vm, case)?;
    let ledger = vm
        .take_ledger()
        .ok_or_else(|| anyhow!("{} is not metered", module.name()))?;
    if keymesh && status != case.status {
        bail!("{}: answered {status}, expected {}", case.name, case.status);
    }
    for call in vm.pending_http_calls() {
        vm.respond_to_http_call(call.token, HttpResponse::new(304))?;
    }
    vm.finish()?;
    let entered = if keymesh {
        KEYMESH_CAPABILITIES
            .iter()
            .copied()
            .filter(|c| c.starts_with("proxy_on_"))
            .collect()
    } else {
        ledger.entries.iter().map(|e| e.export).collect()
    };
    Ok(CaseCost {
        case: case.name.clone(),
        status,
        ledger,
        entered,
    })
}

/// Every case for the keymesh module at `wasm`; the floors get the reused-EdDSA request only (they forward
/// everything).
pub(crate) fn keymesh_costs(wasm: &FilterModule, keys: usize) -> Result<Vec<CaseCost>> {
    let keys = generate_keys(keys, 1);
    let token_bundle = fixture().bundle(1);
    let key_bundle = api_key_bundle_json(&keys, 1)?;
    let mut costs = Vec::new();
    for case in token_cases().into_iter().chain(key_cases(&keys)?) {
        let bundle = match case.setup {
            Setup::Tokens => &token_bundle,
            Setup::ApiKeys => &key_bundle,
        };
        costs.push(measure(wasm, true, &case, bundle)?);
    }
    Ok(costs)
}

/// The reused-EdDSA request through a floor module.
pub(crate) fn floor_cost(floor: &FilterModule) -> Result<CaseCost> {
    let case = token_cases()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no token case"))?;
    measure(floor, false, &case, "")
}

/// `keymesh-bench request-cost`.
#[derive(clap::Args)]
pub(crate) struct RequestCostArgs {
    /// The keymesh module [default: built from this workspace, release].
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Another keymesh module to compare with (e.g. built from main), printed side by side.
    #[arg(long)]
    base_wasm: Option<PathBuf>,
    /// API keys in the bundle of the API-key cases.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Also list every host call of every case.
    #[arg(long)]
    detail: bool,
}

fn load(path: Option<PathBuf>, package: &str) -> Result<FilterModule> {
    let path = match path {
        Some(path) => path,
        None => build_filter(package)?,
    };
    Ok(FilterModule::load_metered(path)?)
}

pub(crate) fn run(args: RequestCostArgs) -> Result<()> {
    let keymesh = load(args.wasm, "keymesh-authn")?;
    let empty_min = floor_cost(&load(None, "keymesh-bench-empty-min")?)?;
    let empty_sdk = floor_cost(&load(None, "keymesh-bench-empty-sdk")?)?;
    let now = keymesh_costs(&keymesh, args.keys)?;
    let base = match args.base_wasm {
        Some(path) => Some(keymesh_costs(
            &FilterModule::load_metered(path)?,
            args.keys,
        )?),
        None => None,
    };
    print!(
        "{}",
        render(&now, base.as_deref(), &empty_min, &empty_sdk, args.detail)
    );
    Ok(())
}

/// The report: one row per case, then (with `detail`) each case's host calls.
pub(crate) fn render(
    now: &[CaseCost],
    base: Option<&[CaseCost]>,
    empty_min: &CaseCost,
    empty_sdk: &CaseCost,
    detail: bool,
) -> String {
    let mut out = String::new();
    let floor = empty_min.instructions();
    let _ = writeln!(
        out,
        "Floors (one request, every callback they export): empty_min {} instructions, {} host calls; \
         empty_sdk {} instructions, {} host calls.\n",
        floor,
        empty_min.ledger.host_call_count(),
        empty_sdk.instructions(),
        empty_sdk.ledger.host_call_count(),
    );
    let base_header = if base.is_some() {
        " base instr. | change |"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "| case | status | wasm instr. | above empty_min | request_headers | context_create + delete | host calls | bytes in / out | allocs by host |{base_header}"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|{}",
        if base.is_some() { "---:|---:|" } else { "" }
    );
    for (i, cost) in now.iter().chain([empty_min, empty_sdk]).enumerate() {
        let totals = cost.ledger.host_call_totals();
        let instructions = cost.instructions();
        let name = match i.checked_sub(now.len()) {
            Some(0) => "`empty_min`, same request".to_owned(),
            Some(_) => "`empty_sdk`, same request".to_owned(),
            None => cost.case.clone(),
        };
        let _ = write!(
            out,
            "| {name} | {} | {instructions} | {} | {} | {} | {} | {} / {} | {} |",
            cost.status,
            i64::try_from(instructions).unwrap_or(i64::MAX) - i64::try_from(floor).unwrap_or(0),
            cost.ledger.instructions_in("proxy_on_request_headers"),
            cost.ledger.instructions_in("proxy_on_context_create")
                + cost.ledger.instructions_in("proxy_on_delete"),
            totals.calls,
            totals.bytes_in,
            totals.bytes_out,
            totals.allocations,
        );
        if let Some(base) = base {
            let base = if i < now.len() { base } else { &[] };
            match base.iter().find(|b| b.case == cost.case) {
                Some(b) => {
                    let before = b.instructions();
                    let change = (instructions as f64 / before.max(1) as f64 - 1.0) * 100.0;
                    let _ = write!(out, " {before} | {change:+.0} % |");
                }
                None => out.push_str(" | |"),
            }
        }
        out.push('\n');
    }
    if detail {
        for cost in now.iter().chain([empty_min, empty_sdk]) {
            let _ = writeln!(out, "\n{} ({}):", cost.case, cost.status);
            for (index, entry) in cost.ledger.entries.iter().enumerate() {
                let counted = if cost.entered.contains(&entry.export) {
                    ""
                } else {
                    " (not entered by Envoy)"
                };
                let _ = writeln!(
                    out,
                    "  enter {:<28} {:>9} instr.{counted}",
                    entry.export, entry.instructions
                );
                for mark in cost.ledger.timeline.iter().filter(|m| m.entry == index) {
                    let _ = writeln!(out, "        at {:>9}: {}", mark.at_instruction, mark.name);
                }
            }
            for (name, call) in &cost.ledger.host_calls {
                let _ = writeln!(
                    out,
                    "  call  {name:<36} ×{:<2} in {:>5} B, out {:>5} B, {} allocs ({} instr.)",
                    call.calls,
                    call.bytes_in,
                    call.bytes_out,
                    call.allocations,
                    call.allocation_instructions
                );
            }
        }
    }
    out
}
