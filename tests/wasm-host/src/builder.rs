//! [`VmBuilder`]: what a test sets before a VM exists (identity, configuration, environment, clock,
//! shared store, initial properties).

use crate::abi::context::Clock;
use crate::error::HostError;
use crate::module::FilterModule;
use crate::shared::SharedStore;
use crate::state::{HostState, VmConfig};
use crate::types::LogLevel;
use crate::vm::Vm;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default virtual start time: 2025-01-01T00:00:00Z, so time-dependent results are reproducible.
const DEFAULT_START: Duration = Duration::from_secs(1_735_689_600);

/// Configures and builds a [`Vm`]; obtained from [`FilterModule::vm`].
#[must_use = "call .build() to create the VM"]
pub struct VmBuilder {
    module: FilterModule,
    config: VmConfig,
    root_id: String,
    shared: Option<SharedStore>,
    start_time: SystemTime,
    seed: u64,
    log_level: LogLevel,
    allow_grpc: bool,
    clusters: std::collections::BTreeMap<String, bool>,
    properties: Vec<(Vec<String>, Option<Vec<u8>>)>,
}

impl VmBuilder {
    pub(crate) fn new(module: FilterModule) -> VmBuilder {
        VmBuilder {
            module,
            config: VmConfig::default(),
            root_id: String::new(),
            shared: None,
            start_time: UNIX_EPOCH + DEFAULT_START,
            seed: 0x6b65_796d_6573_6821,
            log_level: LogLevel::Trace,
            allow_grpc: false,
            clusters: std::collections::BTreeMap::new(),
            properties: Vec::new(),
        }
    }

    /// The plugin's `root_id` (property `plugin_root_id`, also `plugin_name`); default empty.
    pub fn root_id(mut self, root_id: &str) -> VmBuilder {
        root_id.clone_into(&mut self.root_id);
        self
    }

    /// The VM's `vm_id` (property `plugin_vm_id`; names its shared queues); default empty.
    pub fn vm_id(mut self, vm_id: &str) -> VmBuilder {
        vm_id.clone_into(&mut self.config.vm_id);
        self
    }

    /// The VM configuration handed to `proxy_on_vm_start`.
    pub fn vm_configuration(mut self, bytes: impl Into<Vec<u8>>) -> VmBuilder {
        self.config.vm_configuration = bytes.into();
        self
    }

    /// The plugin configuration handed to `proxy_on_configure`.
    pub fn plugin_configuration(mut self, bytes: impl Into<Vec<u8>>) -> VmBuilder {
        self.config.plugin_configuration = bytes.into();
        self
    }

    /// Share data, queues and metrics with other VMs built with the same store (Envoy workers).
    pub fn shared(mut self, store: SharedStore) -> VmBuilder {
        self.shared = Some(store);
        self
    }

    /// Initial virtual time (default 2025-01-01T00:00:00Z).
    pub fn start_time(mut self, time: SystemTime) -> VmBuilder {
        self.start_time = time;
        self
    }

    /// Seed of the deterministic `random_get`.
    pub fn random_seed(mut self, seed: u64) -> VmBuilder {
        self.seed = seed;
        self
    }

    /// An environment variable visible through WASI.
    pub fn env(mut self, name: &str, value: &str) -> VmBuilder {
        self.config.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A command-line argument visible through WASI.
    pub fn arg(mut self, arg: &str) -> VmBuilder {
        self.config.args.push(arg.to_owned());
        self
    }

    /// Envoy's log level: lines below it are dropped (default `Trace`: keep everything).
    pub fn log_level(mut self, level: LogLevel) -> VmBuilder {
        self.log_level = level;
        self
    }

    /// Declares upstream cluster `name` (with hosts). HTTP and gRPC calls to a cluster that was
    /// not declared fail at dispatch, as calls to a cluster Envoy does not know.
    pub fn cluster(mut self, name: &str) -> VmBuilder {
        self.clusters.insert(name.to_owned(), true);
        self
    }

    /// Declares cluster `name` without hosts: dispatches to it get `InternalFailure`.
    pub fn cluster_without_hosts(mut self, name: &str) -> VmBuilder {
        self.clusters.insert(name.to_owned(), false);
        self
    }

    /// Answer every gRPC call `UNIMPLEMENTED` right after the callback that opened it, instead of
    /// leaving it for [`Vm::respond_to_grpc_call`](crate::Vm::respond_to_grpc_call).
    pub fn allow_grpc_calls(mut self) -> VmBuilder {
        self.allow_grpc = true;
        self
    }

    /// A VM-wide property, e.g. `.property(&["xds", "node", "id"], "sidecar~1")`.
    pub fn property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> VmBuilder {
        self.properties.push((owned_path(path), Some(value.into())));
        self
    }

    /// A property the filter may read and must find absent.
    pub fn absent_property(mut self, path: &[&str]) -> VmBuilder {
        self.properties.push((owned_path(path), None));
        self
    }

    /// Instantiates the module (running `_initialize`); the root context is created by
    /// [`Vm::on_vm_start`].
    pub fn build(self) -> Result<Vm, HostError> {
        let shared = self.shared.unwrap_or_default();
        let mut state = HostState::new(
            self.config,
            shared,
            Clock::starting_at(self.start_time),
            self.seed,
        );
        state.output.level = self.log_level;
        state.grpc.auto_unimplemented = self.allow_grpc;
        state.http.clusters = self.clusters;
        let defaults = [
            ("plugin_root_id", self.root_id.clone()),
            ("plugin_name", self.root_id.clone()),
            ("plugin_vm_id", state.config.vm_id.clone()),
        ];
        for (name, value) in defaults {
            state
                .properties
                .values
                .insert(vec![name.to_owned()], Some(value.into_bytes()));
        }
        state.properties.values.extend(self.properties);
        Vm::instantiate(&self.module, state)
    }
}

pub(crate) fn owned_path(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| (*s).to_owned()).collect()
}
