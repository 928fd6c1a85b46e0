//! `GET /healthz` (readiness): ready once the first key-set snapshot is loaded. `GET /livez` (liveness): the
//! server answers, whatever the state of Redis, so a Redis outage never gets the sidecar restarted.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::http::state::AppState;

/// 200 with the served version once loaded, 503 before, and 503 again once shutdown has begun (so the
/// orchestrator withdraws the endpoint while the server still answers).
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    if state.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "stopping" })),
        )
            .into_response();
    }
    match state.mirror().snapshot() {
        Some(snapshot) => {
            Json(serde_json::json!({ "status": "ok", "version": snapshot.version() }))
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "starting" })),
        )
            .into_response(),
    }
}

/// 200 whenever the server answers.
pub(crate) async fn livez() -> Response {
    Json(serde_json::json!({ "status": "alive" })).into_response()
}
