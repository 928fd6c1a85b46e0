//! Drives the fixture filter (`fixture-filter/`, built to wasm32-wasip1) through the host, one
//! module per ABI area. One test binary, so the fixture is built and compiled once.

mod calls;
mod conformance;
mod example_filter;
mod ledger;
mod lifecycle;
mod loading;
mod requests;
mod shared;
mod strict;

use keymesh_wasm_host::{build_filter, FilterModule, HostError, Vm, VmBuilder};
use std::sync::OnceLock;

/// The fixture, built and compiled once per test binary.
pub(crate) fn fixture() -> Result<&'static FilterModule, HostError> {
    static MODULE: OnceLock<Result<FilterModule, String>> = OnceLock::new();
    let module = MODULE.get_or_init(|| {
        let path = build_filter("keymesh-host-fixture").map_err(|e| e.to_string())?;
        FilterModule::load(path).map_err(|e| e.to_string())
    });
    module
        .as_ref()
        .map_err(|e| HostError::Expectation(format!("fixture unavailable: {e}")))
}

/// A builder for the fixture with the clusters it calls (`authz`, `keys`) declared.
pub(crate) fn fixture_vm() -> Result<VmBuilder, HostError> {
    Ok(fixture()?.vm().cluster("authz").cluster("keys"))
}

/// A started and configured fixture VM with root id `fixture`.
pub(crate) fn started_vm() -> Result<Vm, HostError> {
    let mut vm = fixture_vm()?.root_id("fixture").build()?;
    vm.start()?;
    Ok(vm)
}
