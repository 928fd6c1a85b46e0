//! The egress filter's decisions: which token an outgoing request gets, from the per-destination configuration
//! ([`config`]), the Envoy-wide token cache and exchange lease in shared data ([`cache`]), and the token request
//! to the sidecar and what its answer means ([`exchange`]). No proxy-wasm import; the `keymesh-egress` filter
//! only moves headers and bytes.
//!
//! A request to a configured destination never leaves with the token the application sent: in `exchange` mode
//! that token is the subject of an RFC 8693 exchange for the destination's audience, in `client_credentials` mode
//! it is dropped for the workload's own token. Requests to destinations that are not configured lose their
//! `Authorization` header, so a user's token never reaches an API it was not issued for.

pub mod cache;
pub mod config;
pub mod exchange;

pub use cache::{CacheKey, CachedAnswer, Lookup, TokenCache};
pub use config::{Destination, EgressConfig, Mode};
pub use exchange::{Answer, Refusal};
