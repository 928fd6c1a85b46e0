//! Key delivery, the filter side: how key material gets from the sidecar's `/v1/bundle` into every worker.
//!
//! One root per host holds a lease in shared data ([`lease`]) and asks the sidecar for the changes since the
//! version it holds ([`fetch`]); the answer is validated and applied to shared data ([`apply`]): API key entries
//! one by one, the revoked list, the issuers, and last the [`DeliveryRecord`]. Every worker then reads the record
//! once per request and looks up what it needs ([`store`]).
//!
//! Shared data cannot list or remove keys (proxy-wasm ABI 0.2.1), so an API key entry carries the generation
//! (bundle version) that wrote it, and a full resync at version F raises a floor to F: entries older than the
//! floor — keys deleted while this host was out of the sidecar's change-log window — are dead. A deleted key is
//! overwritten with an empty value.
//!
//! Nothing here touches a host: shared data comes in through the [`SharedData`] trait and time is passed in, so
//! any host (the proxy-wasm filter, a Node verifier) runs this unchanged, and it is tested natively.

pub mod apply;
pub mod fetch;
pub mod lease;
pub mod record;
pub mod shared_data;
pub mod store;
pub mod wire;

pub use apply::{Applied, ReceivedBundle};
pub use fetch::{BundleFetcher, FetchOutcome, FetchRequest};
pub use record::DeliveryRecord;
pub use shared_data::{InMemorySharedData, SharedData, SharedDataError, SharedValue};
pub use store::{MaterialSnapshot, SharedKeyMaterial};

#[cfg(test)]
mod tests;
