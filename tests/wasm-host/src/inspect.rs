//! What a test reads back from a [`Vm`] (and sets on it after it was built): logs, output,
//! metrics, shared data, properties, gRPC calls.

use crate::abi::http_calls::GrpcCall;
use crate::abi::logging::LogLine;
use crate::builder::owned_path;
use crate::shared::{MetricValue, SharedStore};
use crate::types::LogLevel;
use crate::vm::Vm;

impl Vm {
    /// Every line the filter logged (at or above the VM's log level), oldest first.
    pub fn logs(&self) -> &[LogLine] {
        &self.state().output.logs
    }

    /// The first log line at `level` containing `contains`.
    pub fn find_log(&self, level: LogLevel, contains: &str) -> Option<&LogLine> {
        self.logs()
            .iter()
            .find(|line| line.level == level && line.message.contains(contains))
    }

    /// Removes and returns the logged lines.
    pub fn take_logs(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.state_mut().output.logs)
    }

    /// Changes Envoy's log level for lines logged from now on.
    pub fn set_log_level(&mut self, level: LogLevel) {
        self.state_mut().output.level = level;
    }

    /// Everything the filter wrote to stdout through WASI.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.state().output.stdout).into_owned()
    }

    /// Everything the filter wrote to stderr through WASI (Rust's default panic message lands here).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.state().output.stderr).into_owned()
    }

    /// The shared store: shared data, queues and metrics (shared with other VMs built on it).
    pub fn shared(&self) -> &SharedStore {
        &self.state().shared
    }

    /// Metric `name`, if a filter defined it.
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.shared().metric(name)
    }

    /// Counter `name`'s total (`None` if undefined or not a counter).
    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.metric(name)? {
            MetricValue::Counter(value) => Some(value),
            _ => None,
        }
    }

    /// Gauge `name`'s value (`None` if undefined or not a gauge).
    pub fn gauge(&self, name: &str) -> Option<i64> {
        match self.metric(name)? {
            MetricValue::Gauge(value) => Some(value),
            _ => None,
        }
    }

    /// Histogram `name`'s recorded values (`None` if undefined or not a histogram).
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        match self.metric(name)? {
            MetricValue::Histogram(values) => Some(values),
            _ => None,
        }
    }

    /// Sets a VM-wide property, e.g. `&["plugin_root_id"]` or `&["request", "path"]`.
    pub fn set_property(&mut self, path: &[&str], value: impl Into<Vec<u8>>) {
        self.state_mut()
            .properties
            .values
            .insert(owned_path(path), Some(value.into()));
    }

    /// Declares a VM-wide property absent: reads get `NotFound` without failing the test.
    pub fn set_property_absent(&mut self, path: &[&str]) {
        self.state_mut()
            .properties
            .values
            .insert(owned_path(path), None);
    }

    /// A VM-wide property (including values the filter set from the root context).
    pub fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.state()
            .properties
            .values
            .get(&owned_path(path))
            .cloned()
            .flatten()
    }

    /// From now on, answer every gRPC call `UNIMPLEMENTED` right after the callback that opened it.
    pub fn allow_grpc_calls(&mut self) {
        self.state_mut().grpc.auto_unimplemented = true;
    }

    /// Every gRPC call or stream the filter opened.
    pub fn grpc_calls(&self) -> &[GrpcCall] {
        &self.state().grpc.history
    }

    /// How many times the filter called `proxy_done`.
    pub fn done_calls(&self) -> u32 {
        self.state().done_calls
    }

    /// The root context id, once [`Vm::on_vm_start`] created it.
    pub fn root_context_id(&self) -> Option<u32> {
        Some(self.state().root_context_id).filter(|id| *id != 0)
    }

    /// Delivers pending shared-queue notifications for queues this VM registered (items other VMs
    /// enqueued); notifications caused by this VM's own callbacks are delivered right after them.
    pub fn deliver_queue_notifications(&mut self) -> Result<(), crate::HostError> {
        self.run_deferred()?;
        self.settle(())
    }
}
