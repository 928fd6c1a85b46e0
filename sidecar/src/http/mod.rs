//! The HTTP surface: one file per endpoint, assembled by [`crate::app`].

pub(crate) mod admin;
pub(crate) mod admin_error;
pub(crate) mod app_error;
pub(crate) mod authorize;
pub(crate) mod authorize_error;
pub(crate) mod authorize_form;
pub(crate) mod bundle;
pub(crate) mod client_auth;
pub(crate) mod discovery;
pub(crate) mod health;
pub(crate) mod introspect;
pub(crate) mod metrics;
pub(crate) mod oauth_error;
pub(crate) mod pages;
pub(crate) mod refetch;
pub(crate) mod revoke;
pub(crate) mod status;
pub(crate) mod token;
pub(crate) mod token_grants;
pub(crate) mod token_lookup;
pub(crate) mod token_request;
