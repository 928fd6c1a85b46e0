//! How the authorization endpoint answers when it cannot go on: an error page when the client or its redirect URI
//! cannot be trusted (RFC 6749 §4.1.2.1: never redirect then), else a redirect to the client with `error`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::oauth::pages;

/// Where an answer to an authorization request goes: the validated redirect URI, with the client's `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The redirect URI.
    pub(crate) redirect_uri: String,
    /// The client's `state`, returned untouched.
    pub(crate) state: Option<String>,
}

impl Target {
    /// `303 See Other` to the redirect URI with `params`, `state` and `iss` (RFC 9207) added to its query. 303
    /// makes the browser follow a POST with a GET (RFC 9700 §4.12).
    pub(crate) fn redirect(&self, params: &[(&str, &str)], issuer: &str) -> Response {
        let mut url = self.redirect_uri.clone();
        let mut separator = if url.contains('?') { '&' } else { '?' };
        let state = self.state.as_deref().map(|state| ("state", state));
        for (name, value) in params.iter().copied().chain(state).chain([("iss", issuer)]) {
            url.push(separator);
            url.push_str(name);
            url.push('=');
            url.push_str(&form_urlencode(value));
            separator = '&';
        }
        let Ok(location) = HeaderValue::from_str(&url) else {
            // Registered URIs are checked and everything added is percent-encoded: this cannot happen.
            return PageError::Internal.into_response();
        };
        (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
        )
            .into_response()
    }

    /// A redirect carrying `error` and its description (RFC 6749 §4.1.2.1).
    pub(crate) fn error(&self, error: RedirectError, issuer: &str) -> Response {
        self.redirect(
            &[
                ("error", error.code()),
                ("error_description", &error.to_string()),
            ],
            issuer,
        )
    }
}

/// An error reported to the client at its redirect URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RedirectError {
    /// `response_type` is missing.
    #[error("response_type is required")]
    MissingResponseType,
    /// `response_type` is not `code`: the implicit and hybrid flows are not supported (RFC 9700 §2.1.2).
    #[error("only response_type=code is supported")]
    UnsupportedResponseType,
    /// `response_mode` asks for something other than the query.
    #[error("only response_mode=query is supported")]
    UnsupportedResponseMode,
    /// The client is not registered for the authorization code grant.
    #[error("the client is not registered for the authorization code grant")]
    UnauthorizedClient,
    /// A scope is malformed or not allowed for the client.
    #[error("requested scope is invalid or not allowed for this client")]
    InvalidScope,
    /// A resource is malformed or not allowed for the client (RFC 8707).
    #[error("each resource must be an absolute URI allowed for this client")]
    InvalidTarget,
    /// The PKCE parameters are refused.
    #[error("{0}")]
    Pkce(crate::oauth::pkce::PkceError),
    /// A public client sent no PKCE challenge.
    #[error("code_challenge (S256) is required for public clients")]
    PkceRequired,
    /// The user denied the request.
    #[error("the user denied the request")]
    AccessDenied,
    /// The server cannot go on right now.
    #[error("try again later")]
    Unavailable,
}

impl RedirectError {
    /// The `error` code.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::MissingResponseType
            | Self::UnsupportedResponseMode
            | Self::Pkce(_)
            | Self::PkceRequired => "invalid_request",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::Unavailable => "temporarily_unavailable",
        }
    }
}

/// An error shown to the user as a page, never sent to a redirect URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PageError {
    /// The query or form is not valid form encoding, or repeats a parameter.
    #[error("The request is malformed.")]
    Malformed,
    /// No `client_id`.
    #[error("The request does not name a client.")]
    MissingClientId,
    /// No client with this id.
    #[error("The application is not registered.")]
    UnknownClient,
    /// The `redirect_uri` is not one the client registered.
    #[error("The redirect URI is not registered for this application.")]
    UnregisteredRedirectUri,
    /// No `redirect_uri`, and the client registered several.
    #[error("The request must name one of the application's redirect URIs.")]
    RedirectUriRequired,
    /// No session cookie, or the session expired.
    #[error("Your sign-in session has expired.")]
    SessionExpired,
    /// The form's CSRF token is missing or wrong.
    #[error("The form was not sent from this page.")]
    BadCsrf,
    /// The parked request expired, was answered, or belongs to another session.
    #[error("This authorization request has expired or was already answered.")]
    RequestExpired,
    /// Redis is not reachable.
    #[error("The service is temporarily unavailable.")]
    Unavailable,
    /// Something that should not fail did.
    #[error("Something went wrong.")]
    Internal,
}

impl PageError {
    fn status(self) -> StatusCode {
        match self {
            Self::BadCsrf => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        pages::page(
            self.status(),
            pages::error("Cannot continue", &self.to_string()),
            None,
        )
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_the_registered_query_and_encode_everything_added() {
        let target = Target {
            redirect_uri: "https://app.example/cb?tenant=a".into(),
            state: Some("s p&a=c/é".into()),
        };
        let response = target.redirect(&[("code", "abc")], "https://as.example");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://app.example/cb?tenant=a&code=abc&state=s%20p%26a%3Dc%2F%C3%A9&iss=https%3A%2F%2Fas.example"
        );
        let denied = Target {
            redirect_uri: "http://127.0.0.1:4000/cb".into(),
            state: None,
        }
        .error(RedirectError::AccessDenied, "https://as.example");
        let location = denied.headers()[header::LOCATION].to_str().unwrap();
        assert!(
            location.starts_with("http://127.0.0.1:4000/cb?error=access_denied&error_description="),
            "{location}"
        );
        assert!(!location.contains("state="), "{location}");
    }
}
