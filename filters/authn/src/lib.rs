//! keymesh authn: the proxy-wasm HTTP filter. A thin adapter over `keymesh-core`: it reads headers, asks core for a
//! verdict, and acts on it. Only [`host`] calls proxy-wasm host functions.
//!
//! Key material arrives from the keymesh sidecar: one root context per Envoy (elected through a shared-data lease)
//! fetches the versioned bundle on a tick and stores it in shared data; every worker parses a new version once,
//! on its next request. What to fetch, how to apply it and how to read it back are `keymesh_core::delivery`'s; this
//! crate sends the requests core asks for, hands back the answers, and maps the outcomes to logs and metrics.

// No panics in a filter's data path: every index and every arithmetic operation is checked, or carries a local
// `allow` with the proof next to it. Tests may index and compute freely.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

mod host;
mod http;
mod metrics;
mod root;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| Box::new(root::AuthnRoot::default()));
}}
