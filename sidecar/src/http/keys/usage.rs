//! `POST /v1/usage`: a filter's batch of API key use counts ([`keymesh_core::usage::UsageReportDto`]). The sidecar
//! records when each key was last used, to the minute.
//!
//! Like the bundle and refetch endpoints it is for the proxies on the sidecar's own network and needs no
//! credential: a report can only move the last-used time of keys that exist to the current minute, and costs
//! one bounded Redis call. A malformed report is refused with an RFC 6749 style error; a report Redis cannot take
//! is answered 503 and lost (the filter does not retry: last-used times are a convenience).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keymesh_core::usage::UsageReportDto;

use crate::http::json_body::is_json;
use crate::http::state::AppState;

/// Accepts a report with 204, or refuses a malformed one with 400.
pub(crate) async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_json(&headers) {
        return invalid("content type must be application/json");
    }
    let Ok(report) = serde_json::from_slice::<UsageReportDto>(&body) else {
        return invalid("malformed usage report: expected {\"uses\": [{\"id\", \"count\"}]}");
    };
    let mut conn = match state.redis().await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, "cannot reach redis to record api key use");
            return unavailable();
        }
    };
    let ids = report
        .uses
        .iter()
        .filter(|uses| uses.count > 0)
        .map(|uses| uses.id.as_str());
    match state
        .api_keys()
        .record_uses(
            &mut conn,
            state.usage_minutes(),
            ids,
            state.clock().now_secs(),
        )
        .await
    {
        Ok(moved) => {
            tracing::debug!(keys = report.uses.len(), moved, "recorded api key use");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "cannot record api key use");
            unavailable()
        }
    }
}

fn invalid(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": "invalid_request", "error_description": description})),
    )
        .into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"error": "temporarily_unavailable"})),
    )
        .into_response()
}
