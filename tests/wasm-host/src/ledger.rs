//! [`Ledger`]: what a metered VM spent, in units that do not depend on the machine or its load: wasm instructions
//! (wasmtime fuel) per callback the host made, and per host function the calls, the bytes copied across the
//! boundary and the nested `proxy_on_memory_allocate` calls the host made to hand data back.
//!
//! A module loaded with [`FilterModule::load_metered`](crate::FilterModule::load_metered) runs on an engine with
//! fuel on, and each of its imports is wrapped in a function that books the call before running the host's own.
//! Unmetered modules (every behaviour test) pay nothing for this.

use crate::state::HostState;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::{Extern, Instance, Linker, Module, Store};

/// Fuel a metered store starts with: far more than any test spends, so fuel never runs out.
pub(crate) const FUEL: u64 = u64::MAX / 2;

/// The cost of everything a metered VM did since the ledger was last taken ([`Vm::take_ledger`](crate::Vm)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Each callback the host made into the VM, in order (exports the module lacks are not entered, and not
    /// listed).
    pub entries: Vec<VmEntry>,
    /// Per host function (import name, e.g. `proxy_get_header_map_pairs`), what the VM's calls to it cost.
    pub host_calls: BTreeMap<String, HostCallCost>,
    /// Every host call in order, with how far into its callback it came: the instructions between two calls are
    /// what the VM did between them.
    pub timeline: Vec<CallMark>,
}

/// One host call on the [`Ledger::timeline`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMark {
    /// The callback it was made from (its index in [`Ledger::entries`]).
    pub entry: usize,
    /// The host function.
    pub name: String,
    /// Wasm instructions the callback had executed when it made the call.
    pub at_instruction: u64,
}

/// One callback into the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEntry {
    /// The export called, e.g. `proxy_on_request_headers`.
    pub export: &'static str,
    /// Wasm instructions it executed (wasmtime fuel: one per instruction, none for `nop`, `block`, `end` and
    /// the like), nested allocations included.
    pub instructions: u64,
}

/// What the calls to one host function cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCallCost {
    /// Number of calls.
    pub calls: u64,
    /// Bytes the host read out of the VM's memory (names, values, bodies it was passed).
    pub bytes_in: u64,
    /// Bytes the host copied into buffers it allocated in the VM (values it returned).
    pub bytes_out: u64,
    /// `proxy_on_memory_allocate` (or `malloc`) calls the host made to return data.
    pub allocations: u64,
    /// Wasm instructions those allocations executed (part of the calling callback's
    /// [`VmEntry::instructions`]).
    pub allocation_instructions: u64,
}

impl Ledger {
    /// Wasm instructions of every entry, allocations included.
    pub fn instructions(&self) -> u64 {
        self.entries.iter().map(|e| e.instructions).sum()
    }

    /// Wasm instructions of the entries of `export`.
    pub fn instructions_in(&self, export: &str) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.export == export)
            .map(|e| e.instructions)
            .sum()
    }

    /// Host calls of every function.
    pub fn host_call_count(&self) -> u64 {
        self.host_calls.values().map(|c| c.calls).sum()
    }

    /// The calls to host function `name` (zeroes if it was not called).
    pub fn host_call(&self, name: &str) -> HostCallCost {
        self.host_calls.get(name).copied().unwrap_or_default()
    }

    /// Sum over every host function.
    pub fn host_call_totals(&self) -> HostCallCost {
        self.host_calls
            .values()
            .fold(HostCallCost::default(), |sum, c| HostCallCost {
                calls: sum.calls + c.calls,
                bytes_in: sum.bytes_in + c.bytes_in,
                bytes_out: sum.bytes_out + c.bytes_out,
                allocations: sum.allocations + c.allocations,
                allocation_instructions: sum.allocation_instructions + c.allocation_instructions,
            })
    }
}

/// The host side of metering, in [`HostState`]: the ledger being written, and running counts the guest-memory
/// helpers add to (a `Cell` where they only get `&HostState`).
#[derive(Default)]
pub(crate) struct Meter {
    /// `Some` for a metered VM.
    pub(crate) ledger: Option<Ledger>,
    /// Fuel left when the running callback was entered.
    pub(crate) entry_fuel: u64,
    pub(crate) bytes_in: Cell<u64>,
    pub(crate) bytes_out: u64,
    pub(crate) allocations: u64,
    pub(crate) allocation_instructions: u64,
}

impl Meter {
    fn counts(&self) -> HostCallCost {
        HostCallCost {
            calls: 0,
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out,
            allocations: self.allocations,
            allocation_instructions: self.allocation_instructions,
        }
    }

    /// Books one call of `name`, given the counts before it and the fuel left when it was made.
    fn book(&mut self, name: &str, before: HostCallCost, fuel: Option<u64>) {
        let after = self.counts();
        let entry_fuel = self.entry_fuel;
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        ledger.timeline.push(CallMark {
            // The running callback is booked when it returns, after its calls.
            entry: ledger.entries.len(),
            name: name.to_owned(),
            at_instruction: fuel.map_or(0, |left| entry_fuel.saturating_sub(left)),
        });
        let cost = ledger.host_calls.entry(name.to_owned()).or_default();
        cost.calls += 1;
        cost.bytes_in += after.bytes_in - before.bytes_in;
        cost.bytes_out += after.bytes_out - before.bytes_out;
        cost.allocations += after.allocations - before.allocations;
        cost.allocation_instructions +=
            after.allocation_instructions - before.allocation_instructions;
    }
}

/// Instantiates `module` in `store` with each import taken from `linker` and wrapped so that its calls are
/// booked in the store's ledger. The wrappers are per store because the host functions they call are.
pub(crate) fn instantiate_metered(
    store: &mut Store<HostState>,
    linker: &Linker<HostState>,
    module: &Module,
) -> wasmtime::Result<Instance> {
    let mut metered = Linker::<HostState>::new(store.engine());
    for import in module.imports() {
        let (namespace, name) = (import.module(), import.name());
        let Ok(Extern::Func(inner)) = linker.get(&mut *store, namespace, name) else {
            return Err(wasmtime::format_err!(
                "import `{namespace}.{name}` is not a host function"
            ));
        };
        let ty = inner.ty(&*store);
        let label: Arc<str> = Arc::from(name);
        metered.func_new(namespace, name, ty, move |mut caller, params, results| {
            let before = caller.data().meter.counts();
            let fuel = caller.get_fuel().ok();
            let result = inner.call(&mut caller, params, results);
            caller.data_mut().meter.book(&label, before, fuel);
            result
        })?;
    }
    metered.instantiate(store, module)
}
