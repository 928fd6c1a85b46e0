//! Logging: `proxy_log`, `proxy_get_log_level`; also where WASI stdout/stderr are captured.

use crate::guest::{self, Caller};
use crate::state::HostState;
use crate::types::{LogLevel, Status};
use std::fmt;
use wasmtime::{Linker, Result};

/// One `proxy_log` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// The message.
    pub message: String,
    /// The context the filter was running for.
    pub context_id: u32,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.level, self.message)
    }
}

/// Everything the filter said.
pub(crate) struct Output {
    pub(crate) logs: Vec<LogLine>,
    /// Lines below this level are dropped, as Envoy drops them.
    pub(crate) level: LogLevel,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// Why the host answered calls with error statuses (see `HostState::note`).
    pub(crate) notes: Vec<String>,
}

impl Default for Output {
    fn default() -> Output {
        Output {
            logs: Vec::new(),
            level: LogLevel::Trace,
            stdout: Vec::new(),
            stderr: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Positions in [`Output`], to show only what one callback produced.
#[derive(Clone, Copy)]
pub(crate) struct OutputMark {
    logs: usize,
    stdout: usize,
    stderr: usize,
    notes: usize,
}

impl Output {
    pub(crate) fn mark(&self) -> OutputMark {
        OutputMark {
            logs: self.logs.len(),
            stdout: self.stdout.len(),
            stderr: self.stderr.len(),
            notes: self.notes.len(),
        }
    }

    /// Warnings and worse logged since `mark`, plus stderr/stdout written since then: where a
    /// panicking Rust filter leaves its message.
    pub(crate) fn since(&self, mark: OutputMark) -> String {
        let mut out = String::new();
        for line in self
            .logs
            .iter()
            .skip(mark.logs)
            .filter(|l| l.level >= LogLevel::Warn)
        {
            out.push_str(&format!("{line}\n"));
        }
        for note in self.notes.iter().skip(mark.notes) {
            out.push_str(&format!("host: {note}\n"));
        }
        for (name, stream, from) in [
            ("stderr", &self.stderr, mark.stderr),
            ("stdout", &self.stdout, mark.stdout),
        ] {
            let text = String::from_utf8_lossy(stream.get(from..).unwrap_or_default());
            if !text.trim().is_empty() {
                out.push_str(&format!("{name}: {}\n", text.trim_end()));
            }
        }
        out
    }
}

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    linker.func_wrap("env", "proxy_get_log_level", proxy_get_log_level)?;
    Ok(())
}

fn proxy_log(mut caller: Caller<'_>, level: u32, ptr: u32, len: u32) -> Result<u32> {
    let Some(level) = LogLevel::from_raw(level) else {
        return Ok(Status::BadArgument.raw());
    };
    let message = guest::read_string(&caller, ptr, len)?;
    let state = caller.data_mut();
    if level >= state.output.level {
        state.output.logs.push(LogLine {
            level,
            message,
            context_id: state.current_context,
        });
    }
    Ok(Status::Ok.raw())
}

fn proxy_get_log_level(mut caller: Caller<'_>, return_level: u32) -> Result<u32> {
    let level = caller.data().output.level.raw();
    guest::write_u32(&mut caller, return_level, level)?;
    Ok(Status::Ok.raw())
}
