//! The one place that calls proxy-wasm host functions. Every call returns a `Result` (or a neutral value), so a
//! host error never becomes a panic in the data path.

use keymesh_core::delivery::{SharedData, SharedDataError, SharedValue};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};
use std::time::{Duration, UNIX_EPOCH};

/// Milliseconds since the epoch by the host's clock (0 if the host cannot tell, which makes every token stale).
pub(crate) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn request_headers() -> Vec<(String, String)> {
    hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
}

pub(crate) fn set_request_header(name: &str, value: Option<&str>) -> Result<(), Status> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
}

pub(crate) fn send_response(
    status: u16,
    headers: &[(&str, String)],
    body: &str,
) -> Result<(), Status> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()))
}

/// Makes `context_id` the context later host calls act on (to resume a request from another context).
pub(crate) fn switch_to(context_id: u32) -> Result<(), Status> {
    hostcalls::set_effective_context(context_id)
}

pub(crate) fn resume_request() -> Result<(), Status> {
    hostcalls::resume_http_request()
}

pub(crate) fn dispatch_post(
    cluster: &str,
    authority: &str,
    path: &str,
    extra: &[(&str, String)],
    body: &str,
    timeout: Duration,
) -> Result<u32, Status> {
    let mut headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", authority),
    ];
    headers.extend(extra.iter().map(|(n, v)| (*n, v.as_str())));
    hostcalls::dispatch_http_call(cluster, headers, Some(body.as_bytes()), vec![], timeout)
}

pub(crate) fn call_response_status() -> Option<u16> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
}

pub(crate) fn call_response_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
}

pub(crate) fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

pub(crate) fn set_tick_period(period: Duration) -> Result<(), Status> {
    hostcalls::set_tick_period(period)
}

/// Envoy shared data (per `vm_id`, shared by all worker VMs) as core's [`SharedData`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HostSharedData;

impl SharedData for HostSharedData {
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
