//! The facts a figure is meaningless without: machine, versions, load, and the command that produced it.

use serde::Serialize;
use std::path::Path;
use std::process::Command;

/// Where and with what a run happened.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) nproc: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    pub(crate) envoy_version: String,
    pub(crate) rustc_version: String,
    pub(crate) wrk_version: String,
    /// `git describe`-like: short commit, `-dirty` when the tree has changes.
    pub(crate) git_commit: String,
    /// UTC, RFC 3339.
    pub(crate) date: String,
    /// /proc/loadavg (1, 5, 15 min) at the start of the run.
    pub(crate) loadavg_start: String,
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The first three fields of /proc/loadavg.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The CPU model from /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// `1.40.0/Clean/RELEASE/BoringSSL` out of `envoy --version`.
pub(crate) fn envoy_version(envoy: &Path) -> String {
    let text = Command::new(envoy)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    parse_envoy_version(&text).unwrap_or_else(|| text.trim().to_owned())
}

fn parse_envoy_version(text: &str) -> Option<String> {
    let rest = text.split("version:").nth(1)?.trim();
    let build = rest.split_whitespace().next()?;
    // "<sha>/1.40.0/Clean/RELEASE/BoringSSL"
    build.split_once('/').map(|(_, v)| v.to_owned())
}

impl Machine {
    pub(crate) fn gather(envoy: &Path, repo: &Path) -> Self {
        let repo = repo.display().to_string();
        let commit = output("git", &["-C", &repo, "rev-parse", "--short", "HEAD"])
            .unwrap_or_else(|| "?".into());
        let dirty = output("git", &["-C", &repo, "status", "--porcelain"]).is_some();
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .as_deref()
                .and_then(cpu_model)
                .unwrap_or_else(|| "?".into()),
            kernel: output("uname", &["-sr"]).unwrap_or_else(|| "?".into()),
            envoy_version: envoy_version(envoy),
            rustc_version: output("rustc", &["--version"]).unwrap_or_else(|| "?".into()),
            wrk_version: crate::wrk::version(),
            git_commit: if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            },
            date: output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_else(|| "?".into()),
            loadavg_start: loadavg(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_and_cpu() {
        let v = "/x/envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n";
        assert_eq!(
            parse_envoy_version(v).as_deref(),
            Some("1.40.0/Clean/RELEASE/BoringSSL")
        );
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
    }
}
