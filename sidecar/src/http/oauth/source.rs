//! The source address of a request, as an extractor: what failed authentications are counted under (see
//! [`crate::support::source_address`] for when `x-forwarded-for` counts).

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::http::state::AppState;
use crate::support::source_address::source_key;

/// The throttling key of the request's source: an IPv4 address or an IPv6 /64. `unknown` when the server was not
/// given connection info (only in-process tests that do not set it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source(pub(crate) String);

impl FromRequestParts<AppState> for Source {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Self("unknown".to_owned()));
        };
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let client = state
            .config()
            .trusted_proxies
            .client_address(peer.ip(), &forwarded);
        Ok(Self(source_key(client)))
    }
}
