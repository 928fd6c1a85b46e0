//! [`Vm`]: one instance of a filter with its host state, driven by a test the way Envoy drives a
//! worker's VM: root context lifecycle, ticks on a virtual clock, HTTP-call answers, and the strict
//! end-of-test check.

use crate::abi::context::nanos;
use crate::abi::http_calls::{GrpcResponse, HttpCall};
use crate::abi::stream::StreamState;
use crate::error::HostError;
use crate::ledger::{self, Ledger, VmEntry};
use crate::module::FilterModule;
use crate::state::{HostState, Phase};
use crate::stream::HttpStream;
use crate::types::{Action, GRPC_UNIMPLEMENTED};
use std::time::Duration;
use wasmtime::{Instance, Store, WasmParams, WasmResults};

/// Id of the single root context; HTTP contexts count up from the next id.
pub(crate) const ROOT_CONTEXT_ID: u32 = 1;

/// A running filter VM. Build one with [`FilterModule::vm`]. All its state lives in its own
/// wasmtime `Store`, so tests run in parallel.
///
/// Strict: a host call the test did not allow for fails the callback that made it; effects left
/// unconsumed (unanswered HTTP calls, unchecked local responses, paused streams) fail
/// [`Vm::finish`], or the test when the VM is dropped without it.
pub struct Vm {
    store: Store<HostState>,
    instance: Instance,
    /// The callback that trapped; the VM is dead afterwards, as in Envoy.
    crashed: Option<&'static str>,
    /// An error was already returned to the test, so dropping must not add a second failure.
    failed: bool,
    finished: bool,
    last_context_id: u32,
    /// Host calls the test did not allow for, made by a callback whose result is still being
    /// applied; reported by [`Vm::settle`] with that result.
    unexpected: Option<(&'static str, u32, Vec<String>)>,
}

impl Vm {
    pub(crate) fn instantiate(module: &FilterModule, state: HostState) -> Result<Vm, HostError> {
        let instantiate = |e: wasmtime::Error| HostError::Instantiate {
            message: format!("{e:#}"),
        };
        let mut store = Store::new(module.engine(), state);
        let instance = match module.metered() {
            Some((linker, compiled)) => {
                store.set_fuel(ledger::FUEL).map_err(instantiate)?;
                store.data_mut().meter.ledger = Some(Ledger::default());
                ledger::instantiate_metered(&mut store, linker, compiled).map_err(instantiate)?
            }
            None => module
                .instance_pre()
                .instantiate(&mut store)
                .map_err(instantiate)?,
        };
        let memory = instance.get_memory(&mut store, "memory");
        let allocate = ["proxy_on_memory_allocate", "malloc"]
            .iter()
            .find_map(|name| instance.get_typed_func::<u32, u32>(&mut store, name).ok());
        store.data_mut().guest.memory = memory;
        store.data_mut().guest.allocate = allocate;
        let mut vm = Vm {
            store,
            instance,
            crashed: None,
            failed: false,
            finished: false,
            last_context_id: ROOT_CONTEXT_ID,
            unexpected: None,
        };
        // A wasip1 reactor initializes itself (and runs the SDK's `main!`) in `_initialize`.
        for init in ["_initialize", "_start"] {
            if vm.instance.get_func(&mut vm.store, init).is_some() {
                vm.invoke::<(), ()>(init, 0, ())?;
                vm.settle(())?;
                break;
            }
        }
        Ok(vm)
    }

    /// The size of the filter's linear memory, in bytes: what the VM has ever grown to (wasm memory never
    /// shrinks, so this is the high-water mark of its heap).
    pub fn linear_memory_bytes(&self) -> usize {
        self.state()
            .guest
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
    }

    /// What the VM spent since the last call (or since it was built), and a fresh ledger from here on; `None`
    /// unless its module was loaded with [`FilterModule::load_metered`].
    pub fn take_ledger(&mut self) -> Option<Ledger> {
        let ledger = self.state_mut().meter.ledger.as_mut()?;
        Some(std::mem::take(ledger))
    }

    pub(crate) fn state(&self) -> &HostState {
        self.store.data()
    }

    pub(crate) fn state_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// Ends a test-facing operation: if a callback made host calls the test did not allow for,
    /// fails with them and with what the operation returned, after its effects were applied.
    pub(crate) fn settle<T: std::fmt::Debug>(&mut self, returned: T) -> Result<T, HostError> {
        match self.unexpected.take() {
            None => Ok(returned),
            Some((callback, context_id, violations)) => self.fail(HostError::Unexpected {
                callback,
                context_id,
                violations,
                returned: format!("{returned:?}"),
            }),
        }
    }

    /// Records that the test got an error, and returns it.
    pub(crate) fn fail<T>(&mut self, error: HostError) -> Result<T, HostError> {
        self.failed = true;
        Err(error)
    }

    pub(crate) fn expectation<T>(&mut self, message: String) -> Result<T, HostError> {
        self.fail(HostError::Expectation(message))
    }

    /// Turns a test's own failed expectation into a [`HostError::Expectation`], and marks the VM
    /// as failed so that dropping it does not panic about unconsumed effects and hide `message`.
    pub fn expectation_failed(&mut self, message: impl Into<String>) -> HostError {
        self.failed = true;
        HostError::Expectation(message.into())
    }

    /// `Ok(())` if `condition` holds, else [`Vm::expectation_failed`] with `message`:
    /// `stream.ensure(stream.is_request_paused(), "request should wait for the call")?`.
    pub fn ensure(&mut self, condition: bool, message: impl Into<String>) -> Result<(), HostError> {
        if condition {
            Ok(())
        } else {
            Err(self.expectation_failed(message))
        }
    }

    /// Calls export `export` for `context_id`; `Ok(None)` if the module does not export it (Envoy
    /// treats a missing callback as a no-op). Traps and violations become errors.
    pub(crate) fn invoke<P: WasmParams, R: WasmResults>(
        &mut self,
        export: &'static str,
        context_id: u32,
        params: P,
    ) -> Result<Option<R>, HostError> {
        if let Some(first) = self.crashed {
            return self.fail(HostError::Crashed {
                first,
                callback: export,
            });
        }
        let Some(func) = self.instance.get_func(&mut self.store, export) else {
            return Ok(None);
        };
        let func = match func.typed::<P, R>(&self.store) {
            Ok(func) => func,
            Err(e) => {
                let message = format!("export `{export}` has an unexpected signature: {e:#}");
                return self.fail(HostError::Instantiate { message });
            }
        };
        self.state_mut().current_context = context_id;
        self.state_mut().phase = Phase::of(export);
        let mark = self.state().output.mark();
        let fuel_before = self.store.get_fuel().ok();
        self.store.data_mut().meter.entry_fuel = fuel_before.unwrap_or(0);
        let result = func.call(&mut self.store, params);
        if let (Some(before), Ok(after)) = (fuel_before, self.store.get_fuel()) {
            if let Some(ledger) = self.store.data_mut().meter.ledger.as_mut() {
                ledger.entries.push(VmEntry {
                    export,
                    instructions: before.saturating_sub(after),
                });
            }
        }
        self.state_mut().phase = Phase::Other;
        let violations = std::mem::take(&mut self.state_mut().violations);
        match result {
            Ok(value) => {
                // Reported once the caller applied the result (pauses, actions): see `settle`.
                if !violations.is_empty() {
                    self.unexpected
                        .get_or_insert((export, context_id, Vec::new()))
                        .2
                        .extend(violations);
                }
                Ok(Some(value))
            }
            Err(trap) => {
                self.crashed = Some(export);
                let mut output = self.state().output.since(mark);
                for violation in violations {
                    output.push_str(&format!("unexpected host call: {violation}\n"));
                }
                let message = trap.root_cause().to_string();
                let backtrace = format!("{trap:?}");
                self.fail(HostError::Trap {
                    callback: export,
                    context_id,
                    message,
                    output,
                    backtrace,
                })
            }
        }
    }

    /// Delivers what Envoy would deliver after the current callback: gRPC closes and shared-queue
    /// notifications for queues this VM registered.
    pub(crate) fn run_deferred(&mut self) -> Result<(), HostError> {
        loop {
            let next_close = {
                let state = self.state_mut();
                let closes = &mut state.grpc.to_close;
                (!closes.is_empty()).then(|| closes.remove(0))
            };
            if let Some((context, token)) = next_close {
                if !self.is_live_context(context) {
                    continue;
                }
                if self.state().grpc.open.contains(&token) {
                    let unimplemented = GrpcResponse::status(GRPC_UNIMPLEMENTED, "unimplemented");
                    self.respond_to_grpc_call(token, unimplemented)?;
                }
                continue;
            }
            let root = self.state().root_context_id;
            let vm_index = self.state().vm_index;
            let ready = self.state().shared.lock().take_ready_queues(vm_index);
            if ready.is_empty() || root == 0 {
                return Ok(());
            }
            for queue in ready {
                self.invoke::<(u32, u32), ()>("proxy_on_queue_ready", root, (root, queue))?;
            }
        }
    }

    pub(crate) fn is_live_context(&self, context: u32) -> bool {
        (context != 0 && context == self.state().root_context_id)
            || self.state().streams.contains_key(&context)
    }

    fn root(&mut self, callback: &str) -> Result<u32, HostError> {
        match self.state().root_context_id {
            0 => self.expectation(format!(
                "{callback} needs the root context: call on_vm_start() first"
            )),
            root => Ok(root),
        }
    }

    fn bool_result(&mut self, callback: &'static str, raw: Option<i32>) -> Result<bool, HostError> {
        match raw {
            None | Some(1) => Ok(true),
            Some(0) => Ok(false),
            Some(value) => self.fail(HostError::BadReturn {
                callback,
                value: value.into(),
                what: "bool",
            }),
        }
    }

    pub(crate) fn vm_start_raw(&mut self) -> Result<bool, HostError> {
        if self.state().root_context_id == 0 {
            self.state_mut().root_context_id = ROOT_CONTEXT_ID;
            self.invoke::<(u32, u32), ()>(
                "proxy_on_context_create",
                ROOT_CONTEXT_ID,
                (ROOT_CONTEXT_ID, 0),
            )?;
        }
        let size = crate::codec::len_u32(self.state().config.vm_configuration.len());
        let raw = self.invoke::<(u32, u32), i32>(
            "proxy_on_vm_start",
            ROOT_CONTEXT_ID,
            (ROOT_CONTEXT_ID, size),
        )?;
        let started = self.bool_result("proxy_on_vm_start", raw)?;
        self.run_deferred()?;
        Ok(started)
    }

    pub(crate) fn configure_raw(&mut self) -> Result<bool, HostError> {
        let root = self.root("proxy_on_configure")?;
        let size = crate::codec::len_u32(self.state().config.plugin_configuration.len());
        let raw = self.invoke::<(u32, u32), i32>("proxy_on_configure", root, (root, size))?;
        let configured = self.bool_result("proxy_on_configure", raw)?;
        self.run_deferred()?;
        Ok(configured)
    }

    pub(crate) fn tick_raw(&mut self) -> Result<(), HostError> {
        let root = self.root("proxy_on_tick")?;
        self.invoke::<u32, ()>("proxy_on_tick", root, root)?;
        self.run_deferred()
    }

    /// Creates the root context if needed and calls `proxy_on_vm_start` with the VM configuration;
    /// returns the filter's verdict.
    pub fn on_vm_start(&mut self) -> Result<bool, HostError> {
        self.call_on_vm_start().execute()
    }

    /// Calls `proxy_on_configure` with the plugin configuration; returns the filter's verdict.
    pub fn on_configure(&mut self) -> Result<bool, HostError> {
        self.call_on_configure().execute()
    }

    /// [`Vm::on_vm_start`] then [`Vm::on_configure`], failing if either returns `false`.
    pub fn start(&mut self) -> Result<(), HostError> {
        if !self.on_vm_start()? {
            return self.expectation("proxy_on_vm_start returned false".to_owned());
        }
        if !self.on_configure()? {
            return self.expectation("proxy_on_configure returned false".to_owned());
        }
        Ok(())
    }

    /// Replaces the plugin configuration (call [`Vm::on_configure`] again to apply it, as Envoy does
    /// on a configuration update).
    pub fn set_plugin_configuration(&mut self, bytes: impl Into<Vec<u8>>) {
        self.state_mut().config.plugin_configuration = bytes.into();
    }

    /// Calls `proxy_on_tick` now, without moving the clock.
    pub fn on_tick(&mut self) -> Result<(), HostError> {
        self.call_on_tick().execute()
    }

    /// Moves the virtual clock forward by `by`, firing `proxy_on_tick` at every point the tick period
    /// the filter set falls due (with the clock at that point). Returns the number of ticks fired.
    pub fn advance_time(&mut self, by: Duration) -> Result<u32, HostError> {
        let target = self.state().clock.now.saturating_add(nanos(by));
        let mut fired = 0;
        loop {
            let clock = &mut self.state_mut().clock;
            let (Some(due), Some(period)) = (clock.next_tick, clock.tick_period) else {
                break;
            };
            if due > target {
                break;
            }
            clock.now = due;
            // Re-armed before the callback, so a filter changing its period re-arms from here.
            clock.next_tick = Some(due.saturating_add(nanos(period).max(1)));
            self.tick_raw()?;
            self.settle(())?;
            fired += 1;
        }
        let clock = &mut self.state_mut().clock;
        clock.now = clock.now.max(target);
        Ok(fired)
    }

    /// The current virtual time.
    pub fn now(&self) -> std::time::SystemTime {
        self.state().clock.system_time()
    }

    /// The tick period the filter set, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        self.state().clock.tick_period
    }

    /// Creates an HTTP context (`proxy_on_context_create` with the root id) and returns its handle.
    pub fn new_http_stream(&mut self) -> Result<HttpStream<'_>, HostError> {
        let root = self.root("new_http_stream")?;
        self.last_context_id += 1;
        let id = self.last_context_id;
        self.state_mut().streams.insert(id, StreamState::default());
        self.invoke::<(u32, u32), ()>("proxy_on_context_create", id, (id, root))?;
        self.run_deferred()?;
        self.settle(())?;
        Ok(HttpStream::new(self, id))
    }

    /// The handle of live HTTP context `id` (to interleave several streams).
    pub fn http_stream(&mut self, id: u32) -> Result<HttpStream<'_>, HostError> {
        if !self.state().streams.contains_key(&id) {
            return self.expectation(format!("context {id} is not a live HTTP stream"));
        }
        Ok(HttpStream::new(self, id))
    }

    /// After a callback on `context`: a local response must not be followed by `Continue`.
    pub(crate) fn check_local_response_pause(
        &mut self,
        context: u32,
        local_before: bool,
        action: Option<Action>,
        callback: &'static str,
    ) -> Result<(), HostError> {
        let sent_now = self
            .state()
            .streams
            .get(&context)
            .is_some_and(|s| s.local_response_sent)
            && !local_before;
        if sent_now && action == Some(Action::Continue) {
            let violations = vec![
                "returned Continue after proxy_send_local_response; a local reply must Pause"
                    .to_owned(),
            ];
            return self.fail(HostError::Unexpected {
                callback,
                context_id: context,
                violations,
                returned: "Continue".to_owned(),
            });
        }
        Ok(())
    }

    /// Ends every live stream, then checks that no effect was left unconsumed. Consumes the VM; a
    /// VM dropped without `finish` does the same and panics on failure.
    pub fn finish(mut self) -> Result<(), HostError> {
        self.finished = true;
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Result<(), HostError> {
        if let Some(first) = self.crashed {
            return Err(HostError::Crashed {
                first,
                callback: "finish",
            });
        }
        let mut effects = Vec::new();
        let live: Vec<u32> = self.state().streams.keys().copied().collect();
        for id in live {
            effects.extend(self.end_stream(id)?);
        }
        let http = &self.state().http;
        effects.extend(
            http.pending
                .iter()
                .filter_map(|t| http.call(*t))
                .map(|call| format!("{} was never answered", call.describe())),
        );
        effects.extend(
            self.pending_grpc_calls()
                .iter()
                .map(|call| format!("{} was never answered", call.describe())),
        );
        if effects.is_empty() {
            return Ok(());
        }
        self.fail(HostError::Unconsumed {
            at: "end of VM".to_owned(),
            effects,
        })
    }

    /// Runs `proxy_on_done`, `proxy_on_log` and `proxy_on_delete` for stream `id` and returns the
    /// effects it left unconsumed. Unanswered calls of the stream are cancelled, as Envoy does.
    pub(crate) fn end_stream(&mut self, id: u32) -> Result<Vec<String>, HostError> {
        let (mut effects, cancelled) = self.end_stream_with(id, false)?;
        effects.extend(
            cancelled
                .iter()
                .map(|call| format!("{} was never answered", call.describe())),
        );
        Ok(effects)
    }

    /// Ends stream `id` as a downstream reset does: a paused direction is not an unconsumed effect
    /// (the client went away), and the stream's unanswered HTTP calls, cancelled as Envoy cancels
    /// them, are returned rather than reported. Other unconsumed effects are returned.
    pub(crate) fn end_stream_with(
        &mut self,
        id: u32,
        client_reset: bool,
    ) -> Result<(Vec<String>, Vec<HttpCall>), HostError> {
        self.invoke::<u32, i32>("proxy_on_done", id, id)?;
        self.invoke::<u32, ()>("proxy_on_log", id, id)?;
        self.invoke::<u32, ()>("proxy_on_delete", id, id)?;
        self.run_deferred()?;
        self.settle(())?;
        let state = self.state_mut();
        let Some(stream) = state.streams.remove(&id) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut effects = Vec::new();
        if let Some(response) = &stream.local_response {
            effects.push(format!(
                "local response {} sent by context {id} was never checked (take_local_response)",
                response.status_code
            ));
        }
        for reset in &stream.resets {
            effects.push(format!(
                "context {id} reset the stream ({reset:?}); never checked (take_resets)"
            ));
        }
        if let (Some(callback), false) = (stream.request_paused, client_reset) {
            effects.push(format!(
                "context {id}: request paused by {callback} and never resumed"
            ));
        }
        if let (Some(callback), false) = (stream.response_paused, client_reset) {
            effects.push(format!(
                "context {id}: response paused by {callback} and never resumed"
            ));
        }
        let http = &mut state.http;
        let (orphans, kept): (Vec<u32>, Vec<u32>) = http.pending.iter().partition(|t| {
            http.history
                .iter()
                .any(|c| c.token == **t && c.context_id == id)
        });
        http.pending = kept;
        let cancelled: Vec<HttpCall> = orphans
            .iter()
            .filter_map(|token| http.call(*token).cloned())
            .collect();
        state.grpc.to_close.retain(|(context, _)| *context != id);
        let grpc = &mut state.grpc;
        let (orphans, kept): (Vec<u32>, Vec<u32>) = grpc
            .open
            .iter()
            .partition(|t| grpc.call(**t).is_some_and(|c| c.context_id == id));
        grpc.open = kept;
        for token in orphans {
            if let Some(call) = grpc.call(token) {
                effects.push(format!("{} was never answered", call.describe()));
            }
        }
        Ok((effects, cancelled))
    }
}

impl Drop for Vm {
    #[allow(
        clippy::panic,
        reason = "a strict test host fails the test when effects are left unconsumed"
    )]
    fn drop(&mut self) {
        if self.finished || self.failed || self.crashed.is_some() || std::thread::panicking() {
            return;
        }
        self.finished = true;
        if let Err(error) = self.finish_inner() {
            panic!("{error}");
        }
    }
}
