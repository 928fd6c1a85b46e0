//! The admin API: API keys, behind the admin bearer token.

pub(crate) mod api_keys;
pub(crate) mod error;
