//! `POST /v1/issuers/refetch`: a filter reports a token whose `kid` none of the bundle's keys has, while external
//! identity providers are trusted. The provider may have rolled out a new key; the issuer task fetches again
//! (throttled per provider, see [`crate::background::issuer_refresh`]). The report is only a hint: nothing is
//! trusted because of it, so it needs no authentication, and a flood of made-up kids costs bounded work.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use keymesh_core::policy::is_kid_hint;

use crate::http::oauth::token_request::{is_form, parse_params};
use crate::http::state::AppState;

/// Accepts a report with 202, or refuses a malformed one with an RFC 6749 style error.
pub(crate) async fn refetch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_form(&headers) {
        return invalid("content type must be application/x-www-form-urlencoded");
    }
    let Ok(mut params) = parse_params(&body) else {
        return invalid("malformed form body");
    };
    let Some(kid) = params.take("kid") else {
        return invalid("missing kid");
    };
    if !is_kid_hint(&kid) {
        return invalid("kid must be at most 128 printable characters");
    }
    if !state.refetch_requests().report(&kid) {
        tracing::debug!(kid = %kid, "too many unknown kids waiting; report dropped");
    }
    StatusCode::ACCEPTED.into_response()
}

fn invalid(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": "invalid_request", "error_description": description})),
    )
        .into_response()
}
