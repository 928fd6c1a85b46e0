//! The proxy-wasm ABI 0.2.1 enumerations the host exchanges with filters (values as in the Rust SDK's
//! `proxy_wasm::types`). Own copies, so the host does not link the guest SDK natively.

use std::fmt;

/// What a filter callback tells the host to do with the stream (`proxy_wasm::types::Action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Continue iteration: pass the headers/body on.
    Continue,
    /// Stop iteration (Envoy `StopIteration` / `StopAllIterationAndBuffer`) until the filter resumes.
    Pause,
}

impl Action {
    pub(crate) fn from_raw(raw: i32) -> Option<Action> {
        match raw {
            0 => Some(Action::Continue),
            1 => Some(Action::Pause),
            _ => None,
        }
    }
}

/// Log levels of `proxy_log` (`proxy_wasm::types::LogLevel`), ordered from most to least verbose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
    /// Critical: the Rust SDK logs panics at this level.
    Critical,
}

impl LogLevel {
    pub(crate) fn from_raw(raw: u32) -> Option<LogLevel> {
        Some(match raw {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    pub(crate) fn raw(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        })
    }
}

/// Kinds of metric a filter can define (`proxy_wasm::types::MetricType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Monotonic counter.
    Counter,
    /// Gauge that can go up and down.
    Gauge,
    /// Histogram of recorded values.
    Histogram,
}

impl MetricType {
    pub(crate) fn from_raw(raw: u32) -> Option<MetricType> {
        match raw {
            0 => Some(MetricType::Counter),
            1 => Some(MetricType::Gauge),
            2 => Some(MetricType::Histogram),
            _ => None,
        }
    }
}

/// The two directions of an HTTP stream, as named by `proxy_continue_stream`/`proxy_close_stream`
/// (`proxy_wasm::types::StreamType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamType {
    /// The request direction.
    HttpRequest,
    /// The response direction.
    HttpResponse,
    /// Downstream connection (TCP filters; recorded, otherwise unsupported).
    Downstream,
    /// Upstream connection (TCP filters; recorded, otherwise unsupported).
    Upstream,
}

impl StreamType {
    pub(crate) fn from_raw(raw: u32) -> Option<StreamType> {
        match raw {
            0 => Some(StreamType::HttpRequest),
            1 => Some(StreamType::HttpResponse),
            2 => Some(StreamType::Downstream),
            3 => Some(StreamType::Upstream),
            _ => None,
        }
    }
}

/// `proxy_wasm::types::MapType`: which header map a host call addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapType {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    GrpcInitialMetadata,
    GrpcTrailingMetadata,
    CallResponseHeaders,
    CallResponseTrailers,
}

impl MapType {
    pub(crate) fn from_raw(raw: u32) -> Option<MapType> {
        Some(match raw {
            0 => MapType::RequestHeaders,
            1 => MapType::RequestTrailers,
            2 => MapType::ResponseHeaders,
            3 => MapType::ResponseTrailers,
            4 => MapType::GrpcInitialMetadata,
            5 => MapType::GrpcTrailingMetadata,
            6 => MapType::CallResponseHeaders,
            7 => MapType::CallResponseTrailers,
            _ => return None,
        })
    }
}

/// `proxy_wasm::types::BufferType`: which byte buffer a host call addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufferType {
    RequestBody,
    ResponseBody,
    DownstreamData,
    UpstreamData,
    CallResponseBody,
    GrpcReceive,
    VmConfiguration,
    PluginConfiguration,
    CallData,
}

impl BufferType {
    pub(crate) fn from_raw(raw: u32) -> Option<BufferType> {
        Some(match raw {
            0 => BufferType::RequestBody,
            1 => BufferType::ResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::CallResponseBody,
            5 => BufferType::GrpcReceive,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::CallData,
            _ => return None,
        })
    }
}

/// `proxy_wasm::types::Status`: the result code of every host call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
}

impl Status {
    pub(crate) fn raw(self) -> u32 {
        self as u32
    }
}

/// gRPC status code UNIMPLEMENTED, the answer to every gRPC call.
pub(crate) const GRPC_UNIMPLEMENTED: u32 = 12;
