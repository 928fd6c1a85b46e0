//! Byte buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`.
//!
//! Request/response bodies belong to the current HTTP context and are writable; the VM and plugin
//! configuration are always readable; the HTTP-call response body exists while
//! `proxy_on_http_call_response` runs (absent when the call failed).

use crate::guest::{self, Caller};
use crate::state::{HostState, Phase};
use crate::types::{BufferType, Status};
use wasmtime::{Linker, Result};

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_buffer_bytes", get_buffer_bytes)?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", set_buffer_bytes)?;
    Ok(())
}

/// The body of the current stream in direction `response`, if Envoy exposes it now: during the
/// body callback of that direction, and while a body callback keeps buffering it (paused).
fn open_body(state: &mut HostState, response: bool) -> Option<&mut Vec<u8>> {
    let (phase, export) = if response {
        (Phase::ResponseBody, "proxy_on_response_body")
    } else {
        (Phase::RequestBody, "proxy_on_request_body")
    };
    let current = state.phase;
    let stream = state.streams.get_mut(&state.current_context)?;
    let paused = if response {
        stream.response_paused
    } else {
        stream.request_paused
    };
    (current == phase || paused == Some(export)).then(|| stream.body_mut(response))
}

fn read_buffer(state: &mut HostState, buffer: BufferType) -> std::result::Result<Vec<u8>, Status> {
    match buffer {
        // Envoy 1.40 answers a body it does not expose now with an empty buffer.
        BufferType::RequestBody | BufferType::ResponseBody => {
            Ok(open_body(state, buffer == BufferType::ResponseBody)
                .map(|body| body.clone())
                .unwrap_or_default())
        }
        BufferType::CallResponseBody => state
            .http
            .delivering
            .as_ref()
            .map(|r| r.body.clone())
            .ok_or(Status::NotFound),
        BufferType::VmConfiguration => Ok(state.config.vm_configuration.clone()),
        // Only `proxy_on_configure` sees the plugin configuration.
        BufferType::PluginConfiguration if state.phase == Phase::Configure => {
            Ok(state.config.plugin_configuration.clone())
        }
        BufferType::PluginConfiguration => Err(Status::NotFound),
        BufferType::GrpcReceive => Ok(state.grpc.delivering_message.clone().unwrap_or_default()),
        // Envoy 1.40 answers an HTTP filter's TCP buffers with an empty buffer.
        BufferType::DownstreamData | BufferType::UpstreamData => Ok(Vec::new()),
        BufferType::CallData => Err(Status::NotFound),
    }
}

fn get_buffer_bytes(
    mut caller: Caller<'_>,
    buffer: u32,
    start: u32,
    max_size: u32,
    return_data: u32,
    return_size: u32,
) -> Result<u32> {
    let Some(buffer) = BufferType::from_raw(buffer) else {
        return Ok(Status::BadArgument.raw());
    };
    let data = match read_buffer(caller.data_mut(), buffer) {
        Ok(data) => data,
        Err(status) => return Ok(status.raw()),
    };
    // As Envoy: clamp to the buffer; an empty slice is Ok with nothing returned.
    let start = (start as usize).min(data.len());
    let end = start.saturating_add(max_size as usize).min(data.len());
    guest::return_bytes(&mut caller, &data[start..end], return_data, return_size)?;
    Ok(Status::Ok.raw())
}

fn set_buffer_bytes(
    mut caller: Caller<'_>,
    buffer: u32,
    start: u32,
    size: u32,
    data_ptr: u32,
    data_len: u32,
) -> Result<u32> {
    let data = guest::read(&caller, data_ptr, data_len)?;
    let buffer = match BufferType::from_raw(buffer) {
        Some(buffer @ (BufferType::RequestBody | BufferType::ResponseBody)) => buffer,
        _ => return Ok(Status::BadArgument.raw()),
    };
    let state = caller.data_mut();
    let Some(body) = open_body(state, buffer == BufferType::ResponseBody) else {
        state.note(format!(
            "proxy_set_buffer_bytes({buffer:?}) answered BadArgument: a body is writable only during its body callback, or while that callback keeps it buffered"
        ));
        return Ok(Status::BadArgument.raw());
    };
    // Envoy 1.40 knows three edits: prepend (start 0, size 0), replace all (start 0, size >=
    // length) and append (start >= length); anything else is `BadArgument`.
    let (start, size, len) = (start as usize, size as usize, body.len());
    if start == 0 && size == 0 {
        body.splice(0..0, data);
    } else if start == 0 && size >= len {
        *body = data;
    } else if start >= len {
        body.extend(data);
    } else {
        return Ok(Status::BadArgument.raw());
    }
    Ok(Status::Ok.raw())
}
