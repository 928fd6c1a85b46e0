//! HTTP stream state and control: `proxy_send_local_response`, `proxy_continue_stream`,
//! `proxy_close_stream`.

use crate::codec;
use crate::guest::{self, Caller};
use crate::headers::HeaderMap;
use crate::state::HostState;
use crate::types::{MapType, Status, StreamType};
use std::collections::BTreeMap;
use wasmtime::{Linker, Result};

/// A local response the filter sent with `proxy_send_local_response` (the SDK's
/// `send_http_response`/`send_grpc_response`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status code.
    pub status_code: u16,
    /// Envoy's "response code details" (empty when the SDK sends none).
    pub details: String,
    /// Headers to send.
    pub headers: HeaderMap,
    /// Body (for a gRPC response, the gRPC status message).
    pub body: Vec<u8>,
    /// gRPC status, `None` for a plain HTTP response (the ABI's `-1`).
    pub grpc_status: Option<i32>,
}

impl LocalResponse {
    /// The body as UTF-8, lossily.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP context's data and what the filter did to it.
#[derive(Default)]
pub(crate) struct StreamState {
    pub(crate) request_headers: HeaderMap,
    pub(crate) request_trailers: HeaderMap,
    pub(crate) response_headers: HeaderMap,
    pub(crate) response_trailers: HeaderMap,
    pub(crate) request_body: Vec<u8>,
    pub(crate) response_body: Vec<u8>,
    /// The callback that paused a direction and has not been followed by a resume.
    pub(crate) request_paused: Option<&'static str>,
    pub(crate) response_paused: Option<&'static str>,
    /// Whether the last body callback paused, so Envoy keeps buffering into the same buffer.
    pub(crate) request_body_buffering: bool,
    pub(crate) response_body_buffering: bool,
    /// Sent and not yet taken by the test.
    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) local_response_sent: bool,
    /// `proxy_close_stream` calls not yet taken by the test.
    pub(crate) resets: Vec<StreamType>,
    /// Every `proxy_continue_stream`, in order.
    pub(crate) resumes: Vec<StreamType>,
    /// Per-stream properties (`None`: declared absent); they shadow the VM's.
    pub(crate) properties: BTreeMap<Vec<String>, Option<Vec<u8>>>,
}

impl StreamState {
    pub(crate) fn map_mut(&mut self, map: MapType) -> Option<&mut HeaderMap> {
        match map {
            MapType::RequestHeaders => Some(&mut self.request_headers),
            MapType::RequestTrailers => Some(&mut self.request_trailers),
            MapType::ResponseHeaders => Some(&mut self.response_headers),
            MapType::ResponseTrailers => Some(&mut self.response_trailers),
            _ => None,
        }
    }

    pub(crate) fn body_mut(&mut self, response: bool) -> &mut Vec<u8> {
        if response {
            &mut self.response_body
        } else {
            &mut self.request_body
        }
    }
}

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_send_local_response", send_local_response)?;
    linker.func_wrap("env", "proxy_continue_stream", continue_stream)?;
    linker.func_wrap("env", "proxy_close_stream", close_stream)?;
    Ok(())
}

#[allow(clippy::too_many_arguments, reason = "the ABI signature")]
fn send_local_response(
    mut caller: Caller<'_>,
    status_code: u32,
    details_ptr: u32,
    details_len: u32,
    body_ptr: u32,
    body_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    grpc_status: i32,
) -> Result<u32> {
    let details = guest::read_string(&caller, details_ptr, details_len)?;
    let body = guest::read(&caller, body_ptr, body_len)?;
    let Some(headers) = codec::decode_map(&guest::read(&caller, headers_ptr, headers_len)?) else {
        return Ok(Status::SerializationFailure.raw());
    };
    let Ok(status_code) = u16::try_from(status_code) else {
        caller.data_mut().note(format!(
            "proxy_send_local_response({status_code}) answered BadArgument: not an HTTP status"
        ));
        return Ok(Status::BadArgument.raw());
    };
    let response = LocalResponse {
        status_code,
        details,
        headers,
        body,
        grpc_status: (grpc_status >= 0).then_some(grpc_status),
    };
    let state = caller.data_mut();
    let context = state.current_context;
    let Some(stream) = state.stream_for(&format!("proxy_send_local_response({status_code})"))
    else {
        return Ok(Status::BadArgument.raw());
    };
    if stream.local_response_sent {
        state.violate(format!("proxy_send_local_response({status_code}): context {context} already sent a local response"));
        return Ok(Status::BadArgument.raw());
    }
    stream.local_response_sent = true;
    stream.local_response = Some(response);
    // The local reply ends both directions: nothing stays paused.
    stream.request_paused = None;
    stream.response_paused = None;
    Ok(Status::Ok.raw())
}

fn continue_stream(mut caller: Caller<'_>, stream_type: u32) -> Result<u32> {
    let Some(stream_type) = StreamType::from_raw(stream_type) else {
        return Ok(Status::BadArgument.raw());
    };
    let Some(stream) = caller
        .data_mut()
        .stream_for(&format!("proxy_continue_stream({stream_type:?})"))
    else {
        return Ok(Status::BadArgument.raw());
    };
    match stream_type {
        StreamType::HttpRequest => stream.request_paused = None,
        StreamType::HttpResponse => stream.response_paused = None,
        StreamType::Downstream | StreamType::Upstream => {}
    }
    stream.resumes.push(stream_type);
    Ok(Status::Ok.raw())
}

fn close_stream(mut caller: Caller<'_>, stream_type: u32) -> Result<u32> {
    let Some(stream_type) = StreamType::from_raw(stream_type) else {
        return Ok(Status::BadArgument.raw());
    };
    let Some(stream) = caller
        .data_mut()
        .stream_for(&format!("proxy_close_stream({stream_type:?})"))
    else {
        return Ok(Status::BadArgument.raw());
    };
    stream.resets.push(stream_type);
    stream.request_paused = None;
    stream.response_paused = None;
    Ok(Status::Ok.raw())
}
