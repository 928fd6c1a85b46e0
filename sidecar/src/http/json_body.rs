//! JSON request bodies, the same way for every endpoint that takes one.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap};

/// Whether the request says its body is JSON: `Content-Type: application/json`, parameters such as `charset`
/// ignored.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON request body, or what is wrong with it (the description of an `invalid_request` answer).
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, String> {
    if !is_json(headers) {
        return Err("content type must be application/json".to_owned());
    }
    let body = body.map_err(|_| "body too large or unreadable".to_owned())?;
    serde_json::from_slice(&body).map_err(|error| format!("malformed body: {error}"))
}
