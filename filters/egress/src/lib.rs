//! keymesh egress: the proxy-wasm HTTP filter on a workload's outbound listener. For each request to a configured
//! destination it attaches the token that destination should get: an RFC 8693 exchange of the bearer token the
//! application propagated (`exchange`), or the workload's own client-credentials token. Every decision is
//! `keymesh_core::egress`'s; this crate moves headers and bytes. Only [`host`] calls proxy-wasm host functions.
//!
//! Tokens are cached in Envoy shared data and obtained once per Envoy: the worker holding a key's lease asks the
//! sidecar from its root context (so the request that needed the token may end first, see [`worker`]); requests
//! on that worker are resumed when the answer arrives, requests on other workers on their next tick (every
//! [`worker::WAIT_TICK`] while any request waits).

#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

mod host;
mod http;
mod root;
mod worker;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Warn);
    proxy_wasm::set_root_context(|id| Box::new(root::EgressRoot::new(id)));
}}
