//! Child processes that go away: each runs in its own process group with its output in a log file, is stopped on
//! drop, and is listed in a pid file while it runs, so that `scripts/bench.sh` can stop the process groups this
//! binary left behind if it is itself killed (its trap reads the file).

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The pid file: one `pid name` line per running child.
#[derive(Debug, Clone)]
pub(crate) struct PidFile {
    path: PathBuf,
    running: Arc<Mutex<Vec<(u32, String)>>>,
}

impl PidFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        let file = Self {
            path,
            running: Arc::default(),
        };
        file.save();
        file
    }

    fn update(&self, change: impl FnOnce(&mut Vec<(u32, String)>)) {
        if let Ok(mut running) = self.running.lock() {
            change(&mut running);
        }
        self.save();
    }

    fn save(&self) {
        let text: String = self
            .running
            .lock()
            .map(|r| {
                r.iter()
                    .map(|(pid, name)| format!("{pid} {name}\n"))
                    .collect()
            })
            .unwrap_or_default();
        // Best effort: the file only helps the script's trap; the children are also stopped on drop.
        let _ = std::fs::write(&self.path, text);
    }
}

/// A running child process.
pub(crate) struct Process {
    pub(crate) name: String,
    pub(crate) log: PathBuf,
    child: Option<Child>,
    pids: PidFile,
}

impl Process {
    /// Starts `command` in its own process group with stdout and stderr in `<dir>/<name>.log`.
    pub(crate) fn start(
        name: &str,
        dir: &Path,
        mut command: Command,
        pids: &PidFile,
    ) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        let pid = child.id();
        pids.update(|r| r.push((pid, name.to_owned())));
        Ok(Self {
            name: name.to_owned(),
            log,
            child: Some(child),
            pids: pids.clone(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Ok` while the process runs; otherwise an error with the end of its log.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            _ => bail!(
                "{} is not running; end of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            ),
        }
    }

    /// Waits for the process to exit on its own, up to `timeout`; kills it after that.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already stopped", self.name);
        };
        loop {
            if let Some(status) = child.try_wait()? {
                self.forget();
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.stop(Duration::from_secs(2));
                bail!("{} did not finish within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn forget(&mut self) {
        if let Some(child) = self.child.take() {
            let pid = child.id();
            self.pids.update(|r| r.retain(|(p, _)| *p != pid));
        }
    }

    /// SIGTERM to the process group, then SIGKILL after `grace`; returns once the process is reaped.
    pub(crate) fn stop(&mut self, grace: Duration) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + grace;
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
        self.forget();
    }

    /// The last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole log.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
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
