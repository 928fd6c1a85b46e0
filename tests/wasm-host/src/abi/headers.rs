//! Header maps: `proxy_{get,set}_header_map_pairs`, `proxy_get_header_map_value`,
//! `proxy_{add,replace,remove}_header_map_value`.
//!
//! Request/response headers and trailers belong to the current HTTP context; the HTTP-call response
//! maps exist while `proxy_on_http_call_response` runs (empty when the call failed); gRPC metadata
//! maps are always empty because gRPC calls are answered "unimplemented".

use crate::codec;
use crate::guest::{self, Caller};
use crate::headers::HeaderMap;
use crate::state::HostState;
use crate::types::{MapType, Status};
use wasmtime::{Linker, Result};

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_get_header_map_pairs", get_pairs)?;
    linker.func_wrap("env", "proxy_set_header_map_pairs", set_pairs)?;
    linker.func_wrap("env", "proxy_get_header_map_value", get_value)?;
    linker.func_wrap("env", "proxy_add_header_map_value", add_value)?;
    linker.func_wrap("env", "proxy_replace_header_map_value", replace_value)?;
    linker.func_wrap("env", "proxy_remove_header_map_value", remove_value)?;
    Ok(())
}

/// A copy of the map `map_type` names in the current context.
fn read_map(state: &mut HostState, map_type: MapType, call: &str) -> Result<HeaderMap, Status> {
    match map_type {
        MapType::CallResponseHeaders | MapType::CallResponseTrailers => {
            let response = state.http.delivering.as_ref();
            Ok(match (response, map_type) {
                (Some(response), MapType::CallResponseHeaders) => response.headers.clone(),
                (Some(response), _) => response.trailers.clone(),
                (None, _) => HeaderMap::new(),
            })
        }
        MapType::GrpcInitialMetadata | MapType::GrpcTrailingMetadata => Ok(HeaderMap::new()),
        _ => {
            let stream = state
                .stream_for(&format!("{call}({map_type:?})"))
                .ok_or(Status::BadArgument)?;
            Ok(stream
                .map_mut(map_type)
                .map(|m| m.clone())
                .unwrap_or_default())
        }
    }
}

/// Applies `edit` to the writable map `map_type` of the current HTTP context.
fn edit_map(
    state: &mut HostState,
    map_type: MapType,
    call: &str,
    edit: impl FnOnce(&mut HeaderMap),
) -> Status {
    let label = format!("{call}({map_type:?})");
    match map_type {
        MapType::RequestHeaders
        | MapType::RequestTrailers
        | MapType::ResponseHeaders
        | MapType::ResponseTrailers => {
            match state
                .stream_for(&label)
                .and_then(|stream| stream.map_mut(map_type))
            {
                Some(map) => {
                    edit(map);
                    Status::Ok
                }
                None => Status::BadArgument,
            }
        }
        // Envoy hands out HTTP-call responses and gRPC metadata read-only.
        _ => Status::BadArgument,
    }
}

fn map_type(raw: u32) -> Result<MapType, Status> {
    MapType::from_raw(raw).ok_or(Status::BadArgument)
}

fn get_pairs(mut caller: Caller<'_>, map: u32, return_data: u32, return_size: u32) -> Result<u32> {
    let map = match map_type(map)
        .and_then(|m| read_map(caller.data_mut(), m, "proxy_get_header_map_pairs"))
    {
        Ok(map) => map,
        Err(status) => return Ok(status.raw()),
    };
    guest::return_bytes(
        &mut caller,
        &codec::encode_map(&map),
        return_data,
        return_size,
    )?;
    Ok(Status::Ok.raw())
}

fn set_pairs(mut caller: Caller<'_>, map: u32, ptr: u32, len: u32) -> Result<u32> {
    let Some(pairs) = codec::decode_map(&guest::read(&caller, ptr, len)?) else {
        return Ok(Status::SerializationFailure.raw());
    };
    let status = match map_type(map) {
        Ok(m) => edit_map(caller.data_mut(), m, "proxy_set_header_map_pairs", |map| {
            *map = pairs
        }),
        Err(status) => status,
    };
    Ok(status.raw())
}

fn get_value(
    mut caller: Caller<'_>,
    map: u32,
    key_ptr: u32,
    key_len: u32,
    return_data: u32,
    return_size: u32,
) -> Result<u32> {
    let key = guest::read_string(&caller, key_ptr, key_len)?;
    let map = match map_type(map)
        .and_then(|m| read_map(caller.data_mut(), m, "proxy_get_header_map_value"))
    {
        Ok(map) => map,
        Err(status) => return Ok(status.raw()),
    };
    match map.get_bytes(&key) {
        Some(value) => {
            guest::return_bytes(&mut caller, value, return_data, return_size)?;
            Ok(Status::Ok.raw())
        }
        None => Ok(Status::NotFound.raw()),
    }
}

fn add_value(
    mut caller: Caller<'_>,
    map: u32,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> Result<u32> {
    let key = guest::read_string(&caller, key_ptr, key_len)?;
    let value = guest::read(&caller, value_ptr, value_len)?;
    let status = match map_type(map) {
        Ok(m) => edit_map(caller.data_mut(), m, "proxy_add_header_map_value", |map| {
            map.append(&key, value)
        }),
        Err(status) => status,
    };
    Ok(status.raw())
}

fn replace_value(
    mut caller: Caller<'_>,
    map: u32,
    key_ptr: u32,
    key_len: u32,
    value_ptr: u32,
    value_len: u32,
) -> Result<u32> {
    let key = guest::read_string(&caller, key_ptr, key_len)?;
    let value = guest::read(&caller, value_ptr, value_len)?;
    let status = match map_type(map) {
        Ok(m) => edit_map(
            caller.data_mut(),
            m,
            "proxy_replace_header_map_value",
            |map| map.replace(&key, value),
        ),
        Err(status) => status,
    };
    Ok(status.raw())
}

fn remove_value(mut caller: Caller<'_>, map: u32, key_ptr: u32, key_len: u32) -> Result<u32> {
    let key = guest::read_string(&caller, key_ptr, key_len)?;
    let status = match map_type(map) {
        Ok(m) => edit_map(
            caller.data_mut(),
            m,
            "proxy_remove_header_map_value",
            |map| map.remove(&key),
        ),
        Err(status) => status,
    };
    Ok(status.raw())
}
