//! Key delivery, the filter side: how key material gets from the sidecar's `/v1/bundle` into every worker.
//!
//! One root per host holds a lease in shared data ([`lease`]) and asks the sidecar for the changes since the
//! version it holds ([`fetch`]); the answer is validated and applied to shared data ([`apply`]): the rights of new
//! API keys into the interned table ([`rights`]), the keys into their buckets ([`bucket`]), the revoked list, the
//! issuers, and last the [`DeliveryRecord`]. Every worker then reads the record once per request and looks up
//! what it needs ([`store`]).
//!
//! Shared data cannot list or remove keys (proxy-wasm ABI 0.2.1), so an API key bucket carries the generation
//! (bundle version) that last wrote it, and a full resync at version F raises a floor to F: buckets older than the
//! floor — holding only keys deleted while this host was out of the sidecar's change-log window — are dead. A
//! deleted key is removed from its bucket.
//!
//! A full resync comes in pages of bounded size, so neither Envoy (which buffers an HTTP call's whole answer) nor
//! the fetching worker holds more than one page at a time, and it is written to a second slot that the delivery
//! record switches to once the last page is in ([`resync`]): until then every worker sees the old version whole.
//!
//! Nothing here touches a host: shared data comes in through the [`SharedData`] trait and time is passed in, so
//! any host (the proxy-wasm filter, a Node verifier) runs this unchanged, and it is tested natively.

pub mod apply;
pub mod apply_keys;
pub mod bucket;
pub mod fetch;
pub mod lease;
pub mod paging;
pub mod record;
pub mod resync;
pub mod rights;
pub mod shared_data;
pub mod store;
pub mod stream;
pub mod wire;

pub use apply::{Applied, ReceivedBundle};
pub use fetch::{BundleFetcher, FetchOutcome, FetchRequest};
pub use record::DeliveryRecord;
pub use resync::Resync;
pub use shared_data::{InMemorySharedData, SharedData, SharedDataError, SharedValue};
pub use store::{MaterialSnapshot, SharedKeyMaterial};
pub use stream::BodySource;

#[cfg(test)]
mod tests;
