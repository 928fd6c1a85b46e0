// The crate documentation is the README, so its examples are compiled by `cargo test --doc`.
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod abi;
mod builder;
mod call;
mod cargo_build;
mod codec;
mod error;
mod grpc_answers;
mod guest;
mod headers;
mod http_answers;
mod inspect;
mod ledger;
mod module;
mod shared;
mod state;
mod stream;
mod types;
mod vm;

pub use abi::http_calls::{GrpcCall, GrpcResponse, HttpCall, HttpResponse};
pub use abi::logging::LogLine;
pub use abi::stream::LocalResponse;
pub use builder::VmBuilder;
pub use call::{Call, CallOutput, ExpectHttpCall};
pub use cargo_build::{build_filter, build_filter_at, WASM_TARGET};
pub use error::HostError;
pub use headers::HeaderMap;
pub use ledger::{CallMark, HostCallCost, Ledger, VmEntry};
pub use module::FilterModule;
pub use shared::{MetricValue, SharedStore};
pub use stream::HttpStream;
pub use types::{Action, LogLevel, MetricType, StreamType};
pub use vm::Vm;
