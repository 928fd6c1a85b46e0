//! The admin API for a self-service portal: create, list, revoke and regenerate API keys.
//!
//! Every endpoint requires `Authorization: Bearer <admin token>` (see [`Admin`]). Keys are returned only by
//! create and regenerate, with `Cache-Control: no-store`; nothing logged here contains a key or the token.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::api_keys::{ApiKeyInfo, IssuedApiKey, NewApiKey};
use crate::http::admin::error::{Admin, AdminError};
use crate::http::state::AppState;

/// Body of `POST /v1/admin/apikeys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    owner: String,
    label: String,
    resources: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
    #[serde(default)]
    tier: Option<String>,
}

/// Query of `GET /v1/admin/apikeys`.
#[derive(Deserialize)]
pub(crate) struct ListQuery {
    owner: String,
}

/// Response of `GET /v1/admin/apikeys`.
#[derive(Serialize)]
struct ListResponse {
    api_keys: Vec<ApiKeyInfo>,
}

/// `POST /v1/admin/apikeys`: 201 with the new key (shown this once).
pub(crate) async fn create(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(AdminError::InvalidRequest(
            "content type must be application/json".to_owned(),
        ));
    }
    let body =
        body.map_err(|_| AdminError::InvalidRequest("body too large or unreadable".to_owned()))?;
    let request: CreateRequest = serde_json::from_slice(&body)
        .map_err(|error| AdminError::InvalidRequest(format!("malformed body: {error}")))?;
    let new = NewApiKey {
        owner: request.owner,
        label: request.label,
        resources: request.resources,
        scopes: request.scopes,
        expires_in_secs: request.expires_in_secs,
        tier: request.tier,
    };
    let mut conn = redis(&state).await?;
    let issued = state
        .api_keys()
        .create(&mut conn, new, state.clock().now_secs())
        .await?;
    tracing::info!(id = %issued.id, owner = %issued.owner, prefix = %issued.prefix, "admin api: created api key");
    Ok(issued_response(StatusCode::CREATED, &issued))
}

/// `GET /v1/admin/apikeys?owner=S`: the owner's keys, oldest first, without keys or hashes.
pub(crate) async fn list(
    _: Admin,
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, AdminError> {
    let Query(query) = query.map_err(|_| {
        AdminError::InvalidRequest("the owner query parameter is required".to_owned())
    })?;
    let mut conn = redis(&state).await?;
    let records = state.api_keys().list(&mut conn, &query.owner).await?;
    let body = ListResponse {
        api_keys: records.into_iter().map(ApiKeyInfo::from).collect(),
    };
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(body),
    )
        .into_response())
}

/// `DELETE /v1/admin/apikeys/{id}`: 204, or 404 if there is no such key.
pub(crate) async fn revoke(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let mut conn = redis(&state).await?;
    if !state.api_keys().revoke(&mut conn, &id).await? {
        return Err(AdminError::NotFound);
    }
    tracing::info!(%id, "admin api: revoked api key");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/admin/apikeys/{id}/regenerate`: 200 with the new key, or 404 if there is no such key.
pub(crate) async fn regenerate(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let mut conn = redis(&state).await?;
    let issued = state
        .api_keys()
        .regenerate(&mut conn, &id)
        .await?
        .ok_or(AdminError::NotFound)?;
    tracing::info!(id = %issued.id, prefix = %issued.prefix, "admin api: regenerated api key");
    Ok(issued_response(StatusCode::OK, &issued))
}

async fn redis(state: &AppState) -> Result<crate::store::connection::RedisConnection, AdminError> {
    state.redis().await.map_err(|error| {
        tracing::warn!(%error, "cannot reach redis for an admin request");
        AdminError::Unavailable
    })
}

fn issued_response(status: StatusCode, issued: &IssuedApiKey) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        Json(issued),
    )
        .into_response()
}
