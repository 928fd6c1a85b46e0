//! `/v1/account/api-keys`: the account page's operations as JSON, for the logged-in user.
//!
//! A caller is authenticated by either
//! - the account session cookie; a request that changes anything must then send the session's CSRF token in
//!   `X-CSRF-Token` (`GET /v1/account/api-keys` returns it as `csrf_token`) and is refused if the browser says it
//!   comes from another site; or
//! - `Authorization: Bearer` with an access token of this server for the user, with the scope
//!   [`ACCOUNT_SCOPE`](super::ACCOUNT_SCOPE) and the issuer among its audiences (what a CLI or a portal gets from the authorization code
//!   grant). Tokens of the client credentials grant (subject = client) are refused: they speak for no user.
//!
//! Errors are `{"error", "error_description"}`. A key of another user is `404`, like a key that does not exist.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api_error::AccountApiError;
use super::session::{self, CSRF_HEADER};
use super::ACCOUNT_SCOPE;
use crate::api_keys::owned::UserKeyRequest;
use crate::api_keys::{ApiKeyInfo, IssuedApiKey, KeyPolicy, UserKeys};
use crate::http::json_body::json_body;
use crate::http::state::AppState;
use crate::oauth::{access_token, revocation};

/// Who is calling, and how.
struct Caller {
    user: String,
    /// The session's CSRF token, for callers authenticated by the cookie.
    csrf: Option<String>,
}

/// Body of `POST /v1/account/api-keys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    label: String,
    resources: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

/// Body of `POST /v1/account/api-keys/{id}/regenerate` (optional).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegenerateRequest {
    #[serde(default)]
    grace_secs: u64,
}

/// Response of `GET /v1/account/api-keys`.
#[derive(Serialize)]
struct ListResponse {
    user: String,
    api_keys: Vec<ApiKeyInfo>,
    policy: KeyPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

/// `GET /v1/account/api-keys`: the user's keys and the policy that applies to them.
pub(crate) async fn list(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, AccountApiError> {
    let caller = authenticate(&state, &method, &headers).await?;
    let service = UserKeys::new(state.names().clone());
    let mut conn = redis(&state).await?;
    let (policy, _) = service.policy(&mut conn, &caller.user).await?;
    let api_keys = service
        .list(&mut conn, &caller.user, state.clock().now_secs())
        .await?;
    Ok(no_store(
        StatusCode::OK,
        Json(ListResponse {
            user: caller.user,
            api_keys,
            policy,
            csrf_token: caller.csrf,
        }),
    ))
}

/// `POST /v1/account/api-keys`: 201 with the new key (shown this once).
pub(crate) async fn create(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AccountApiError> {
    let caller = authenticate(&state, &method, &headers).await?;
    let request: CreateRequest =
        json_body(&headers, body).map_err(AccountApiError::InvalidRequest)?;
    let mut conn = redis(&state).await?;
    let issued = UserKeys::new(state.names().clone())
        .create(
            &mut conn,
            &caller.user,
            UserKeyRequest {
                label: request.label,
                resources: request.resources,
                scopes: request.scopes,
                expires_in_secs: request.expires_in_secs,
            },
            state.clock().now_secs(),
        )
        .await?;
    tracing::info!(user = %caller.user, id = %issued.id, prefix = %issued.prefix, "account api: created api key");
    Ok(issued_response(StatusCode::CREATED, &issued))
}

/// `GET /v1/account/api-keys/{id}`: one of the user's keys.
pub(crate) async fn get(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AccountApiError> {
    let caller = authenticate(&state, &method, &headers).await?;
    let mut conn = redis(&state).await?;
    let info = UserKeys::new(state.names().clone())
        .info(&mut conn, &caller.user, &id, state.clock().now_secs())
        .await?;
    Ok(no_store(StatusCode::OK, Json(info)))
}

/// `POST /v1/account/api-keys/{id}/disable`: 200 with the key as listed; every proxy refuses it until enabled.
pub(crate) async fn disable(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AccountApiError> {
    let caller = authenticate(&state, &method, &headers).await?;
    let mut conn = redis(&state).await?;
    let service = UserKeys::new(state.names().clone());
    service.disable(&mut conn, &caller.user, &id).await?;
    tracing::info!(user = %caller.user, %id, "account api: disabled api key");
    let info = service
        .info(&mut conn, &caller.user, &id, state.clock().now_secs())
        .await?;
    Ok(no_store(StatusCode::OK, Json(info)))
}

/// `POST /v1/account/api-keys/{id}/enable`: 200 with the key as listed.
pub(crate) async fn enable(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AccountApiError> {
    let caller = authenticate(&state, &method, &headers).await?;
    let mut conn = redis(&state).await?;
    let service = UserKeys::new(state.names().clone());
    let now = state.clock().now_secs();
    service.enable(&mut conn, &caller.user, &id, now).await?;
    tracing::info!(user = %caller.user, %id, "account api: enabled api key");
    let info = service.info(&mut conn, &caller.user, &id, now).await?;
    Ok(no_store(StatusCode::OK, Json(info)))
}

/// `DELETE /v1/account/api-keys/{id}`: 204.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AccountApiError> {
    let caller = authenticate(&state, &method, &headers).await?;
    let mut conn = redis(&state).await?;
    UserKeys::new(state.names().clone())
        .revoke(&mut conn, &caller.user, &id)
        .await?;
    tracing::info!(user = %caller.user, %id, "account api: revoked api key");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/account/api-keys/{id}/regenerate`, optionally with `{"grace_secs": N}` (0 to 604800, the time the
/// old secret keeps working): 200 with the new key.
pub(crate) async fn regenerate(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AccountApiError> {
    let caller = authenticate(&state, &method, &headers).await?;
    let request: RegenerateRequest = if body.as_ref().is_ok_and(|bytes| bytes.is_empty()) {
        RegenerateRequest::default()
    } else {
        json_body(&headers, body).map_err(AccountApiError::InvalidRequest)?
    };
    let mut conn = redis(&state).await?;
    let issued = UserKeys::new(state.names().clone())
        .regenerate(
            &mut conn,
            &caller.user,
            &id,
            request.grace_secs,
            state.clock().now_secs(),
        )
        .await?;
    tracing::info!(user = %caller.user, %id, prefix = %issued.prefix, "account api: regenerated api key");
    Ok(issued_response(StatusCode::OK, &issued))
}

/// The caller: a bearer token if there is an `Authorization` header, else the session cookie (with the CSRF and
/// same-site checks on anything but `GET`).
async fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Caller, AccountApiError> {
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let token = authorization
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(AccountApiError::InvalidToken)?;
        return bearer(state, token).await;
    }
    let current = session::current(state, headers)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "account api: cannot read the session");
            AccountApiError::Unavailable
        })?
        .ok_or(AccountApiError::Unauthenticated)?;
    let user = current
        .user()
        .ok_or(AccountApiError::Unauthenticated)?
        .to_owned();
    if method != Method::GET {
        if session::is_cross_site(headers, &state.config().issuer) {
            tracing::warn!(%user, "account api: cross-site request refused");
            return Err(AccountApiError::CrossSite);
        }
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !current.csrf_matches(given) {
            tracing::warn!(%user, "account api: missing or wrong csrf token");
            return Err(AccountApiError::Csrf);
        }
    }
    Ok(Caller {
        user,
        csrf: Some(current.session.csrf),
    })
}

async fn bearer(state: &AppState, token: &str) -> Result<Caller, AccountApiError> {
    let issuer = state.config().issuer.as_str();
    let snapshot = state
        .mirror()
        .snapshot()
        .ok_or(AccountApiError::Unavailable)?;
    let verified = snapshot
        .own_keys()
        .and_then(|keys| access_token::verify(token, issuer, keys))
        .ok_or(AccountApiError::InvalidToken)?;
    if state.clock().now_secs() >= verified.expires_at
        || !verified.audience.iter().any(|aud| aud == issuer)
    {
        return Err(AccountApiError::InvalidToken);
    }
    let mut conn = redis(state).await?;
    if revocation::is_revoked(&mut conn, state.names(), &verified.jti)
        .await
        .map_err(|_| AccountApiError::Unavailable)?
    {
        return Err(AccountApiError::InvalidToken);
    }
    let scoped = verified
        .scope
        .as_deref()
        .is_some_and(|scope| scope.split(' ').any(|s| s == ACCOUNT_SCOPE));
    if !scoped || verified.subject == verified.client_id {
        return Err(AccountApiError::InsufficientScope);
    }
    Ok(Caller {
        user: verified.subject,
        csrf: None,
    })
}

async fn redis(
    state: &AppState,
) -> Result<crate::store::connection::RedisConnection, AccountApiError> {
    state.redis().await.map_err(|error| {
        tracing::warn!(%error, "account api: cannot reach redis");
        AccountApiError::Unavailable
    })
}

fn no_store(status: StatusCode, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn issued_response(status: StatusCode, issued: &IssuedApiKey) -> Response {
    let mut response = no_store(status, Json(issued));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
