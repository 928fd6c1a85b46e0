//! keymesh sidecar: the OAuth2 authorization server of a keymesh deployment, the manager of its API keys, and the
//! mirror of its Redis that serves key material (signing keys, API key hashes and revoked tokens) to the Envoy
//! filters.
//!
//! The crate is built in floors, each importing only the floors below it (a test checks this):
//!
//! 1. [`support`]: clock, redaction, syntax checks, secrets;
//! 2. [`config`]: the settings;
//! 3. [`store`]: the Redis connection, key names and the commit protocol;
//! 4. domains: [`keys`], [`issuers`], [`api_keys`], [`oauth`];
//! 5. [`mirror`] (the in-memory copy of the bundle) and [`background`] (key rotation, issuer refresh);
//! 6. [`http`] (handlers, [`app`]) and [`cli`].
//!
//! [`app`] builds the HTTP router from an [`AppState`]; the binary wraps it with configuration loading, the CLI,
//! the background tasks and graceful shutdown.
#![warn(missing_docs)]

pub mod api_keys;
pub mod background;
pub mod cli;
pub mod config;
/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; never in a build that ships).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod issuers;
pub mod keys;
pub mod mirror;
pub mod oauth;
pub mod store;
pub mod support;

pub use background::{BackgroundTasks, StartError};
pub use config::{Config, ConfigLoadError};
pub use http::app;
pub use http::state::AppState;
pub use support::clock::Clock;

/// Starts key rotation and issuer refresh beside `state` (see [`background::spawn_background`]).
pub fn spawn_background(state: &AppState) -> Result<BackgroundTasks, StartError> {
    let (mirror, refetch) = state.shared_with_background();
    background::spawn_background(state.config(), state.clock(), mirror, refetch)
}
