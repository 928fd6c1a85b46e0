//! keymesh for Node.js: the filter's decisions (`keymesh-core`) and its bundle delivery protocol, compiled to
//! `wasm32-unknown-unknown` and exposed to JavaScript with `wasm-bindgen`.
//!
//! - [`material`] holds the key material and runs the fetch protocol with core's delivery module, the Envoy
//!   filter's own code, over in-process shared data;
//! - [`engine`] is one verifier: configuration, key material, token cache, and the fetch protocol's decisions;
//! - [`render`] turns verdicts into the JSON the JavaScript side reads;
//! - [`bindings`] is the `wasm-bindgen` surface. JavaScript (`pkg/`) does the HTTP, the timers and the
//!   middleware; every decision is made here.
#![warn(missing_docs)]

pub mod bindings;
pub mod engine;
pub mod material;
pub mod render;
