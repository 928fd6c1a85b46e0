//! The authorization server's endpoints (RFC 6749, 7009, 7662, 8414, 7636) and their request and error handling.

pub(crate) mod authorize;
pub(crate) mod authorize_error;
pub(crate) mod authorize_form;
pub(crate) mod client_auth;
pub(crate) mod discovery;
pub(crate) mod error;
pub(crate) mod introspect;
pub(crate) mod pages;
pub(crate) mod register;
pub(crate) mod revoke;
pub(crate) mod source;
pub(crate) mod token;
pub(crate) mod token_lookup;
pub(crate) mod token_request;
