//! Child processes (keymesh-test-support's [`Process`], each listed in the run's [`PidFile`] so that
//! `scripts/bench.sh` can stop what this binary left behind if it is itself killed), and what the bench reads of
//! them in /proc: RSS and CPU time.

use anyhow::{bail, Context, Result};
pub(crate) use keymesh_test_support::{PidFile, Process};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub(crate) fn free_port() -> Result<u16> {
    Ok(keymesh_test_support::try_free_port()?)
}

/// Starts `command` as a [`Process`] named `name` with its log in `dir`, listed in `pids`.
pub(crate) fn start(name: &str, dir: &Path, command: Command, pids: &PidFile) -> Result<Process> {
    Ok(Process::start_listed(name, dir, command, pids)?)
}

/// What the bench asks of a running child beyond [`Process`]: errors that carry the end of its log.
pub(crate) trait Supervised {
    /// `Ok` while the process runs; otherwise an error with the end of its log.
    fn ensure_running(&mut self) -> Result<()>;
    /// Waits for the process to exit on its own, up to `timeout`; stops it and fails after that.
    fn wait_or_stop(&mut self, timeout: Duration) -> Result<std::process::ExitStatus>;
}

impl Supervised for Process {
    fn ensure_running(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        bail!(
            "{} is not running; end of {}:\n{}",
            self.name(),
            self.log_path().display(),
            self.log_tail(30)
        )
    }

    fn wait_or_stop(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        match self.wait_timeout(timeout)? {
            Some(status) => Ok(status),
            None => {
                self.stop(Duration::from_secs(2));
                bail!("{} did not finish within {timeout:?}", self.name())
            }
        }
    }
}

/// Resident set size of a process, in KiB (`VmRSS` of /proc/PID/status).
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS for pid {pid}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User + system CPU time a process has used so far, in clock ticks (/proc/PID/stat fields 14 and 15).
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("unreadable /proc/{pid}/stat"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces; the fields after its closing parenthesis start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux when that is unavailable).
pub(crate) fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_cpu_fields() {
        let status = "Name:\tenvoy\nVmPeak:\t 200000 kB\nVmRSS:\t   81234 kB\nThreads:\t12\n";
        assert_eq!(parse_vm_rss(status), Some(81234));
        let stat = "1234 (envoy worker) S 1 1234 1234 0 -1 4194560 100 0 0 0 350 42 0 0 20 0 12 0";
        assert_eq!(parse_cpu_ticks(stat), Some(392));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(cpu_ticks(std::process::id()).is_ok());
    }
}
