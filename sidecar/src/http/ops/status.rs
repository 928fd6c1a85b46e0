//! `GET /v1/status`: this sidecar's freshness and that of the proxies it serves, as JSON.
//!
//! ```json
//! {"sidecar_version": "0.1.0", "redis_connected": true, "bundle_version": 42, "active_kid": "…",
//!  "proxies": [{"id": "envoy-orders-1", "version": 41, "behind_by": 1, "last_seen": 1700000000, "long_poll": true}],
//!  "external_issuers": [{"issuer": "https://idp.example.com", "kids": ["k1"], "audiences": ["urn:orders"],
//!                        "keys_changed_at": 1700000000,
//!                        "refused_keys": [{"kid": "k0", "reason": "not a point of Ed25519"}]}]}
//! ```
//!
//! `external_issuers` lists the keys this sidecar delivers for each registered provider; how fetching them has
//! gone (last success, failures, last error) is in `keymesh issuer list`.
//!
//! `version` is what the proxy held at its last bundle request (`If-None-Match`), `behind_by` how many versions
//! that is behind this sidecar's. Proxies not seen for ten minutes are left out.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::http::state::AppState;
use crate::issuers::RefusedKey;

#[derive(Serialize)]
struct Status {
    sidecar_version: &'static str,
    redis_connected: bool,
    bundle_version: Option<u64>,
    active_kid: Option<String>,
    proxies: Vec<ProxyStatus>,
    external_issuers: Vec<ExternalStatus>,
}

#[derive(Serialize)]
struct ExternalStatus {
    issuer: String,
    kids: Vec<String>,
    audiences: Vec<String>,
    keys_changed_at: u64,
    /// Keys of the provider's set that could not be used, with why; its other keys are delivered.
    refused_keys: Vec<RefusedKey>,
}

#[derive(Serialize)]
struct ProxyStatus {
    id: String,
    version: u64,
    /// `None` before this sidecar has a bundle.
    behind_by: Option<u64>,
    last_seen: u64,
    long_poll: bool,
}

/// Serves the status document.
pub(crate) async fn status(State(state): State<AppState>) -> Response {
    let snapshot = state.mirror().snapshot();
    let current = snapshot.as_ref().map(|snapshot| snapshot.version());
    let proxies = state
        .telemetry()
        .proxies(state.clock().now_secs())
        .into_iter()
        .map(|(id, seen)| ProxyStatus {
            id,
            version: seen.version,
            behind_by: current.map(|current| current.saturating_sub(seen.version)),
            last_seen: seen.last_seen,
            long_poll: seen.long_poll,
        })
        .collect();
    let body = Status {
        sidecar_version: env!("CARGO_PKG_VERSION"),
        redis_connected: state.mirror().is_connected(),
        bundle_version: current,
        active_kid: snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.active_key().map(|key| key.kid().to_owned())),
        proxies,
        external_issuers: snapshot
            .as_ref()
            .map(|snapshot| {
                snapshot
                    .external_issuers()
                    .iter()
                    .map(|record| ExternalStatus {
                        issuer: record.issuer.clone(),
                        kids: record.kids().into_iter().map(str::to_owned).collect(),
                        audiences: record.audiences.clone(),
                        keys_changed_at: record.keys_changed_at,
                        refused_keys: record.refused_keys.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response()
}
