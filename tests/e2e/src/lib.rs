//! Support for keymesh's end-to-end tests: build the real artifacts, start real processes on free ports, talk
//! HTTP to them, and clean everything up — dumping every log when a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

mod fault_proxy;
mod http;
mod idp;
mod redis_cluster;
mod stack;
mod wrk;

pub use fault_proxy::{Fault, FaultProxy};
pub use http::{request, Response};
pub use idp::TestIdp;
pub use keymesh_test_support::{
    basic, bearer, form_urlencode, free_port, wait_for, Process, RedisServer,
};
pub use redis_cluster::{ClusterNode, RedisCluster};
pub use stack::{EnvoyPorts, Stack, StackPorts, ADMIN_TOKEN};
pub use wrk::{measure_token_requests, TokenLoad};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from)
}

fn cargo(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(status.success(), "cargo {} failed", args.join(" "));
}

/// The sidecar binary, freshly built (once per test binary). Tests use a debug build; benchmarks (examples run
/// with `--release`) get a release build, so their figures are not those of unoptimised code.
pub fn sidecar_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if cfg!(debug_assertions) {
            cargo(&["build", "-q", "-p", "keymesh"]);
            target_dir().join("debug/keymesh")
        } else {
            cargo(&["build", "-q", "--release", "-p", "keymesh"]);
            target_dir().join("release/keymesh")
        }
    })
}

/// The authn filter module, freshly built in release (once per test binary).
pub fn authn_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        cargo(&[
            "build",
            "-q",
            "--release",
            "--target",
            "wasm32-wasip1",
            "-p",
            "keymesh-authn",
        ]);
        target_dir().join("wasm32-wasip1/release/keymesh_authn.wasm")
    })
}

/// The egress filter module, freshly built in release (once per test binary).
pub fn egress_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        cargo(&[
            "build",
            "-q",
            "--release",
            "--target",
            "wasm32-wasip1",
            "-p",
            "keymesh-egress",
        ]);
        target_dir().join("wasm32-wasip1/release/keymesh_egress.wasm")
    })
}

/// The `@keymesh/verify` Node package directory, freshly built by `scripts/build-node.sh` (once per test
/// binary).
pub fn node_package() -> &'static Path {
    static PKG: OnceLock<PathBuf> = OnceLock::new();
    PKG.get_or_init(|| {
        let status = Command::new(workspace().join("scripts/build-node.sh"))
            .current_dir(workspace())
            .status()
            .unwrap();
        assert!(status.success(), "scripts/build-node.sh failed");
        workspace().join("filters/node/pkg")
    })
}

/// The Envoy binary: `$KEYMESH_ENVOY`, else `.venv/bin/envoy` (installed by scripts/setup.sh).
pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("KEYMESH_ENVOY")
        .map_or_else(|| workspace().join(".venv/bin/envoy"), PathBuf::from);
    assert!(
        path.exists(),
        "no Envoy at {}: run scripts/setup.sh (or set KEYMESH_ENVOY)",
        path.display()
    );
    path
}
