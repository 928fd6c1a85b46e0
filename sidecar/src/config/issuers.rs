//! How external identity providers' keys are fetched.

use std::time::Duration;

/// How often providers' keys are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuerSettings {
    /// Keys are refetched this often (`issuer_refresh_secs`).
    pub refresh_secs: u64,
    /// An unknown `kid` triggers a refetch of a provider at most this often (`issuer_refetch_min_secs`).
    pub refetch_min_secs: u64,
    /// Each HTTP request of a fetch gives up after this long (`issuer_fetch_timeout_ms`).
    pub fetch_timeout: Duration,
}

impl Default for IssuerSettings {
    fn default() -> Self {
        Self {
            refresh_secs: 300,
            refetch_min_secs: 30,
            fetch_timeout: Duration::from_secs(5),
        }
    }
}
