//! [`build_filter`]: builds a filter crate's release `.wasm` once per test binary.

use crate::error::HostError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The rustc target filters are built for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// Builds workspace package `package` with `cargo build --release --target wasm32-wasip1` into
/// `<workspace>/target/wasm` (a target directory of its own, so this nested cargo does not wait on
/// the lock of the `cargo test` that runs it) and returns the `.wasm` path.
///
/// The workspace is the one containing the current directory (cargo runs tests from the package
/// directory). Each package is built at most once per process; later calls return the first result.
pub fn build_filter(package: &str) -> Result<PathBuf, HostError> {
    static BUILDS: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let builds = BUILDS.get_or_init(Mutex::default);
    // Held during the build: concurrent tests wait for the one build instead of racing it.
    let mut builds = builds.lock().unwrap_or_else(PoisonError::into_inner);
    let result = builds
        .entry(package.to_owned())
        .or_insert_with(|| build(package))
        .clone();
    result.map_err(|message| HostError::Build {
        package: package.to_owned(),
        message,
    })
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn build(package: &str) -> Result<PathBuf, String> {
    let workspace = workspace_root()?;
    let target_dir = workspace.join("target").join("wasm");
    let output = Command::new(cargo())
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--message-format=json-render-diagnostics",
            "-p",
            package,
        ])
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
        .ok_or_else(|| format!("cargo built no .wasm for {package}; is it a cdylib?"))
}

fn workspace_root() -> Result<PathBuf, String> {
    let output = Command::new(cargo())
        .args(["locate-project", "--workspace", "--message-format", "plain"])
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
