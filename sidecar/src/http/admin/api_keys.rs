//! The admin API for a self-service portal: create, list, revoke, disable, enable and regenerate API keys.
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

use crate::api_keys::{ApiKeyInfo, Grace, IssuedApiKey, NewApiKey};
use crate::http::admin::error::{Admin, AdminError};
use crate::http::json_body::json_body;
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

/// Body of `POST /v1/admin/apikeys/{id}/regenerate` (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RegenerateRequest {
    #[serde(default)]
    grace_secs: u64,
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
    let request: CreateRequest = json_body(&headers, body).map_err(AdminError::InvalidRequest)?;
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
    let api_keys = state
        .api_keys()
        .list_info(&mut conn, &query.owner, state.clock().now_secs())
        .await?;
    let body = ListResponse { api_keys };
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

/// `POST /v1/admin/apikeys/{id}/disable`: 200 with the key as listed, or 404 if there is no such key.
pub(crate) async fn disable(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let mut conn = redis(&state).await?;
    let record = state
        .api_keys()
        .disable(&mut conn, &id)
        .await?
        .ok_or(AdminError::NotFound)?;
    tracing::info!(%id, "admin api: disabled api key");
    Ok(info_response(&state, record))
}

/// `POST /v1/admin/apikeys/{id}/enable`: 200 with the key as listed, or 404 if there is no such key.
pub(crate) async fn enable(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    let mut conn = redis(&state).await?;
    let record = state
        .api_keys()
        .enable(&mut conn, &id, state.clock().now_secs())
        .await?
        .ok_or(AdminError::NotFound)?;
    tracing::info!(%id, "admin api: enabled api key");
    Ok(info_response(&state, record))
}

/// `POST /v1/admin/apikeys/{id}/regenerate`, optionally with `{"grace_secs": N}` (0 to 604800): 200 with the
/// new key, or 404 if there is no such key.
pub(crate) async fn regenerate(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let empty = body.as_ref().is_ok_and(|bytes| bytes.is_empty());
    let request: RegenerateRequest = if empty {
        RegenerateRequest::default()
    } else {
        json_body(&headers, body).map_err(AdminError::InvalidRequest)?
    };
    let grace = Grace::from_secs(request.grace_secs)?;
    let mut conn = redis(&state).await?;
    let issued = state
        .api_keys()
        .regenerate(&mut conn, &id, grace, state.clock().now_secs())
        .await?
        .ok_or(AdminError::NotFound)?;
    tracing::info!(id = %issued.id, prefix = %issued.prefix, grace_secs = grace.secs(), "admin api: regenerated api key");
    Ok(issued_response(StatusCode::OK, &issued))
}

fn info_response(state: &AppState, record: crate::api_keys::ApiKeyRecord) -> Response {
    // The last-used time is in the listing; here it would cost a read for nothing the caller asked for.
    let info = ApiKeyInfo::new(record, state.clock().now_secs(), None);
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(info),
    )
        .into_response()
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
