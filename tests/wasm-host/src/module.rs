//! [`FilterModule`]: a filter compiled once by wasmtime, checked against the host's imports and the
//! ABI's required exports, and cheap to clone and instantiate many times.

use crate::abi;
use crate::abi::context::Clock;
use crate::builder::VmBuilder;
use crate::error::HostError;
use crate::shared::SharedStore;
use crate::state::{HostState, VmConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use wasmtime::{Config, Engine, ExternType, InstancePre, Linker, Module, Store};

/// A compiled proxy-wasm filter. Clones share the compiled code; keep one per test binary (e.g. in a
/// `static OnceLock<FilterModule>`) and build a fresh [`Vm`](crate::Vm) per test.
#[derive(Clone)]
pub struct FilterModule {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    engine: Engine,
    pre: InstancePre<HostState>,
    imports: Vec<String>,
    /// For a metered module, what [`crate::ledger::instantiate_metered`] wraps.
    metered: Option<(Linker<HostState>, Module)>,
}

/// Exports every proxy-wasm 0.2.1 module must have, and why the host needs them.
const REQUIRED_EXPORTS: [(&str, &str); 3] = [
    (
        "proxy_abi_version_0_2_1",
        "the host speaks proxy-wasm ABI 0.2.1 only",
    ),
    (
        "memory",
        "the host exchanges data through the guest's memory",
    ),
    (
        "proxy_on_context_create",
        "the host cannot create root or HTTP contexts without it",
    ),
];

impl FilterModule {
    /// Reads and compiles the `.wasm` file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<FilterModule, HostError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| HostError::Read {
            path: path.to_owned(),
            source,
        })?;
        FilterModule::from_bytes(&path.display().to_string(), &bytes)
    }

    /// Reads and compiles the `.wasm` file at `path` for measuring: its VMs count the wasm instructions each
    /// callback executes and book every host call (see [`Ledger`](crate::Ledger) and
    /// [`Vm::take_ledger`](crate::Vm::take_ledger)). Runs slower than [`FilterModule::load`]; behaves the same.
    pub fn load_metered(path: impl AsRef<Path>) -> Result<FilterModule, HostError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| HostError::Read {
            path: path.to_owned(),
            source,
        })?;
        FilterModule::compile(&path.display().to_string(), &bytes, true)
    }

    /// Compiles a module from its bytes; `name` is used in messages.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<FilterModule, HostError> {
        FilterModule::compile(name, bytes, false)
    }

    fn compile(name: &str, bytes: &[u8], metered: bool) -> Result<FilterModule, HostError> {
        let compile_error = |e: wasmtime::Error| HostError::Compile {
            name: name.to_owned(),
            message: format!("{e:#}"),
        };
        let mut config = Config::new();
        config.consume_fuel(metered);
        let engine = Engine::new(&config).map_err(compile_error)?;
        let module = Module::new(&engine, bytes).map_err(compile_error)?;
        let mut linker = Linker::new(&engine);
        abi::link(&mut linker).map_err(|e| HostError::Instantiate {
            message: format!("{e:#}"),
        })?;

        let missing = missing_imports(&engine, &linker, &module);
        if !missing.is_empty() {
            return Err(HostError::MissingImports { imports: missing });
        }
        for (export, why) in REQUIRED_EXPORTS {
            if module.get_export(export).is_none() {
                return Err(HostError::MissingExport { name: export, why });
            }
        }
        // `malloc` is the allocator of modules built for wasm32-unknown-unknown.
        let has_allocator = ["proxy_on_memory_allocate", "malloc"]
            .iter()
            .any(|name| matches!(module.get_export(name), Some(ExternType::Func(_))));
        if !has_allocator {
            return Err(HostError::MissingExport {
                name: "proxy_on_memory_allocate",
                why: "the host returns data in buffers the filter allocates (nor is `malloc` exported)",
            });
        }
        let imports = module
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect();
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| HostError::Instantiate {
                message: format!("{e:#}"),
            })?;
        Ok(FilterModule {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                engine,
                pre,
                imports,
                metered: metered.then_some((linker, module)),
            }),
        })
    }

    /// The file name (or name given to [`FilterModule::from_bytes`]).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The module's imports as `module.name`, e.g. `env.proxy_log`.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// Starts configuring a new VM running this filter.
    pub fn vm(&self) -> VmBuilder {
        VmBuilder::new(self.clone())
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<HostState> {
        &self.inner.pre
    }

    /// Whether VMs of this module keep a [`Ledger`](crate::Ledger).
    pub fn is_metered(&self) -> bool {
        self.inner.metered.is_some()
    }

    pub(crate) fn metered(&self) -> Option<&(Linker<HostState>, Module)> {
        self.inner.metered.as_ref()
    }
}

impl std::fmt::Debug for FilterModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterModule")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// Imports the linker cannot satisfy, as `module.name`.
fn missing_imports(engine: &Engine, linker: &Linker<HostState>, module: &Module) -> Vec<String> {
    // `Linker::get` needs a store; a throwaway one is cheap.
    let state = HostState::new(
        VmConfig::default(),
        SharedStore::new(),
        Clock::starting_at(UNIX_EPOCH),
        0,
    );
    let mut store = Store::new(engine, state);
    module
        .imports()
        .filter(|import| {
            linker
                .get(&mut store, import.module(), import.name())
                .is_err()
        })
        .map(|import| format!("{}.{}", import.module(), import.name()))
        .collect()
}
