//! keymesh verification core.
//!
//! Everything a keymesh filter decides lives here, with no proxy-wasm import: token extraction
//! ([`extract`]), the JWS signature layer ([`jws`]) over JWK-derived keys ([`jwk`], [`keyset`]), RFC 9068 claim
//! checks ([`claims`]), per-route policy ([`policy`], [`config`]), verdicts rendered per RFC 6750 ([`verdict`]), and
//! the filter side of key delivery ([`delivery`]). Time is always passed in. The wasm filter is a thin adapter over
//! [`policy::authorize`] and [`delivery`].
#![warn(missing_docs)]
// No panics in a filter's data path: every index and every arithmetic operation is checked, or carries a local
// `allow` with the proof next to it. Tests may index and compute freely.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

pub mod apikey;
pub mod claims;
pub mod config;
pub mod delivery;
mod denials;
pub mod ed25519_verify;
pub mod egress;
pub mod error;
pub mod es256_verify;
pub mod extract;
pub mod header_pairs;
pub mod identity;
pub mod jwk;
pub mod jws;
pub mod keyset;
pub mod policy;
pub mod resource_metadata;
pub mod rsa_verify;
mod strict_json;
pub mod tier;
pub mod token_cache;
pub mod token_type;
pub mod usage;
pub mod verdict;

/// The bundle wire types under their earlier path (the sidecar imports them from here).
pub use delivery::wire as bundle;

pub use config::FilterConfig;
pub use error::{CredentialError, DeliveryError, FilterConfigError, KeyError};
pub use extract::{Credential, RequestParts};
pub use keyset::KeySet;
pub use policy::{authorize, Directory, EmptyDirectory, KeyMaterial};
pub use token_cache::TokenCache;
pub use verdict::{Denial, DenyReason, Identity, Principal, Verdict};
