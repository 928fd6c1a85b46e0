//! The one place that calls proxy-wasm host functions. Every call returns a `Result` (or a neutral value), so a
//! host error never becomes a panic in the data path.

use keymesh_core::delivery::{BodySource, SharedData, SharedDataError, SharedValue};
use keymesh_core::header_pairs::HeaderPairs;
use keymesh_core::verdict::Reply;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::time::{Duration, UNIX_EPOCH};

/// Milliseconds since the epoch by the host's clock (0 if the host cannot tell, which fails tokens closed).
pub(crate) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The request's headers as Envoy serialized them, read with one host call and parsed in place by
/// [`HeaderPairs`] (empty if the host refuses). The SDK's `get_map` would copy each name and value into a
/// `String` of its own, and panic on a value that is not UTF-8.
pub(crate) fn request_header_pairs() -> HeaderPairs {
    HeaderPairs::new(raw::header_map_pairs(MapType::HttpRequestHeaders).unwrap_or_default())
}

pub(crate) fn remove_request_header(name: &str) -> Result<(), Status> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)
}

pub(crate) fn replace_request_header(name: &str, value: &str) -> Result<(), Status> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
}

/// Adds a header the request does not have (cheaper for Envoy than a replace, which looks for it first).
pub(crate) fn add_request_header(name: &str, value: &str) -> Result<(), Status> {
    hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)
}

/// Brings the `log` crate's level to Envoy's (`--log-level`, `/logging`), so that a message Envoy would drop is
/// not even formatted. Called on configure and on every tick, so a level changed at runtime takes effect within a
/// tick.
pub(crate) fn sync_log_level() {
    use proxy_wasm::types::LogLevel;
    let filter = match hostcalls::get_log_level() {
        Ok(LogLevel::Trace) => log::LevelFilter::Trace,
        Ok(LogLevel::Debug) => log::LevelFilter::Debug,
        Ok(LogLevel::Info) => log::LevelFilter::Info,
        Ok(LogLevel::Warn) => log::LevelFilter::Warn,
        Ok(LogLevel::Error) => log::LevelFilter::Error,
        Ok(LogLevel::Critical) => log::LevelFilter::Off,
        // A host that cannot tell: keep everything, as before.
        Err(_) => log::LevelFilter::Trace,
    };
    log::set_max_level(filter);
}

/// Sends a rendered reply: its header map goes to the host in the serialized form it was rendered in.
pub(crate) fn send_reply(reply: &Reply) -> Result<(), Status> {
    raw::send_local_response(
        u32::from(reply.status),
        reply.serialized_headers.as_bytes(),
        reply.body.as_bytes(),
    )
}

pub(crate) fn send_response(
    status: u16,
    headers: &[(&str, String)],
    body: &str,
) -> Result<(), Status> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()))
}

pub(crate) fn dispatch_get(
    cluster: &str,
    authority: &str,
    path: &str,
    extra: &[(&str, &str)],
    timeout: Duration,
) -> Result<u32, Status> {
    let mut headers = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", authority),
    ];
    headers.extend_from_slice(extra);
    hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout)
}

pub(crate) fn dispatch_post_form(
    cluster: &str,
    authority: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<u32, Status> {
    let headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    hostcalls::dispatch_http_call(cluster, headers, Some(body.as_bytes()), vec![], timeout)
}

pub(crate) fn dispatch_post_json(
    cluster: &str,
    authority: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<u32, Status> {
    let headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/json"),
    ];
    hostcalls::dispatch_http_call(cluster, headers, Some(body), vec![], timeout)
}

/// `None` for a reset call: Envoy then has no response headers, and answers a single-header lookup
/// `BadArgument` (on which the SDK panics), while listing the headers gives an empty list.
pub(crate) fn call_response_status() -> Option<u16> {
    hostcalls::get_map(MapType::HttpCallResponseHeaders)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == ":status")
        .and_then(|(_, value)| value.parse().ok())
}

/// The body of the HTTP call being answered, left with Envoy and read in pieces (valid only during
/// `on_http_call_response`): a bundle is never copied whole into the VM, whose memory never shrinks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallResponseBody {
    pub(crate) size: usize,
}

impl BodySource for CallResponseBody {
    fn size(&self) -> usize {
        self.size
    }

    fn read(&self, start: usize, max: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, start, max)
            .ok()
            .flatten()
    }
}

/// Envoy shared data (per `vm_id`, shared by all worker VMs) as core's [`SharedData`], with a gauge as its change
/// counter: Envoy's stats are process-wide (one gauge per name, whichever VM defines it), reading one is an atomic
/// load with no allocation in the VM, and a shared-data read takes a global mutex and copies the value in through
/// a nested `proxy_on_memory_allocate` call.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HostSharedData {
    /// `keymesh.authn.delivery_writes`; `None` if the host refused to define it (every request then reads the
    /// delivery record).
    changes: Option<u32>,
}

impl HostSharedData {
    pub(crate) fn new() -> Self {
        Self {
            changes: define_gauge("keymesh.authn.delivery_writes"),
        }
    }
}

impl SharedData for HostSharedData {
    fn change_count(&self) -> Option<u64> {
        hostcalls::get_metric(self.changes?).ok()
    }

    fn count_change(&self) {
        // Moved even if another filter instance shares the gauge: an extra move only costs a re-read.
        increment(self.changes);
    }

    fn get(&self, key: &str) -> Option<SharedValue> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), cas)) => Some(SharedValue {
                bytes,
                cas: cas.unwrap_or(0),
            }),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => SharedDataError::CasMismatch,
            _ => SharedDataError::Refused,
        })
    }
}

pub(crate) fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

pub(crate) fn set_tick_period(period: Duration) -> Result<(), Status> {
    hostcalls::set_tick_period(period)
}

pub(crate) fn define_counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

pub(crate) fn define_gauge(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Gauge, name).ok()
}

pub(crate) fn increment(id: Option<u32>) {
    if let Some(id) = id {
        // A lost metric increment is not worth failing a request for.
        let _ = hostcalls::increment_metric(id, 1);
    }
}

pub(crate) fn add(id: Option<u32>, value: u64) {
    if let (Some(id), Ok(value @ 1..)) = (id, i64::try_from(value)) {
        let _ = hostcalls::increment_metric(id, value);
    }
}

pub(crate) fn record(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// Envoy's node id (`--service-node` / `node.id`), if set.
///
/// Envoy 1.40 answers the node under the `xds` attribute namespace (`xds.node.id`) and NotFound for the older
/// `node.id` path, which earlier releases served; ask for the current name first, then the old one.
pub(crate) fn node_id() -> Option<String> {
    [vec!["xds", "node", "id"], vec!["node", "id"]]
        .into_iter()
        .find_map(|path| {
            let bytes = hostcalls::get_property(path).ok().flatten()?;
            String::from_utf8(bytes).ok().filter(|id| !id.is_empty())
        })
}

/// Host calls the SDK only offers in a form that copies: made here directly, with the SDK's own declarations.
mod raw {
    #![allow(unsafe_code)]

    use proxy_wasm::types::{MapType, Status};

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> Status;
        fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> Status;
    }

    /// Answers the request locally with `status`, the serialized header map `headers` and `body`.
    pub(super) fn send_local_response(
        status: u32,
        headers: &[u8],
        body: &[u8],
    ) -> Result<(), Status> {
        // SAFETY: each pointer is valid for its length for the duration of the call, in which the host copies them;
        // no details string, and -1: not a gRPC reply.
        let status = unsafe {
            proxy_send_local_response(
                status,
                std::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        };
        match status {
            Status::Ok => Ok(()),
            other => Err(other),
        }
    }

    /// The serialized header map `map`, as the host returned it; `None` if the host refuses or it is empty.
    pub(super) fn header_map_pairs(map: MapType) -> Option<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: both out-pointers point to live locals of the types the ABI writes.
        let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
        if status != Status::Ok || data.is_null() {
            return None;
        }
        // SAFETY: the host allocated `size` bytes at `data` through this module's `proxy_on_memory_allocate` (the
        // SDK's, which leaks a boxed slice of exactly `size` bytes) and handed them over, as the SDK's own
        // `get_map` relies on: a `Vec` of that length and capacity owns and frees them the same way.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}
