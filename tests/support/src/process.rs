//! Child processes that always go away: each runs in its own process group (a signal meant for the test runner
//! does not reach it, and stopping it reaches whatever it started), writes stdout and stderr to a log file, and is
//! stopped on drop, so a failing assertion leaves nothing running.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long [`Process`]'s drop waits after SIGTERM before SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(3);

/// A file listing the running children, one `PID NAME` line each, rewritten on every start and stop. A shell
/// script that runs a long-lived program (`scripts/bench.sh`) reads it in its trap, to stop the process groups that
/// program left behind if it was itself killed before its drops ran.
#[derive(Debug, Clone)]
pub struct PidFile {
    path: PathBuf,
    running: Arc<Mutex<Vec<(u32, String)>>>,
}

impl PidFile {
    /// Creates (or empties) the file at `path`.
    pub fn new(path: PathBuf) -> Self {
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
        // Best effort: the file only helps a script's trap; the children are also stopped on drop.
        let _ = std::fs::write(&self.path, text);
    }
}

/// A running child process.
#[derive(Debug)]
pub struct Process {
    name: String,
    log: PathBuf,
    child: Option<Child>,
    pids: Option<PidFile>,
}

impl Process {
    /// Starts `command` in its own process group, with stdin closed and stdout and stderr in `<dir>/<name>.log`.
    pub fn start(name: &str, dir: &Path, command: Command) -> io::Result<Self> {
        Self::spawn(name, dir, command, None)
    }

    /// [`Process::start`], listing the child in `pids` while it runs.
    pub fn start_listed(
        name: &str,
        dir: &Path,
        command: Command,
        pids: &PidFile,
    ) -> io::Result<Self> {
        Self::spawn(name, dir, command, Some(pids))
    }

    fn spawn(
        name: &str,
        dir: &Path,
        mut command: Command,
        pids: Option<&PidFile>,
    ) -> io::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", log.display()))
        })?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {name} ({command:?}): {e}"))
        })?;
        if let Some(pids) = pids {
            let pid = child.id();
            pids.update(|r| r.push((pid, name.to_owned())));
        }
        Ok(Self {
            name: name.to_owned(),
            log,
            child: Some(child),
            pids: pids.cloned(),
        })
    }

    /// The name it was started with (its log is `<name>.log`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id (also its process group id), 0 once it has stopped.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `signal` (a `kill` name such as `TERM`) to the process alone, not its group: for tests of how the
    /// program itself reacts to it.
    pub fn signal(&self, signal: &str) -> io::Result<()> {
        let Some(child) = self.child.as_ref() else {
            return Err(io::Error::other(format!("{} has stopped", self.name)));
        };
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -{signal} {} failed",
                child.id()
            )))
        }
    }

    /// Waits up to `timeout` for the process to exit on its own: its exit status, or `None` if it still runs
    /// (it is left running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let Some(child) = self.child.as_mut() else {
            return Err(io::Error::other(format!(
                "{} was already stopped",
                self.name
            )));
        };
        loop {
            if let Some(status) = child.try_wait()? {
                self.forget();
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn forget(&mut self) {
        if let Some(child) = self.child.take() {
            let pid = child.id();
            if let Some(pids) = &self.pids {
                pids.update(|r| r.retain(|(p, _)| *p != pid));
            }
        }
    }

    /// SIGTERM to the process group, then SIGKILL to it after `grace`; returns once the process is reaped.
    pub fn stop(&mut self, grace: Duration) {
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
            let _ = child.kill();
            let _ = child.wait();
        }
        self.forget();
    }

    /// The whole log (empty if it cannot be read).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all.get(all.len().saturating_sub(lines)..)
            .unwrap_or_default()
            .join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(DROP_GRACE);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn logs_output_and_reports_exit() {
        let dir = tempfile::tempdir().unwrap();
        let mut p =
            Process::start("echo", dir.path(), sh("echo one; echo two >&2; exit 3")).unwrap();
        let status = p.wait_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(p.log_tail(1), "two");
        assert_eq!(p.log_text(), "one\ntwo\n");
        assert!(!p.is_running());
    }

    #[test]
    fn drop_stops_the_whole_group_and_empties_the_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let pids = PidFile::new(dir.path().join("pids"));
        // The shell starts a grandchild that would outlive a kill of the shell alone.
        let p = Process::start_listed(
            "sleeper",
            dir.path(),
            sh("sleep 60 & echo $! ; wait"),
            &pids,
        )
        .unwrap();
        let listed = std::fs::read_to_string(dir.path().join("pids")).unwrap();
        assert_eq!(listed, format!("{} sleeper\n", p.pid()));
        let grandchild: u32 = eventually_line(&p).parse().unwrap();
        drop(p);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pids")).unwrap(),
            ""
        );
        // Gone, or a zombie waiting for init to reap it: either way no longer running.
        let stopped = crate::eventually(Duration::from_secs(2), || {
            let stat =
                std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            matches!(state, None | Some("Z") | Some("X")).then_some(())
        });
        assert!(stopped.is_some(), "grandchild {grandchild} survived");
    }

    fn eventually_line(p: &Process) -> String {
        crate::wait_for("the first log line", Duration::from_secs(5), || {
            p.log_text().lines().next().map(str::to_owned)
        })
    }
}
