//! [`HostError`]: every way loading a filter or driving it can fail a test.

use std::fmt;
use std::path::PathBuf;

/// A failure of the filter under test, of the host, or of the test's own expectations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The `.wasm` file could not be read.
    #[error("reading filter module {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// wasmtime rejected or failed to compile the module.
    #[error("compiling filter module {name}: {message}")]
    Compile {
        /// File name (or `<bytes>`).
        name: String,
        /// wasmtime's message.
        message: String,
    },
    /// The module imports functions this host does not provide.
    #[error("filter module imports functions the host does not provide: {}", .imports.join(", "))]
    MissingImports {
        /// Each as `module.name`, e.g. `env.proxy_foo`.
        imports: Vec<String>,
    },
    /// The module lacks an export the ABI requires.
    #[error("filter module does not export `{name}`: {why}")]
    MissingExport {
        /// The missing export.
        name: &'static str,
        /// Why the host needs it.
        why: &'static str,
    },
    /// Linking or instantiating failed (e.g. an import has the wrong signature).
    #[error("instantiating filter module: {message}")]
    Instantiate {
        /// wasmtime's message.
        message: String,
    },
    /// The filter trapped (a Rust panic, `unreachable`, out-of-bounds access, `proc_exit`).
    #[error(
        "filter trapped in {callback} (context {context_id}): {message}{}{}",
        section("filter output", .output),
        section("wasm backtrace", .backtrace)
    )]
    Trap {
        /// The exported callback that was running.
        callback: &'static str,
        /// Context it was called for.
        context_id: u32,
        /// The trap's cause, e.g. ``wasm trap: wasm `unreachable` instruction executed``.
        message: String,
        /// Warnings and worse the filter logged during the call, and what it wrote to
        /// stderr/stdout: where a Rust panic message ends up.
        output: String,
        /// wasmtime's full report, with the wasm backtrace.
        backtrace: String,
    },
    /// The VM trapped earlier and, like Envoy's, cannot be used any more.
    #[error("the filter VM trapped earlier (in {first}); it cannot run {callback}")]
    Crashed {
        /// The callback that trapped.
        first: &'static str,
        /// The callback the test then tried to run.
        callback: &'static str,
    },
    /// During a callback the filter made host calls the test did not allow for.
    #[error("unexpected host calls during {callback} (context {context_id}; the operation's result, already applied: {returned}):{}", bullets(.violations))]
    Unexpected {
        /// The callback.
        callback: &'static str,
        /// Context it was called for.
        context_id: u32,
        /// One line per offending host call.
        violations: Vec<String>,
        /// What the operation returned (e.g. `Pause`); its effects, such as a paused request, were
        /// applied as usual.
        returned: String,
    },
    /// Effects the test had to consume (HTTP calls to answer, local responses to check, paused
    /// streams, resets) were left unconsumed when the stream or VM finished.
    #[error("filter effects left unconsumed at {at}:{}", bullets(.effects))]
    Unconsumed {
        /// `"end of context 2"` or `"end of VM"`.
        at: String,
        /// One line per effect.
        effects: Vec<String>,
    },
    /// A callback returned a value outside the ABI (e.g. an action other than 0 or 1).
    #[error("{callback} returned {value}, which is not a valid {what}")]
    BadReturn {
        /// The callback.
        callback: &'static str,
        /// The raw value.
        value: i64,
        /// What was expected.
        what: &'static str,
    },
    /// The filter needs something this host does not provide (e.g. it is a TCP filter).
    #[error("{0}")]
    Unsupported(String),
    /// A test expectation did not hold, or the test used the host out of order.
    #[error("{0}")]
    Expectation(String),
    /// `build_filter` or `build_filter_at` could not build the filter.
    #[error("building filter {package}: {message}")]
    Build {
        /// The cargo package, or the manifest path.
        package: String,
        /// What went wrong, with cargo's output.
        message: String,
    },
}

fn section(title: &str, text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- {title} ---\n{}", text.trim_end())
    }
}

fn bullets(lines: &[String]) -> Bullets<'_> {
    Bullets(lines)
}

struct Bullets<'a>(&'a [String]);

impl fmt::Display for Bullets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.0 {
            write!(f, "\n  - {line}")?;
        }
        Ok(())
    }
}
