//! Header maps: `proxy_{get,set}_header_map_pairs`, `proxy_get_header_map_value`,
//! `proxy_{add,replace,remove}_header_map_value`.
//!
//! As in Envoy 1.40, a stream's map is open only during the callback that delivers it and while that
//! callback keeps its direction paused (afterwards: `BadArgument`, on which the Rust SDK panics);
//! `proxy_on_log` reads every map but changes none. HTTP-call response maps exist during
//! `proxy_on_http_call_response`, and not at all for a reset call. A map that is not exposed lists
//! as empty through `proxy_get_header_map_pairs`.

use crate::codec;
use crate::guest::{self, Caller};
use crate::headers::HeaderMap;
use crate::state::{HostState, Phase};
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

/// Whether the filter may read or change a map now, as Envoy decides it.
enum Access {
    Writable,
    ReadOnly,
    /// Envoy answers `BadArgument`; the reason is noted for the failure message.
    Closed(&'static str),
}

/// Envoy hands a stream's header map to the filter only during the callback that delivers it, and
/// for as long as that callback keeps the stream paused; `proxy_on_log` may read them all.
fn stream_map_access(state: &HostState, map_type: MapType) -> Access {
    let Some(stream) = state.streams.get(&state.current_context) else {
        return Access::Closed("there is no HTTP stream in a root context");
    };
    if state.phase == Phase::Log {
        return Access::ReadOnly;
    }
    let (phase, paused_by, closed) = match map_type {
        MapType::RequestHeaders => (
            Phase::RequestHeaders,
            stream.request_paused,
            "request headers are only open during proxy_on_request_headers and while it keeps the request paused",
        ),
        MapType::RequestTrailers => (
            Phase::RequestTrailers,
            stream.request_paused,
            "request trailers are only open during proxy_on_request_trailers and while it keeps the request paused",
        ),
        MapType::ResponseHeaders => (
            Phase::ResponseHeaders,
            stream.response_paused,
            "response headers are only open during proxy_on_response_headers and while it keeps the response paused",
        ),
        _ => (
            Phase::ResponseTrailers,
            stream.response_paused,
            "response trailers are only open during proxy_on_response_trailers and while it keeps the response paused",
        ),
    };
    let export = match phase {
        Phase::RequestHeaders => "proxy_on_request_headers",
        Phase::RequestTrailers => "proxy_on_request_trailers",
        Phase::ResponseHeaders => "proxy_on_response_headers",
        _ => "proxy_on_response_trailers",
    };
    if state.phase == phase || paused_by == Some(export) {
        Access::Writable
    } else {
        Access::Closed(closed)
    }
}

fn is_stream_map(map_type: MapType) -> bool {
    matches!(
        map_type,
        MapType::RequestHeaders
            | MapType::RequestTrailers
            | MapType::ResponseHeaders
            | MapType::ResponseTrailers
    )
}

/// A copy of the map `map_type` names in the current callback, or why Envoy would refuse it.
fn read_map(state: &mut HostState, map_type: MapType) -> Result<HeaderMap, &'static str> {
    match map_type {
        MapType::CallResponseHeaders | MapType::CallResponseTrailers => {
            match (state.phase, state.http.delivering.as_ref()) {
                (Phase::HttpCallResponse, Some(response)) => {
                    if map_type == MapType::CallResponseHeaders {
                        Ok(response.headers.clone())
                    } else if response.trailers.is_empty() {
                        Err("the HTTP-call response has no trailers")
                    } else {
                        Ok(response.trailers.clone())
                    }
                }
                (Phase::HttpCallResponse, None) => {
                    Err("the HTTP call was reset: a failed call has no response maps")
                }
                (Phase::Log, _) => Ok(HeaderMap::new()),
                _ => Err("HTTP-call response maps exist only during proxy_on_http_call_response"),
            }
        }
        MapType::GrpcInitialMetadata | MapType::GrpcTrailingMetadata => {
            match (&state.grpc.delivering_metadata, state.phase) {
                (Some(map), Phase::GrpcCallback) => Ok(map.clone()),
                (_, Phase::Log) => Ok(HeaderMap::new()),
                _ => Err("gRPC metadata exists only while the host delivers it"),
            }
        }
        _ => match stream_map_access(state, map_type) {
            Access::Writable | Access::ReadOnly => Ok(state
                .streams
                .get_mut(&state.current_context)
                .and_then(|s| s.map_mut(map_type))
                .map(|m| m.clone())
                .unwrap_or_default()),
            Access::Closed(why) => Err(why),
        },
    }
}

/// Applies `edit` to the writable map `map_type` of the current HTTP context.
fn edit_map(
    state: &mut HostState,
    map_type: MapType,
    call: &str,
    edit: impl FnOnce(&mut HeaderMap),
) -> Status {
    let why = if is_stream_map(map_type) {
        match stream_map_access(state, map_type) {
            Access::Writable => {
                if let Some(map) = state
                    .streams
                    .get_mut(&state.current_context)
                    .and_then(|s| s.map_mut(map_type))
                {
                    edit(map);
                }
                return Status::Ok;
            }
            Access::ReadOnly => "maps are read-only during proxy_on_log",
            Access::Closed(why) => why,
        }
    } else {
        "HTTP-call responses and gRPC metadata are read-only"
    };
    state.note(format!("{call}({map_type:?}) answered BadArgument: {why}"));
    Status::BadArgument
}

fn map_type(raw: u32) -> Result<MapType, Status> {
    MapType::from_raw(raw).ok_or(Status::BadArgument)
}

fn get_pairs(mut caller: Caller<'_>, map: u32, return_data: u32, return_size: u32) -> Result<u32> {
    let map = match map_type(map) {
        // Envoy answers a map it does not expose now with an empty list.
        Ok(m) => read_map(caller.data_mut(), m).unwrap_or_default(),
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
    let map = match map_type(map) {
        Ok(m) => match read_map(caller.data_mut(), m) {
            Ok(map) => map,
            Err(why) => {
                caller.data_mut().note(format!(
                    "proxy_get_header_map_value({m:?}, {key:?}) answered BadArgument: {why}"
                ));
                return Ok(Status::BadArgument.raw());
            }
        },
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
