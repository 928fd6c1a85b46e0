//! The top floor: HTTP handlers, grouped by what they serve, and [`app`], the router that assembles them. A
//! handler parses the request, calls one domain service and renders the answer.
//!
//! - [`oauth`](self::oauth): the authorization server (token, authorize, revoke, introspect, discovery);
//! - `keys`: key material for the filters (the bundle, reports of unknown kids);
//! - `admin`: the admin API for API keys;
//! - `account`: the account page and JSON API where users manage their own API keys;
//! - [`ops`]: readiness, liveness, status and metrics.

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod error;
pub(crate) mod json_body;
pub(crate) mod keys;
pub(crate) mod oauth;
pub mod ops;
pub mod state;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

use state::AppState;

/// Token requests are a handful of short parameters; anything larger is not one.
const TOKEN_BODY_LIMIT: usize = 16 * 1024;
/// Admin requests carry one small JSON object.
const ADMIN_BODY_LIMIT: usize = 16 * 1024;
const REFETCH_BODY_LIMIT: usize = 1024;
/// A usage report names at most a few thousand key ids (the filters' bound), about 40 bytes each.
const USAGE_BODY_LIMIT: usize = 512 * 1024;

/// The sidecar's HTTP API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            oauth::discovery::TOKEN_PATH,
            post(oauth::token::token)
                .layer(DefaultBodyLimit::max(TOKEN_BODY_LIMIT))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    ops::metrics::count_issued_tokens,
                )),
        )
        .route(
            oauth::authorize::AUTHORIZE_PATH,
            get(oauth::authorize::authorize)
                .post(oauth::authorize_form::submit)
                .layer(DefaultBodyLimit::max(TOKEN_BODY_LIMIT)),
        )
        .route(
            oauth::discovery::REVOCATION_PATH,
            post(oauth::revoke::revoke).layer(DefaultBodyLimit::max(TOKEN_BODY_LIMIT)),
        )
        .route(
            oauth::discovery::INTROSPECTION_PATH,
            post(oauth::introspect::introspect).layer(DefaultBodyLimit::max(TOKEN_BODY_LIMIT)),
        )
        .route(
            oauth::register::REGISTRATION_PATH,
            post(oauth::register::register).layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT)),
        )
        .route(
            "/oauth/register/{client_id}",
            get(oauth::register::read)
                .put(oauth::register::update)
                .delete(oauth::register::delete)
                .layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT)),
        )
        .route(oauth::discovery::JWKS_PATH, get(oauth::discovery::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::discovery::metadata),
        )
        .route("/v1/bundle", get(keys::bundle::bundle))
        .route(
            "/v1/issuers/refetch",
            post(keys::refetch::refetch).layer(DefaultBodyLimit::max(REFETCH_BODY_LIMIT)),
        )
        .route(
            "/v1/usage",
            post(keys::usage::report).layer(DefaultBodyLimit::max(USAGE_BODY_LIMIT)),
        )
        .route("/healthz", get(ops::health::healthz))
        .route("/livez", get(ops::health::livez))
        .route("/v1/status", get(ops::status::status))
        .route("/metrics", get(ops::metrics::metrics))
        .route(
            "/v1/admin/apikeys",
            post(admin::api_keys::create)
                .get(admin::api_keys::list)
                .layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT)),
        )
        .route("/v1/admin/apikeys/{id}", delete(admin::api_keys::revoke))
        .route(
            "/v1/admin/apikeys/{id}/regenerate",
            post(admin::api_keys::regenerate).layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT)),
        )
        .route(
            "/v1/admin/apikeys/{id}/disable",
            post(admin::api_keys::disable),
        )
        .route(
            "/v1/admin/apikeys/{id}/enable",
            post(admin::api_keys::enable),
        )
        .route(
            account::ACCOUNT_PATH,
            get(account::page::show)
                .post(account::page::submit)
                .layer(DefaultBodyLimit::max(TOKEN_BODY_LIMIT)),
        )
        .route(
            account::API_PATH,
            get(account::api::list)
                .post(account::api::create)
                .layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT)),
        )
        .route(
            "/v1/account/api-keys/{id}",
            get(account::api::get).delete(account::api::revoke),
        )
        .route(
            "/v1/account/api-keys/{id}/regenerate",
            post(account::api::regenerate).layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT)),
        )
        .route(
            "/v1/account/api-keys/{id}/disable",
            post(account::api::disable),
        )
        .route(
            "/v1/account/api-keys/{id}/enable",
            post(account::api::enable),
        )
        .with_state(state)
}
