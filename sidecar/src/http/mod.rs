//! The HTTP surface: one file per endpoint, assembled by [`crate::app`].

pub(crate) mod admin;
pub(crate) mod admin_error;
pub(crate) mod app_error;
pub(crate) mod bundle;
pub(crate) mod discovery;
pub(crate) mod health;
pub(crate) mod oauth_error;
pub(crate) mod token;
pub(crate) mod token_request;
