//! The host functions, one module per ABI area. Each module owns its slice of [`HostState`] and a
//! `link` function adding its imports to the linker.
//!
//! Host functions return `Status` codes as Envoy does; a guest error the filter cannot see as a
//! status (an out-of-bounds pointer) traps. Calls the test did not allow for are recorded with
//! [`HostState::violate`] and answered as Envoy would, and the callback then fails.

pub(crate) mod buffers;
pub(crate) mod context;
pub(crate) mod headers;
pub(crate) mod http_calls;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod properties;
pub(crate) mod shared_data;
pub(crate) mod stream;
pub(crate) mod wasi;

use crate::state::HostState;
use wasmtime::Linker;

/// Adds every host function to `linker`.
pub(crate) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    logging::link(linker)?;
    headers::link(linker)?;
    buffers::link(linker)?;
    properties::link(linker)?;
    shared_data::link(linker)?;
    http_calls::link(linker)?;
    metrics::link(linker)?;
    stream::link(linker)?;
    context::link(linker)?;
    wasi::link(linker)
}
