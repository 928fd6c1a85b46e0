//! `GET /v1/bundle`: the key bundle the filters poll, with `ETag`/`If-None-Match` revalidation.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keymesh_core::bundle::{etag, parse_etag};

use super::app_error::AppError;
use crate::state::AppState;

/// Header carrying the polling proxy's id.
pub(crate) const PROXY_HEADER: &str = "x-keymesh-proxy";

/// Serves the current bundle from the mirror, or `304` if the caller already holds this version.
pub(crate) async fn bundle(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let snapshot = state.mirror().snapshot().ok_or(AppError::NotReady)?;
    let version = snapshot.version();
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if let Some(proxy) = headers.get(PROXY_HEADER).and_then(|v| v.to_str().ok()) {
        tracing::debug!(proxy, held = ?if_none_match, current = version, "bundle poll");
    }
    let etag_value = HeaderValue::from_str(&etag(version)).map_err(|_| AppError::NotReady)?;
    let headers = [
        (header::ETAG, etag_value),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if if_none_match.is_some_and(|value| matches_version(value, version)) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    Ok((
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        snapshot.bundle_json().clone(),
    )
        .into_response())
}

/// RFC 9110 §13.1.2: `*` or a comma-separated list of entity tags, compared weakly.
fn matches_version(if_none_match: &str, version: u64) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .any(|tag| parse_etag(tag) == Some(version))
}
