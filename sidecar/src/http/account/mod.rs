//! The account page and its JSON API: users manage their own API keys, within the operator's policy
//! ([`crate::api_keys::policy`]), after logging in with the same users, password check and throttling as the
//! authorization page.
//!
//! - [`page`]: `GET`/`POST /account/api-keys`, server-rendered ([`html`]);
//! - [`api`]: `/v1/account/api-keys`, JSON, by session cookie + CSRF header or by bearer token;
//! - [`session`]: the cookie, the CSRF token and the same-site checks both share.

pub(crate) mod api;
mod api_error;
mod html;
pub(crate) mod page;
pub(crate) mod session;

/// Path of the account page.
pub(crate) const ACCOUNT_PATH: &str = "/account/api-keys";
/// Path of the account API's key collection.
pub(crate) const API_PATH: &str = "/v1/account/api-keys";
/// The scope an access token needs for the account API (with the issuer among its audiences).
pub(crate) const ACCOUNT_SCOPE: &str = "keymesh:keys";
