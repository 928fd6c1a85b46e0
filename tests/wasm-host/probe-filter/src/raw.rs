//! The host functions, declared again with raw integer types: the SDK's wrappers panic on statuses
//! they do not expect, and the probe wants to record every status, including the unexpected ones.
#![allow(unsafe_code, clashing_extern_declarations)]

use std::ptr::null_mut;

extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        t: u32,
        start: usize,
        max: usize,
        d: *mut *mut u8,
        s: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(t: u32, start: usize, size: usize, d: *const u8, s: usize) -> u32;
    fn proxy_get_header_map_pairs(t: u32, d: *mut *mut u8, s: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        t: u32,
        k: *const u8,
        kl: usize,
        d: *mut *mut u8,
        s: *mut usize,
    ) -> u32;
    fn proxy_add_header_map_value(t: u32, k: *const u8, kl: usize, v: *const u8, vl: usize) -> u32;
    fn proxy_replace_header_map_value(
        t: u32,
        k: *const u8,
        kl: usize,
        v: *const u8,
        vl: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(t: u32, k: *const u8, kl: usize) -> u32;
    fn proxy_set_header_map_pairs(t: u32, d: *const u8, s: usize) -> u32;
    fn proxy_get_property(p: *const u8, pl: usize, d: *mut *mut u8, s: *mut usize) -> u32;
    fn proxy_set_property(p: *const u8, pl: usize, v: *const u8, vl: usize) -> u32;
    fn proxy_get_shared_data(
        k: *const u8,
        kl: usize,
        d: *mut *mut u8,
        s: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(k: *const u8, kl: usize, v: *const u8, vl: usize, cas: u32) -> u32;
    fn proxy_register_shared_queue(n: *const u8, nl: usize, id: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(
        v: *const u8,
        vl: usize,
        n: *const u8,
        nl: usize,
        id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(id: u32, v: *const u8, vl: usize) -> u32;
    fn proxy_dequeue_shared_queue(id: u32, d: *mut *mut u8, s: *mut usize) -> u32;
    fn proxy_continue_stream(t: u32) -> u32;
    fn proxy_close_stream(t: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_grpc_call(
        u: *const u8,
        ul: usize,
        s: *const u8,
        sl: usize,
        m: *const u8,
        ml: usize,
        md: *const u8,
        mdl: usize,
        msg: *const u8,
        msgl: usize,
        timeout: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_grpc_send(token: u32, m: *const u8, ml: usize, end: u32) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_get_status(code: *mut u32, d: *mut *mut u8, s: *mut usize) -> u32;
    fn proxy_set_effective_context(id: u32) -> u32;
    fn proxy_define_metric(t: u32, n: *const u8, nl: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_get_metric(id: u32, value: *mut u64) -> u32;
}

/// Takes ownership of bytes the host allocated through `proxy_on_memory_allocate`.
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host allocated `size` bytes with the SDK's allocator and handed them over.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// A status and, when the call returns data, the data.
pub(crate) type Answer = (u32, Option<Vec<u8>>);

fn returned(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Answer {
    let mut data = null_mut();
    let mut size = 0;
    let status = call(&mut data, &mut size);
    let bytes = owned(data, size);
    (status, (status == 0).then_some(bytes))
}

pub(crate) fn log(level: u32, message: &str) -> u32 {
    unsafe { proxy_log(level, message.as_ptr(), message.len()) }
}

pub(crate) fn log_level() -> u32 {
    let mut level = 0;
    unsafe { proxy_get_log_level(&mut level) }
}

pub(crate) fn current_time() -> (u32, u64) {
    let mut time = 0;
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut time) };
    (status, time)
}

pub(crate) fn set_tick_period(ms: u32) -> u32 {
    unsafe { proxy_set_tick_period_milliseconds(ms) }
}

pub(crate) fn get_buffer(buffer: u32, start: usize, max: usize) -> Answer {
    returned(|d, s| unsafe { proxy_get_buffer_bytes(buffer, start, max, d, s) })
}

pub(crate) fn set_buffer(buffer: u32, start: usize, size: usize, data: &[u8]) -> u32 {
    unsafe { proxy_set_buffer_bytes(buffer, start, size, data.as_ptr(), data.len()) }
}

pub(crate) fn get_pairs(map: u32) -> Answer {
    returned(|d, s| unsafe { proxy_get_header_map_pairs(map, d, s) })
}

pub(crate) fn set_pairs(map: u32, serialized: &[u8]) -> u32 {
    unsafe { proxy_set_header_map_pairs(map, serialized.as_ptr(), serialized.len()) }
}

pub(crate) fn get_header(map: u32, key: &str) -> Answer {
    returned(|d, s| unsafe { proxy_get_header_map_value(map, key.as_ptr(), key.len(), d, s) })
}

pub(crate) fn add_header(map: u32, key: &str, value: &str) -> u32 {
    unsafe { proxy_add_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
}

pub(crate) fn replace_header(map: u32, key: &str, value: &str) -> u32 {
    unsafe {
        proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    }
}

pub(crate) fn remove_header(map: u32, key: &str) -> u32 {
    unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) }
}

pub(crate) fn get_property(path: &[&str]) -> Answer {
    let path = path.join("\0");
    returned(|d, s| unsafe { proxy_get_property(path.as_ptr(), path.len(), d, s) })
}

pub(crate) fn set_property(path: &[&str], value: &str) -> u32 {
    let path = path.join("\0");
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) }
}

pub(crate) fn get_shared(key: &str) -> (u32, Option<Vec<u8>>, u32) {
    let mut cas = 0;
    let (status, data) =
        returned(|d, s| unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), d, s, &mut cas) });
    (status, data, cas)
}

pub(crate) fn set_shared(key: &str, value: &[u8], cas: u32) -> u32 {
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) }
}

pub(crate) fn register_queue(name: &str) -> (u32, u32) {
    let mut id = 0;
    let status = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    (status, id)
}

pub(crate) fn resolve_queue(vm_id: &str, name: &str) -> (u32, u32) {
    let mut id = 0;
    let status = unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    };
    (status, id)
}

pub(crate) fn enqueue(id: u32, value: &str) -> u32 {
    unsafe { proxy_enqueue_shared_queue(id, value.as_ptr(), value.len()) }
}

pub(crate) fn dequeue(id: u32) -> Answer {
    returned(|d, s| unsafe { proxy_dequeue_shared_queue(id, d, s) })
}

pub(crate) fn continue_stream(stream: u32) -> u32 {
    unsafe { proxy_continue_stream(stream) }
}

pub(crate) fn close_stream(stream: u32) -> u32 {
    unsafe { proxy_close_stream(stream) }
}

/// The SDK's serialized header map: count, then lengths, then NUL-terminated names and values.
pub(crate) fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend((pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend((name.len() as u32).to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend(name.as_bytes());
        out.push(0);
        out.extend(value.as_bytes());
        out.push(0);
    }
    out
}

/// Through the SDK, which must know the token to route the answer: `(status, token)`.
pub(crate) fn http_call(cluster: &str, headers: &[(&str, &str)], timeout_ms: u32) -> (u32, u32) {
    let timeout = std::time::Duration::from_millis(u64::from(timeout_ms));
    match proxy_wasm::hostcalls::dispatch_http_call(
        cluster,
        headers.to_vec(),
        None,
        vec![],
        timeout,
    ) {
        Ok(token) => (0, token),
        Err(status) => (status as u32, 0),
    }
}

pub(crate) fn grpc_call(cluster: &str) -> (u32, u32) {
    let (service, method) = ("probe.Probe", "Call");
    let metadata = serialize(&[]);
    let mut token = 0;
    let status = unsafe {
        proxy_grpc_call(
            cluster.as_ptr(),
            cluster.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            null_mut(),
            0,
            1000,
            &mut token,
        )
    };
    (status, token)
}

pub(crate) fn grpc_send(token: u32) -> u32 {
    unsafe { proxy_grpc_send(token, null_mut(), 0, 0) }
}

pub(crate) fn grpc_cancel(token: u32) -> u32 {
    unsafe { proxy_grpc_cancel(token) }
}

pub(crate) fn grpc_close(token: u32) -> u32 {
    unsafe { proxy_grpc_close(token) }
}

pub(crate) fn get_status() -> u32 {
    let mut code = 0;
    returned(|d, s| unsafe { proxy_get_status(&mut code, d, s) }).0
}

pub(crate) fn set_effective_context(id: u32) -> u32 {
    unsafe { proxy_set_effective_context(id) }
}

pub(crate) fn define_metric(kind: u32, name: &str) -> (u32, u32) {
    let mut id = 0;
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status, id)
}

pub(crate) fn increment_metric(id: u32, offset: i64) -> u32 {
    unsafe { proxy_increment_metric(id, offset) }
}

pub(crate) fn record_metric(id: u32, value: u64) -> u32 {
    unsafe { proxy_record_metric(id, value) }
}

pub(crate) fn get_metric(id: u32) -> (u32, u64) {
    let mut value = 0;
    let status = unsafe { proxy_get_metric(id, &mut value) };
    (status, value)
}
