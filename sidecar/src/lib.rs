//! keymesh sidecar: the OAuth2 authorization server of a keymesh deployment, the manager of its API keys, and the
//! mirror of its Redis that serves key material (signing keys, API key hashes and revoked tokens) to the Envoy
//! filters.
//!
//! [`app`] builds the HTTP router from an [`AppState`]; the binary wraps it with configuration loading, the CLI
//! and graceful shutdown.
#![warn(missing_docs)]

pub mod access_token;
pub mod admin_token;
pub mod api_keys;
pub mod change_log;
pub mod changes;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod external_issuers;
mod http;
pub mod kek;
pub mod key_lifecycle;
pub mod mirror;
pub mod names;
pub mod oauth;
pub mod redact;
pub mod redis_connection;
mod redis_scan;
pub mod revocation;
pub mod secret;
pub mod signing_keys;
pub mod snapshot;
pub mod state;
pub mod syntax;
pub mod telemetry;
pub mod users;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

pub use clock::Clock;
pub use config::{Config, ConfigError};
pub use state::{AppState, StartError};

/// Token requests are a handful of short parameters; anything larger is not one.
const TOKEN_BODY_LIMIT: usize = 16 * 1024;
/// Admin requests carry one small JSON object.
const ADMIN_BODY_LIMIT: usize = 16 * 1024;
const REFETCH_BODY_LIMIT: usize = 1024;

/// The sidecar's HTTP API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            http::discovery::TOKEN_PATH,
            post(http::token::token)
                .layer(DefaultBodyLimit::max(TOKEN_BODY_LIMIT))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    http::metrics::count_issued_tokens,
                )),
        )
        .route(
            http::authorize::AUTHORIZE_PATH,
            get(http::authorize::authorize)
                .post(http::authorize_form::submit)
                .layer(DefaultBodyLimit::max(TOKEN_BODY_LIMIT)),
        )
        .route(
            http::discovery::REVOCATION_PATH,
            post(http::revoke::revoke).layer(DefaultBodyLimit::max(TOKEN_BODY_LIMIT)),
        )
        .route(
            http::discovery::INTROSPECTION_PATH,
            post(http::introspect::introspect).layer(DefaultBodyLimit::max(TOKEN_BODY_LIMIT)),
        )
        .route(http::discovery::JWKS_PATH, get(http::discovery::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(http::discovery::metadata),
        )
        .route("/v1/bundle", get(http::bundle::bundle))
        .route(
            "/v1/issuers/refetch",
            post(http::refetch::refetch).layer(DefaultBodyLimit::max(REFETCH_BODY_LIMIT)),
        )
        .route("/healthz", get(http::health::healthz))
        .route("/livez", get(http::health::livez))
        .route("/v1/status", get(http::status::status))
        .route("/metrics", get(http::metrics::metrics))
        .route(
            "/v1/admin/apikeys",
            post(http::admin::create)
                .get(http::admin::list)
                .layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT)),
        )
        .route("/v1/admin/apikeys/{id}", delete(http::admin::revoke))
        .route(
            "/v1/admin/apikeys/{id}/regenerate",
            post(http::admin::regenerate),
        )
        .with_state(state)
}
