//! [`build_filter`] and [`build_filter_at`]: build a filter crate's release `.wasm` once per test
//! binary.

use crate::error::HostError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The rustc target filters are built for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// Builds package `package` of the workspace containing the current directory (cargo runs tests
/// from the package directory) and returns the `.wasm` path; see [`build_filter_at`] for a crate
/// anywhere else. Each package is built at most once per process.
pub fn build_filter(package: &str) -> Result<PathBuf, HostError> {
    cached(format!("package {package}"), package, || {
        build(&["-p", package], None)
    })
}

/// Builds the filter crate whose `Cargo.toml` is `manifest` (in any workspace or none) with
/// `cargo build --release --target wasm32-wasip1 --manifest-path MANIFEST` and returns the `.wasm`
/// path. Built at most once per process.
///
/// The build goes to `$CARGO_TARGET_DIR/wasm` when `CARGO_TARGET_DIR` is set, else to
/// `<the crate's workspace>/target/wasm`: a target directory of its own, so this nested cargo does
/// not wait for the lock the `cargo test` running it holds. Different filters build concurrently.
pub fn build_filter_at(manifest: impl AsRef<Path>) -> Result<PathBuf, HostError> {
    let manifest = manifest.as_ref();
    let label = manifest.display().to_string();
    cached(format!("manifest {label}"), &label, || {
        let path = manifest.to_string_lossy().into_owned();
        build(&["--manifest-path", &path], Some(manifest))
    })
}

type BuildResult = Result<PathBuf, String>;

/// Runs `build` once per `key` per process. Only the map is locked while looking a key up, so
/// builds of different filters run at the same time; callers asking for the same filter wait.
fn cached(
    key: String,
    label: &str,
    build: impl FnOnce() -> BuildResult,
) -> Result<PathBuf, HostError> {
    static BUILDS: OnceLock<Mutex<HashMap<String, Arc<OnceLock<BuildResult>>>>> = OnceLock::new();
    let slot = BUILDS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_default()
        .clone();
    slot.get_or_init(build)
        .clone()
        .map_err(|message| HostError::Build {
            package: label.to_owned(),
            message,
        })
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn target_dir(manifest: Option<&Path>) -> Result<PathBuf, String> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => Ok(PathBuf::from(dir).join("wasm")),
        None => Ok(workspace_root(manifest)?.join("target").join("wasm")),
    }
}

fn build(selection: &[&str], manifest: Option<&Path>) -> BuildResult {
    let target_dir = target_dir(manifest)?;
    let mut command = Command::new(cargo());
    if manifest.is_none() {
        command.current_dir(workspace_root(None)?);
    }
    let output = command
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .args(selection)
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let wasm = stdout
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(wasm_file)
        .next_back();
    wasm.map(PathBuf::from)
        .ok_or_else(|| "cargo built no .wasm; is the crate a cdylib?".to_owned())
}

fn workspace_root(manifest: Option<&Path>) -> Result<PathBuf, String> {
    let mut command = Command::new(cargo());
    command.args(["locate-project", "--workspace", "--message-format", "plain"]);
    if let Some(manifest) = manifest {
        command.arg("--manifest-path").arg(manifest);
    }
    let output = command
        .output()
        .map_err(|e| format!("running cargo locate-project: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo locate-project failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let manifest = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    manifest
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("odd workspace manifest path {manifest:?}"))
}

/// The `.wasm` entry of an artifact message's `"filenames":[...]` array. Paths containing quotes or
/// backslashes (escaped in JSON) are not supported.
fn wasm_file(line: &str) -> Option<String> {
    let start = line.find("\"filenames\":[")? + "\"filenames\":[".len();
    let end = start + line[start..].find(']')?;
    line[start..end]
        .split(',')
        .map(|f| f.trim().trim_matches('"'))
        .find(|f| f.ends_with(".wasm"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_wasm_in_artifact_message() {
        let line = r#"{"reason":"compiler-artifact","filenames":["/t/wasm32-wasip1/release/f.wasm","/t/libf.rlib"],"executable":null}"#;
        assert_eq!(
            super::wasm_file(line).as_deref(),
            Some("/t/wasm32-wasip1/release/f.wasm")
        );
        assert_eq!(super::wasm_file(r#"{"filenames":["/t/libx.rlib"]}"#), None);
    }
}
