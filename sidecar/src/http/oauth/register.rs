//! `POST /oauth/register` (RFC 7591) and the client configuration endpoint `GET`/`PUT`/`DELETE
//! /oauth/register/{client_id}` (RFC 7592). The policy and the work are [`crate::oauth::registration`]'s; this
//! parses, authenticates the bearer tokens and renders RFC 7591 §3.2 answers.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::http::json_body::is_json;
use crate::http::state::AppState;
use crate::oauth::registration::{ClientInformation, ClientMetadata, Registrar, RegistrationError};

/// Path of the registration endpoint.
pub(crate) const REGISTRATION_PATH: &str = "/oauth/register";

fn registrar(state: &AppState) -> Registrar<'_> {
    let base = state.config().issuer.trim_end_matches('/');
    Registrar::new(
        &state.config().registration,
        state.names(),
        format!("{base}{REGISTRATION_PATH}"),
    )
}

/// The `Authorization: Bearer` value, if there is exactly one well-formed one.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, RegistrationError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(RegistrationError::InvalidToken);
    }
    let value = value
        .to_str()
        .map_err(|_| RegistrationError::InvalidToken)?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(RegistrationError::InvalidToken),
    }
}

/// The client metadata of a registration or update request: a JSON body (RFC 7591 §3.1).
pub(crate) fn metadata(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ClientMetadata, RegistrationError> {
    if !is_json(headers) {
        return Err(RegistrationError::InvalidMetadata(
            "the body must be application/json".into(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| RegistrationError::InvalidMetadata(format!("malformed client metadata: {e}")))
}

async fn conn(
    state: &AppState,
) -> Result<crate::store::connection::RedisConnection, RegistrationError> {
    Ok(state.redis().await?)
}

/// `POST /oauth/register`.
pub(crate) async fn register(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let registrar = registrar(&state);
    let result = async {
        let via = registrar.admit(bearer(&headers)?)?;
        let mut conn = conn(&state).await?;
        // Per source address; without one (a test's in-process request) every request shares one bucket.
        let source = peer.map_or_else(
            || "unknown".to_owned(),
            |Extension(ConnectInfo(addr))| addr.ip().to_string(),
        );
        registrar.count_attempt(&mut conn, &source).await?;
        let metadata = metadata(&headers, &body)?;
        registrar
            .register(&mut conn, metadata, via, state.clock().now_secs())
            .await
    }
    .await;
    match result {
        Ok(info) => answer(StatusCode::CREATED, &info),
        Err(e) => render(e),
    }
}

/// `GET /oauth/register/{client_id}`.
pub(crate) async fn read(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let registrar = registrar(&state);
    let result = async {
        let presented = bearer(&headers)?;
        let mut conn = conn(&state).await?;
        let (record, registration) = registrar
            .authenticate(&mut conn, &client_id, presented)
            .await?;
        Ok(registrar.read(&record, &registration, presented.unwrap_or_default()))
    }
    .await;
    match result {
        Ok(info) => answer(StatusCode::OK, &info),
        Err(e) => render(e),
    }
}

/// `PUT /oauth/register/{client_id}`.
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let registrar = registrar(&state);
    let result = async {
        let presented = bearer(&headers)?;
        let mut conn = conn(&state).await?;
        let (record, registration) = registrar
            .authenticate(&mut conn, &client_id, presented)
            .await?;
        let metadata = metadata(&headers, &body)?;
        registrar
            .update(&mut conn, &record, &registration, metadata)
            .await
    }
    .await;
    match result {
        Ok(info) => answer(StatusCode::OK, &info),
        Err(e) => render(e),
    }
}

/// `DELETE /oauth/register/{client_id}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let registrar = registrar(&state);
    let result = async {
        let presented = bearer(&headers)?;
        let mut conn = conn(&state).await?;
        registrar
            .authenticate(&mut conn, &client_id, presented)
            .await?;
        registrar
            .delete(&mut conn, &client_id, state.clock().now_secs())
            .await
    }
    .await;
    match result {
        Ok(_) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => render(e),
    }
}

fn answer(status: StatusCode, info: &ClientInformation) -> Response {
    let mut response = (status, Json(info)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The RFC 7591 §3.2.2 (or RFC 6750) answer to a refused request.
pub(crate) fn render(error: RegistrationError) -> Response {
    let (status, code, description) = match &error {
        RegistrationError::Disabled => {
            return (StatusCode::NOT_FOUND, "client registration is not enabled").into_response()
        }
        RegistrationError::InvalidToken => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "a valid access token is required".to_owned(),
        ),
        RegistrationError::InvalidRedirectUri(d) => {
            (StatusCode::BAD_REQUEST, "invalid_redirect_uri", d.clone())
        }
        RegistrationError::InvalidMetadata(d) => (
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            d.clone(),
        ),
        RegistrationError::RateLimited(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request",
            "too many registrations from this address; retry later".to_owned(),
        ),
        RegistrationError::Redis(e) => {
            tracing::warn!(error = %e, "redis operation failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again later".to_owned(),
            )
        }
        RegistrationError::Client(e) => {
            tracing::error!(error = %e, "client registration failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal error".to_owned(),
            )
        }
    };
    let body = serde_json::json!({ "error": code, "error_description": description });
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match error {
        RegistrationError::InvalidToken => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keymesh\", error=\"invalid_token\""),
            );
        }
        RegistrationError::RateLimited(secs) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        _ => {}
    }
    response
}
