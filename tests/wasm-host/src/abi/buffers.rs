//! Byte buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`.
//!
//! Request/response bodies belong to the current HTTP context and are writable; the VM and plugin
//! configuration are always readable; the HTTP-call response body exists while
//! `proxy_on_http_call_response` runs (absent when the call failed).

use crate::guest::{self, Caller};
use crate::state::HostState;
use crate::types::{BufferType, Status};
use wasmtime::{Linker, Result};

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_buffer_bytes", get_buffer_bytes)?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", set_buffer_bytes)?;
    Ok(())
}

fn read_buffer(state: &mut HostState, buffer: BufferType) -> std::result::Result<Vec<u8>, Status> {
    match buffer {
        BufferType::RequestBody | BufferType::ResponseBody => {
            let label = format!("proxy_get_buffer_bytes({buffer:?})");
            let stream = state.stream_for(&label).ok_or(Status::BadArgument)?;
            Ok(stream.body_mut(buffer == BufferType::ResponseBody).clone())
        }
        BufferType::CallResponseBody => state
            .http
            .delivering
            .as_ref()
            .map(|r| r.body.clone())
            .ok_or(Status::NotFound),
        BufferType::VmConfiguration => Ok(state.config.vm_configuration.clone()),
        BufferType::PluginConfiguration => Ok(state.config.plugin_configuration.clone()),
        // gRPC responses never arrive (calls are answered "unimplemented"); TCP and foreign-call
        // buffers do not exist for an HTTP filter.
        BufferType::GrpcReceive
        | BufferType::DownstreamData
        | BufferType::UpstreamData
        | BufferType::CallData => Err(Status::NotFound),
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
    let label = format!("proxy_set_buffer_bytes({buffer:?})");
    let Some(stream) = caller.data_mut().stream_for(&label) else {
        return Ok(Status::BadArgument.raw());
    };
    // Replace `size` bytes at `start` (clamped): covers Envoy's prepend (0, 0), append (len, 0)
    // and replace-all (0, len) cases.
    let body = stream.body_mut(buffer == BufferType::ResponseBody);
    let start = (start as usize).min(body.len());
    let end = start.saturating_add(size as usize).min(body.len());
    body.splice(start..end, data);
    Ok(Status::Ok.raw())
}
