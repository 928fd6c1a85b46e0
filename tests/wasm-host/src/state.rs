//! [`HostState`]: everything one VM's host side knows, kept in its `wasmtime::Store` (no globals, so
//! tests run in parallel). Each ABI area owns its part of the state in its own module.

use crate::abi::context::Clock;
use crate::abi::http_calls::{GrpcCalls, HttpCalls};
use crate::abi::logging::Output;
use crate::abi::metrics::MetricIds;
use crate::abi::properties::Properties;
use crate::abi::stream::StreamState;
use crate::ledger::Meter;
use crate::shared::SharedStore;
use std::collections::BTreeMap;
use wasmtime::{Memory, TypedFunc};

/// Host-side state of one filter VM.
pub(crate) struct HostState {
    /// Handles into the instance the host functions need.
    pub(crate) guest: GuestHandles,
    /// Configuration buffers, WASI environment and identity.
    pub(crate) config: VmConfig,
    /// Root context id (0 until created) and the context the current callback runs for.
    pub(crate) root_context_id: u32,
    pub(crate) current_context: u32,
    /// Live HTTP contexts by id.
    pub(crate) streams: BTreeMap<u32, StreamState>,
    pub(crate) clock: Clock,
    pub(crate) http: HttpCalls,
    pub(crate) grpc: GrpcCalls,
    pub(crate) properties: Properties,
    pub(crate) output: Output,
    pub(crate) metric_ids: MetricIds,
    pub(crate) shared: SharedStore,
    /// This VM's number in `shared` (owner of the queues it registers).
    pub(crate) vm_index: u32,
    /// Host calls the test did not allow for, collected during a callback and reported after it.
    pub(crate) violations: Vec<String>,
    /// How often the filter called `proxy_done`.
    pub(crate) done_calls: u32,
    /// SplitMix64 state for `random_get`.
    pub(crate) rng: u64,
    /// The callback running now: which maps and buffers Envoy would expose.
    pub(crate) phase: Phase,
    /// What the VM spends, when its module is metered.
    pub(crate) meter: Meter,
}

/// The callback the filter is in, as far as the availability of maps and buffers goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    HttpCallResponse,
    GrpcCallback,
    Configure,
    Log,
    Done,
    Other,
}

impl Phase {
    pub(crate) fn of(export: &str) -> Phase {
        match export {
            "proxy_on_request_headers" => Phase::RequestHeaders,
            "proxy_on_request_body" => Phase::RequestBody,
            "proxy_on_request_trailers" => Phase::RequestTrailers,
            "proxy_on_response_headers" => Phase::ResponseHeaders,
            "proxy_on_response_body" => Phase::ResponseBody,
            "proxy_on_response_trailers" => Phase::ResponseTrailers,
            "proxy_on_http_call_response" => Phase::HttpCallResponse,
            "proxy_on_grpc_receive"
            | "proxy_on_grpc_close"
            | "proxy_on_grpc_receive_initial_metadata"
            | "proxy_on_grpc_receive_trailing_metadata" => Phase::GrpcCallback,
            "proxy_on_configure" => Phase::Configure,
            "proxy_on_log" => Phase::Log,
            "proxy_on_done" => Phase::Done,
            _ => Phase::Other,
        }
    }
}

/// Exports of the instance that host functions call back into.
#[derive(Default)]
pub(crate) struct GuestHandles {
    pub(crate) memory: Option<Memory>,
    pub(crate) allocate: Option<TypedFunc<u32, u32>>,
}

/// What the test configured for the VM before it started.
#[derive(Clone, Default)]
pub(crate) struct VmConfig {
    pub(crate) vm_id: String,
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) plugin_configuration: Vec<u8>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) args: Vec<String>,
}

impl HostState {
    pub(crate) fn new(config: VmConfig, shared: SharedStore, clock: Clock, seed: u64) -> HostState {
        let vm_index = shared.lock().register_vm();
        HostState {
            guest: GuestHandles::default(),
            config,
            root_context_id: 0,
            current_context: 0,
            streams: BTreeMap::new(),
            clock,
            http: HttpCalls::default(),
            grpc: GrpcCalls::default(),
            properties: Properties::default(),
            output: Output::default(),
            metric_ids: MetricIds::default(),
            shared,
            vm_index,
            violations: Vec::new(),
            done_calls: 0,
            rng: seed,
            phase: Phase::Other,
            meter: Meter::default(),
        }
    }

    /// Records a host call the test did not allow for; the running callback then fails.
    pub(crate) fn violate(&mut self, what: String) {
        self.violations.push(what);
    }

    /// Records why the host answered a call with an error status, as Envoy would: shown with a trap
    /// (the Rust SDK panics on most error statuses) and in failure messages.
    pub(crate) fn note(&mut self, what: String) {
        self.output.notes.push(what);
    }

    /// The HTTP context the current callback runs for, if it is one.
    pub(crate) fn current_stream(&mut self) -> Option<&mut StreamState> {
        self.streams.get_mut(&self.current_context)
    }

    /// Like [`HostState::current_stream`], recording a violation naming `call` when the current
    /// context is not an HTTP context.
    pub(crate) fn stream_for(&mut self, call: &str) -> Option<&mut StreamState> {
        let context = self.current_context;
        if !self.streams.contains_key(&context) {
            self.violate(format!(
                "{call} outside an HTTP context (current context {context})"
            ));
        }
        self.streams.get_mut(&context)
    }
}
