//! Properties: `proxy_get_property`, `proxy_set_property`.
//!
//! Paths arrive as NUL-separated segments (`request\0path`). The test sets values per VM or per
//! stream (stream values shadow VM values) or declares a path absent. Reading a path the test did
//! not mention is a violation: a filter depending on a property the test forgot is a test bug.

use crate::codec;
use crate::guest::{self, Caller};
use crate::state::HostState;
use crate::types::Status;
use std::collections::BTreeMap;
use wasmtime::{Linker, Result};

/// VM-wide property values (`None`: declared absent).
#[derive(Default)]
pub(crate) struct Properties {
    pub(crate) values: BTreeMap<Vec<String>, Option<Vec<u8>>>,
}

/// Renders a path the way Envoy configuration spells it: `request.path`.
pub(crate) fn dotted(path: &[String]) -> String {
    path.join(".")
}

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_property", get_property)?;
    linker.func_wrap("env", "proxy_set_property", set_property)?;
    Ok(())
}

/// The value the filter sees for `path` in the current context: `Some(None)` if declared absent,
/// `None` if the test never mentioned it.
pub(crate) fn lookup(state: &mut HostState, path: &[String]) -> Option<Option<Vec<u8>>> {
    if let Some(value) = state.current_stream().and_then(|s| s.properties.get(path)) {
        return Some(value.clone());
    }
    state.properties.values.get(path).cloned()
}

fn get_property(
    mut caller: Caller<'_>,
    path_ptr: u32,
    path_len: u32,
    return_data: u32,
    return_size: u32,
) -> Result<u32> {
    let path = codec::decode_path(&guest::read(&caller, path_ptr, path_len)?);
    let state = caller.data_mut();
    match lookup(state, &path) {
        Some(Some(value)) => {
            guest::return_bytes(&mut caller, &value, return_data, return_size)?;
            Ok(Status::Ok.raw())
        }
        Some(None) => Ok(Status::NotFound.raw()),
        None => {
            state.violate(format!(
                "proxy_get_property(\"{}\"): property not set by the test (set it, or declare it absent)",
                dotted(&path)
            ));
            Ok(Status::NotFound.raw())
        }
    }
}

fn set_property(
    mut caller: Caller<'_>,
    path_ptr: u32,
    path_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> Result<u32> {
    let path = codec::decode_path(&guest::read(&caller, path_ptr, path_len)?);
    let value = guest::read(&caller, value_ptr, value_len)?;
    let state = caller.data_mut();
    // Envoy 1.40 keeps properties a filter sets in the stream's filter state: a root context has
    // none, and gets `NotFound`.
    let Some(stream) = state.current_stream() else {
        state.note(format!(
            "proxy_set_property(\"{}\") answered NotFound: a root context cannot set properties",
            dotted(&path)
        ));
        return Ok(Status::NotFound.raw());
    };
    stream.properties.insert(path, Some(value));
    Ok(Status::Ok.raw())
}
