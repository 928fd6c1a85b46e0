//! The capabilities keymesh's deployment allows its module (`capability_restriction_config`), as the bench runs
//! it and as `envoy/demo.yaml` lists them.

use serde_json::{json, Value};

/// What keymesh's deployment allows the module (`capability_restriction_config.allowed_capabilities`): the
/// callbacks keymesh implements, and the host functions it imports. proxy-wasm-cpp-host (`WasmBase::getFunctions`)
/// leaves a callback that is not allowed unset and then never calls it, so every stream skips the VM entries for
/// response headers and body, trailers, log and done that the Rust SDK exports and keymesh does not need.
/// `proxy_on_delete` stays: the SDK frees the stream's context there.
pub(crate) const KEYMESH_CAPABILITIES: &[&str] = &[
    // Callbacks.
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_http_call_response",
    "proxy_on_request_headers",
    "proxy_on_delete",
    // Host functions: every one the module imports (the SDK's dispatcher calls some keymesh never names, such as
    // `proxy_set_effective_context` before an HTTP-call answer; a call to one left out fails the VM).
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_status",
    "proxy_get_current_time_nanoseconds",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_set_effective_context",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_done",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_send_local_response",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_call_foreign_function",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_set_tick_period_milliseconds",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
    // WASI, for the Rust standard library.
    "fd_write",
    "random_get",
    "environ_get",
    "environ_sizes_get",
    "clock_time_get",
    "proc_exit",
];

/// `capability_restriction_config` allowing [`KEYMESH_CAPABILITIES`].
pub(crate) fn keymesh_capability_restriction() -> Value {
    let allowed: serde_json::Map<String, Value> = KEYMESH_CAPABILITIES
        .iter()
        .map(|name| ((*name).to_owned(), json!({})))
        .collect();
    json!({"allowed_capabilities": allowed})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo (and so every end-to-end test) runs with the list the bench measures.
    #[test]
    fn the_demo_config_allows_exactly_the_benchmarked_capabilities() {
        let demo = include_str!("../../envoy/demo.yaml");
        let listed: Vec<&str> = demo
            .lines()
            .filter_map(|line| line.trim().strip_suffix(": {}"))
            .filter(|name| !name.contains(' '))
            .collect();
        let mut expected: Vec<&str> = KEYMESH_CAPABILITIES.to_vec();
        let mut listed_sorted = listed.clone();
        expected.sort_unstable();
        listed_sorted.sort_unstable();
        assert_eq!(listed_sorted, expected);
        let restriction = keymesh_capability_restriction();
        assert_eq!(
            restriction["allowed_capabilities"]
                .as_object()
                .unwrap()
                .len(),
            KEYMESH_CAPABILITIES.len()
        );
    }
}
