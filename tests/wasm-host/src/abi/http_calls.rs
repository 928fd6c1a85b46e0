//! Outgoing calls: `proxy_http_call` and the gRPC family (`proxy_grpc_call`, `proxy_grpc_stream`,
//! `proxy_grpc_send`, `proxy_grpc_cancel`, `proxy_grpc_close`, `proxy_get_status`). Calls are
//! recorded until the test answers them. As in Envoy 1.40, a call to a cluster the test did not
//! declare fails at dispatch (HTTP: `BadArgument`, gRPC: `ParseFailure`), and one to a cluster
//! without hosts gets `InternalFailure`.

use crate::codec;
use crate::guest::{self, Caller};
use crate::headers::HeaderMap;
use crate::state::HostState;
use crate::types::Status;
use std::time::Duration;
use wasmtime::{Linker, Result};

/// An HTTP call the filter dispatched with `proxy_http_call`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    /// Token the filter got back; answer the call with it.
    pub token: u32,
    /// Context that dispatched it (the response is delivered there).
    pub context_id: u32,
    /// Upstream cluster name.
    pub upstream: String,
    /// Request headers, including `:method`, `:path`, `:authority`.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: HeaderMap,
    /// Timeout the filter asked for.
    pub timeout: Duration,
}

impl HttpCall {
    /// `:method`.
    pub fn method(&self) -> &str {
        self.headers.get(":method").unwrap_or_default()
    }

    /// `:path`.
    pub fn path(&self) -> &str {
        self.headers.get(":path").unwrap_or_default()
    }

    /// `:authority`.
    pub fn authority(&self) -> &str {
        self.headers.get(":authority").unwrap_or_default()
    }

    /// One line naming the call, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "HTTP call #{} to cluster `{}` ({} {}, timeout {:?}) from context {}",
            self.token,
            self.upstream,
            self.method(),
            self.path(),
            self.timeout,
            self.context_id
        )
    }
}

/// The answer a test gives to an [`HttpCall`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpResponse {
    /// Response headers (`:status` first).
    pub headers: HeaderMap,
    /// Response body.
    pub body: Vec<u8>,
    /// Response trailers.
    pub trailers: HeaderMap,
}

impl HttpResponse {
    /// A response with `:status` set to `status`.
    pub fn new(status: u16) -> HttpResponse {
        let mut headers = HeaderMap::new();
        headers.append(":status", status.to_string());
        HttpResponse {
            headers,
            ..HttpResponse::default()
        }
    }

    /// What Envoy 1.40 delivers when it cannot connect to the cluster's host: a 503 with its
    /// `upstream connect error or disconnect/reset before headers` body (checked by the
    /// conformance probe).
    pub fn connect_failure() -> HttpResponse {
        HttpResponse::new(503)
            .header("content-type", "text/plain")
            .body("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure")
    }

    /// What Envoy 1.40 delivers when the call's timeout passes: a 504 `upstream request timeout`
    /// (checked by the conformance probe).
    pub fn timeout() -> HttpResponse {
        HttpResponse::new(504)
            .header("content-type", "text/plain")
            .body("upstream request timeout")
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> HttpResponse {
        self.headers.append(name, value);
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpResponse {
        self.body = body.into();
        self
    }

    /// Adds a trailer.
    pub fn trailer(mut self, name: &str, value: &str) -> HttpResponse {
        self.trailers.append(name, value);
        self
    }
}

/// The answer a test gives to a [`GrpcCall`]: initial metadata, messages, trailing metadata and the
/// closing status, delivered in that order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrpcResponse {
    /// Initial metadata (`proxy_on_grpc_receive_initial_metadata`, skipped when empty).
    pub initial_metadata: HeaderMap,
    /// Messages, each delivered with `proxy_on_grpc_receive`.
    pub messages: Vec<Vec<u8>>,
    /// Trailing metadata (`proxy_on_grpc_receive_trailing_metadata`, skipped when empty).
    pub trailing_metadata: HeaderMap,
    /// gRPC status code passed to `proxy_on_grpc_close` (0 = OK).
    pub status: u32,
    /// Status message, readable with `proxy_get_status`.
    pub status_message: String,
}

impl GrpcResponse {
    /// Status OK with one response message.
    pub fn ok(message: impl Into<Vec<u8>>) -> GrpcResponse {
        GrpcResponse {
            messages: vec![message.into()],
            ..GrpcResponse::default()
        }
    }

    /// A call closed with status `code` (e.g. 7 PERMISSION_DENIED) and `message`, without messages.
    pub fn status(code: u32, message: &str) -> GrpcResponse {
        GrpcResponse {
            status: code,
            status_message: message.to_owned(),
            ..GrpcResponse::default()
        }
    }

    /// Adds initial metadata.
    pub fn initial_metadata(mut self, name: &str, value: &str) -> GrpcResponse {
        self.initial_metadata.append(name, value);
        self
    }

    /// Adds trailing metadata.
    pub fn trailing_metadata(mut self, name: &str, value: &str) -> GrpcResponse {
        self.trailing_metadata.append(name, value);
        self
    }
}

/// A gRPC call or stream the filter opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcCall {
    /// Token the filter got back.
    pub token: u32,
    /// Context that opened it.
    pub context_id: u32,
    /// Upstream cluster name.
    pub upstream: String,
    /// gRPC service.
    pub service: String,
    /// gRPC method.
    pub method: String,
    /// Initial metadata.
    pub initial_metadata: HeaderMap,
    /// Request message (empty for a stream).
    pub message: Vec<u8>,
    /// Timeout (zero for a stream).
    pub timeout: Duration,
    /// Opened with `proxy_grpc_stream` rather than `proxy_grpc_call`.
    pub streaming: bool,
}

impl GrpcCall {
    /// One line naming the call, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "gRPC {} #{} `{}/{}` on cluster `{}` from context {}",
            if self.streaming { "stream" } else { "call" },
            self.token,
            self.service,
            self.method,
            self.upstream,
            self.context_id
        )
    }
}

/// HTTP calls of one VM.
#[derive(Default)]
pub(crate) struct HttpCalls {
    last_token: u32,
    /// Every call dispatched, in order.
    pub(crate) history: Vec<HttpCall>,
    /// Tokens dispatched and not yet answered.
    pub(crate) pending: Vec<u32>,
    /// The response being delivered (`None` outside delivery and for a failed call).
    pub(crate) delivering: Option<HttpResponse>,
    /// Dispatches are refused with `BadArgument`, as Envoy does before its cluster manager is ready.
    pub(crate) refusing: bool,
    /// Clusters the test declared, and whether each has hosts.
    pub(crate) clusters: std::collections::BTreeMap<String, bool>,
}

/// Why a dispatch to `upstream` fails at once, as Envoy 1.40 decides it: `(status, reason)`.
fn cluster_check(state: &HostState, upstream: &str, unknown: Status) -> Option<(Status, String)> {
    match state.http.clusters.get(upstream) {
        Some(true) => None,
        Some(false) => Some((
            Status::InternalFailure,
            format!("cluster `{upstream}` has no hosts"),
        )),
        None => Some((
            unknown,
            format!(
                "cluster `{upstream}` is unknown (declare it with VmBuilder::cluster; declared: {:?})",
                state.http.clusters.keys().collect::<Vec<_>>()
            ),
        )),
    }
}

impl HttpCalls {
    /// Tokens start at 1 and are shared by HTTP and gRPC calls, so 0 never names a call.
    pub(crate) fn next_token(&mut self) -> u32 {
        self.last_token += 1;
        self.last_token
    }

    pub(crate) fn call(&self, token: u32) -> Option<&HttpCall> {
        self.history.iter().find(|c| c.token == token)
    }
}

/// gRPC calls of one VM.
#[derive(Default)]
pub(crate) struct GrpcCalls {
    /// Answer every gRPC call `UNIMPLEMENTED` right after the callback (`allow_grpc_calls`).
    pub(crate) auto_unimplemented: bool,
    pub(crate) history: Vec<GrpcCall>,
    /// Tokens of calls still open (the test has not answered them, nor the filter cancelled them).
    pub(crate) open: Vec<u32>,
    /// `(context, token)` of calls to be closed with `UNIMPLEMENTED` after the callback.
    pub(crate) to_close: Vec<(u32, u32)>,
    /// `(code, message)` while `proxy_on_grpc_close` runs, for `proxy_get_status`.
    pub(crate) status: Option<(u32, String)>,
    /// Metadata being delivered, and the message being delivered (`GrpcReceive` buffer).
    pub(crate) delivering_metadata: Option<HeaderMap>,
    pub(crate) delivering_message: Option<Vec<u8>>,
}

impl GrpcCalls {
    pub(crate) fn call(&self, token: u32) -> Option<&GrpcCall> {
        self.history.iter().find(|c| c.token == token)
    }
}

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_http_call", http_call)?;
    linker.func_wrap("env", "proxy_grpc_call", grpc_call)?;
    linker.func_wrap("env", "proxy_grpc_stream", grpc_stream)?;
    linker.func_wrap("env", "proxy_grpc_send", grpc_send)?;
    linker.func_wrap("env", "proxy_grpc_cancel", grpc_cancel)?;
    linker.func_wrap("env", "proxy_grpc_close", grpc_cancel)?;
    linker.func_wrap("env", "proxy_get_status", get_status)?;
    Ok(())
}

#[allow(clippy::too_many_arguments, reason = "the ABI signature")]
fn http_call(
    mut caller: Caller<'_>,
    upstream_ptr: u32,
    upstream_len: u32,
    headers_ptr: u32,
    headers_len: u32,
    body_ptr: u32,
    body_len: u32,
    trailers_ptr: u32,
    trailers_len: u32,
    timeout_ms: u32,
    return_token: u32,
) -> Result<u32> {
    let upstream = guest::read_string(&caller, upstream_ptr, upstream_len)?;
    let headers = codec::decode_map(&guest::read(&caller, headers_ptr, headers_len)?);
    let trailers = codec::decode_map(&guest::read(&caller, trailers_ptr, trailers_len)?);
    let body = guest::read(&caller, body_ptr, body_len)?;
    let (Some(headers), Some(trailers)) = (headers, trailers) else {
        return Ok(Status::SerializationFailure.raw());
    };
    // Envoy refuses a call without these pseudo-headers.
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| !headers.contains(h))
    {
        return Ok(Status::BadArgument.raw());
    }
    let state = caller.data_mut();
    if state.http.refusing {
        state.note(format!(
            "proxy_http_call(\"{upstream}\") refused: refuse_http_calls(true)"
        ));
        return Ok(Status::BadArgument.raw());
    }
    if let Some((status, why)) = cluster_check(state, &upstream, Status::BadArgument) {
        state.note(format!("proxy_http_call answered {status:?}: {why}"));
        return Ok(status.raw());
    }
    let token = state.http.next_token();
    let context_id = state.current_context;
    let timeout = Duration::from_millis(u64::from(timeout_ms));
    state.http.history.push(HttpCall {
        token,
        context_id,
        upstream,
        headers,
        body,
        trailers,
        timeout,
    });
    state.http.pending.push(token);
    guest::write_u32(&mut caller, return_token, token)?;
    Ok(Status::Ok.raw())
}

/// Records a gRPC call or stream; with `allow_grpc_calls` its `UNIMPLEMENTED` close is scheduled.
fn open_grpc(caller: &mut Caller<'_>, mut call: GrpcCall, return_token: u32) -> Result<u32> {
    let state = caller.data_mut();
    if let Some((status, why)) = cluster_check(state, &call.upstream, Status::ParseFailure) {
        state.note(format!("proxy_grpc_call answered {status:?}: {why}"));
        return Ok(status.raw());
    }
    call.token = state.http.next_token();
    call.context_id = state.current_context;
    let token = call.token;
    state.grpc.open.push(token);
    if state.grpc.auto_unimplemented {
        state.grpc.to_close.push((call.context_id, token));
    }
    state.grpc.history.push(call);
    guest::write_u32(caller, return_token, token)?;
    Ok(Status::Ok.raw())
}

#[allow(clippy::too_many_arguments, reason = "the ABI signature")]
fn grpc_call(
    mut caller: Caller<'_>,
    upstream_ptr: u32,
    upstream_len: u32,
    service_ptr: u32,
    service_len: u32,
    method_ptr: u32,
    method_len: u32,
    metadata_ptr: u32,
    metadata_len: u32,
    message_ptr: u32,
    message_len: u32,
    timeout_ms: u32,
    return_token: u32,
) -> Result<u32> {
    let Some(initial_metadata) =
        codec::decode_map(&guest::read(&caller, metadata_ptr, metadata_len)?)
    else {
        return Ok(Status::SerializationFailure.raw());
    };
    let call = GrpcCall {
        token: 0,
        context_id: 0,
        upstream: guest::read_string(&caller, upstream_ptr, upstream_len)?,
        service: guest::read_string(&caller, service_ptr, service_len)?,
        method: guest::read_string(&caller, method_ptr, method_len)?,
        initial_metadata,
        message: guest::read(&caller, message_ptr, message_len)?,
        timeout: Duration::from_millis(u64::from(timeout_ms)),
        streaming: false,
    };
    open_grpc(&mut caller, call, return_token)
}

#[allow(clippy::too_many_arguments, reason = "the ABI signature")]
fn grpc_stream(
    mut caller: Caller<'_>,
    upstream_ptr: u32,
    upstream_len: u32,
    service_ptr: u32,
    service_len: u32,
    method_ptr: u32,
    method_len: u32,
    metadata_ptr: u32,
    metadata_len: u32,
    return_token: u32,
) -> Result<u32> {
    let Some(initial_metadata) =
        codec::decode_map(&guest::read(&caller, metadata_ptr, metadata_len)?)
    else {
        return Ok(Status::SerializationFailure.raw());
    };
    let call = GrpcCall {
        token: 0,
        context_id: 0,
        upstream: guest::read_string(&caller, upstream_ptr, upstream_len)?,
        service: guest::read_string(&caller, service_ptr, service_len)?,
        method: guest::read_string(&caller, method_ptr, method_len)?,
        initial_metadata,
        message: Vec::new(),
        timeout: Duration::ZERO,
        streaming: true,
    };
    open_grpc(&mut caller, call, return_token)
}

fn is_open(state: &HostState, token: u32) -> bool {
    state.grpc.open.contains(&token)
}

fn grpc_send(
    caller: Caller<'_>,
    token: u32,
    _message_ptr: u32,
    _message_len: u32,
    _end_stream: u32,
) -> Result<u32> {
    Ok(if is_open(caller.data(), token) {
        Status::Ok
    } else {
        Status::BadArgument
    }
    .raw())
}

/// Cancel and close: the call ends without a callback, as in Envoy.
fn grpc_cancel(mut caller: Caller<'_>, token: u32) -> Result<u32> {
    let state = caller.data_mut();
    if !is_open(state, token) {
        return Ok(Status::BadArgument.raw());
    }
    state.grpc.to_close.retain(|(_, t)| *t != token);
    state.grpc.open.retain(|t| *t != token);
    Ok(Status::Ok.raw())
}

fn get_status(
    mut caller: Caller<'_>,
    return_code: u32,
    return_data: u32,
    return_size: u32,
) -> Result<u32> {
    let (code, message) = caller.data().grpc.status.clone().unwrap_or_default();
    guest::write_u32(&mut caller, return_code, code)?;
    guest::return_bytes(&mut caller, message.as_bytes(), return_data, return_size)?;
    Ok(Status::Ok.raw())
}
