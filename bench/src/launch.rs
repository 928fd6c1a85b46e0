//! Writing, validating and starting Envoy processes.

use crate::http;
use crate::process::{self, free_port, PidFile, Process, Supervised};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How every Envoy of a run is started.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    pub(crate) envoy: PathBuf,
    /// Where configs and logs go.
    pub(crate) work: PathBuf,
    pub(crate) pids: PidFile,
}

/// A running Envoy.
pub(crate) struct RunningEnvoy {
    pub(crate) process: Process,
}

impl RunningEnvoy {
    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Two free ports for a proxy: its listener and its admin.
pub(crate) fn proxy_ports() -> Result<crate::envoy::ProxyPorts> {
    Ok(crate::envoy::ProxyPorts {
        listen: free_port()?,
        admin: free_port()?,
    })
}

impl Launcher {
    /// Writes `bootstrap` to `<work>/<name>.json`.
    pub(crate) fn write(&self, name: &str, bootstrap: &Value) -> Result<PathBuf> {
        let path = self.work.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(bootstrap)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// `envoy --mode validate`: the whole bootstrap, including loading the wasm module and its `on_configure`.
    pub(crate) fn validate(&self, config: &Path) -> Result<()> {
        let out = Command::new(&self.envoy)
            .args([
                "--mode",
                "validate",
                "--disable-hot-restart",
                "-l",
                "warn",
                "-c",
            ])
            .arg(config)
            .output()
            .with_context(|| format!("cannot run {}", self.envoy.display()))?;
        if !out.status.success() {
            bail!(
                "{} does not validate:\n{}{}",
                config.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts Envoy on `config` and waits for its admin `/ready`.
    pub(crate) fn start(
        &self,
        name: &str,
        config: &Path,
        admin: u16,
        concurrency: u32,
        cpus: Option<&str>,
    ) -> Result<RunningEnvoy> {
        let mut process = self.spawn(name, config, concurrency, cpus)?;
        let ready = http::wait_for_status(
            &format!("{name} /ready"),
            admin,
            "/ready",
            None,
            200,
            Duration::from_secs(60),
        );
        if let Err(e) = ready {
            let tail = process.log_tail(40);
            process.ensure_running()?;
            bail!("{e}\nend of {}:\n{tail}", process.log_path().display());
        }
        Ok(RunningEnvoy { process })
    }

    /// Starts Envoy on `config` (pinned to `cpus` with taskset if given) without waiting for anything.
    pub(crate) fn spawn(
        &self,
        name: &str,
        config: &Path,
        concurrency: u32,
        cpus: Option<&str>,
    ) -> Result<Process> {
        let mut cmd = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(&self.envoy);
                c
            }
            None => Command::new(&self.envoy),
        };
        cmd.arg("-c")
            .arg(config)
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--disable-hot-restart", "-l", "info"]);
        process::start(name, &self.work, cmd, &self.pids)
    }
}
