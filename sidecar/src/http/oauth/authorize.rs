//! `GET /oauth/authorize`: the authorization request (RFC 6749 §4.1.1, with PKCE and resource indicators).
//!
//! The client and its redirect URI are checked first; if either is wrong the user sees an error page and nothing
//! is sent anywhere. Every other problem goes back to the client's redirect URI as `error=…`. A valid request is
//! parked in Redis (see [`crate::oauth::sessions`]) and the user sees the login page, or the consent page if the
//! browser's session is already logged in. The forms post to `POST /oauth/authorize`
//! ([`crate::http::oauth::authorize_form`]).

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::oauth::authorize_error::{PageError, RedirectError, Target};
use crate::http::oauth::pages;
use crate::http::oauth::token_request::{self, Params};
use crate::http::state::AppState;
use crate::oauth::clients::{ClientError, ClientRecord, GrantType};
use crate::oauth::redirect_uri;
use crate::oauth::sessions::{
    session_digest, LoginSession, PendingAuthorization, SESSION_TTL_SECS,
};
use crate::oauth::{self, pkce};

/// Path of the authorization endpoint.
pub(crate) const AUTHORIZE_PATH: &str = "/oauth/authorize";
/// Name of the login session cookie.
const SESSION_COOKIE: &str = "keymesh_session";

/// Handles an authorization request.
pub(crate) async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match begin(&state, &headers, query.as_deref().unwrap_or_default()).await {
        Ok(response) | Err(response) => response,
    }
}

async fn begin(state: &AppState, headers: &HeaderMap, query: &str) -> Result<Response, Response> {
    let issuer = state.config().issuer.as_str();
    let mut params =
        token_request::parse_params(query.as_bytes()).map_err(|_| page(PageError::Malformed))?;
    let client_id = params
        .take("client_id")
        .ok_or_else(|| page(PageError::MissingClientId))?;
    let client = load_client(state, &client_id).await?;
    let request = match check_request(&client, params) {
        Ok(request) => request,
        Err(Refusal::Page(error)) => return Err(page(error)),
        Err(Refusal::Redirect(target, error)) => {
            tracing::info!(%client_id, error = error.code(), %error, "authorization request refused");
            return Err(target.error(error, issuer));
        }
    };
    let CheckedRequest {
        target,
        redirect_uri_given,
        scopes,
        resources,
        code_challenge,
    } = request;
    let fail = |error: RedirectError| {
        tracing::info!(%client_id, error = error.code(), %error, "authorization request refused");
        target.error(error, issuer)
    };

    let mut conn = state
        .redis()
        .await
        .map_err(|_| fail(RedirectError::Unavailable))?;
    let sessions = state_sessions(state);
    let existing = match session_cookie(headers) {
        Some(id) => sessions
            .get(&mut conn, &id)
            .await
            .map_err(|_| fail(RedirectError::Unavailable))?
            .map(|session| (id, session)),
        None => None,
    };
    let (session_id, session, new_cookie) = match existing {
        Some((id, session)) => (id, session, None),
        None => {
            let (id, session) = sessions
                .start(&mut conn, None)
                .await
                .map_err(|_| fail(RedirectError::Unavailable))?;
            let cookie = session_set_cookie(&id, issuer);
            (id, session, Some(cookie))
        }
    };
    let pending = PendingAuthorization {
        client_id: client.client_id.clone(),
        redirect_uri: target.redirect_uri.clone(),
        redirect_uri_given,
        state: target.state.clone(),
        scopes,
        resources,
        code_challenge,
        session: session_digest(&session_id),
    };
    let request_id = sessions
        .park(&mut conn, &pending)
        .await
        .map_err(|_| fail(RedirectError::Unavailable))?;
    Ok(show(
        &client,
        &pending,
        &session,
        &request_id,
        new_cookie.as_deref(),
    ))
}

/// An authorization request that may be shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedRequest {
    /// Where the answer goes: the requested redirect URI (or the only registered one), with `state`.
    pub(crate) target: Target,
    /// Whether the request named the redirect URI (the token request must then repeat it).
    pub(crate) redirect_uri_given: bool,
    /// The scopes to grant.
    pub(crate) scopes: Vec<String>,
    /// The resources (audiences) to grant.
    pub(crate) resources: Vec<String>,
    /// The PKCE `S256` challenge, if any.
    pub(crate) code_challenge: Option<String>,
}

/// Why an authorization request is refused, and how the refusal is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The redirect URI cannot be trusted: an error page, nothing sent anywhere.
    Page(PageError),
    /// An `error` sent back to the client's (validated) redirect URI.
    Redirect(Target, RedirectError),
}

/// Checks the parameters of an authorization request (`client_id` already taken) against `client`: the redirect
/// URI first, then the response type and mode, scopes, resources and PKCE.
pub(crate) fn check_request(
    client: &ClientRecord,
    mut params: Params,
) -> Result<CheckedRequest, Refusal> {
    let (redirect_uri, redirect_uri_given) = match params.take("redirect_uri") {
        Some(requested) => {
            if redirect_uri::find(&client.redirect_uris, &requested, client.public).is_none() {
                tracing::info!(client_id = %client.client_id, redirect_uri = %requested,
                    "unregistered redirect URI");
                return Err(Refusal::Page(PageError::UnregisteredRedirectUri));
            }
            (requested, true)
        }
        None => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => return Err(Refusal::Page(PageError::RedirectUriRequired)),
        },
    };
    let target = Target {
        redirect_uri,
        state: params.take("state"),
    };
    // From here on, errors go to the client.
    let fail = |error: RedirectError| Refusal::Redirect(target.clone(), error);
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(fail(RedirectError::UnauthorizedClient));
    }
    match params.take("response_type").as_deref() {
        Some("code") => {}
        Some(_) => return Err(fail(RedirectError::UnsupportedResponseType)),
        None => return Err(fail(RedirectError::MissingResponseType)),
    }
    if params
        .take("response_mode")
        .is_some_and(|mode| mode != "query")
    {
        return Err(fail(RedirectError::UnsupportedResponseMode));
    }
    let scopes = oauth::select_scopes(&client.scopes, params.take("scope").as_deref())
        .ok_or_else(|| fail(RedirectError::InvalidScope))?;
    let resources = oauth::select_resources(&client.resources, &params.resources)
        .ok_or_else(|| fail(RedirectError::InvalidTarget))?;
    let code_challenge = pkce::challenge(
        params.take("code_challenge").as_deref(),
        params.take("code_challenge_method").as_deref(),
    )
    .map_err(|error| fail(RedirectError::Pkce(error)))?;
    if client.public && code_challenge.is_none() {
        return Err(fail(RedirectError::PkceRequired));
    }
    Ok(CheckedRequest {
        target,
        redirect_uri_given,
        scopes,
        resources,
        code_challenge,
    })
}

/// The page for a parked request: consent if the session is logged in, else login.
pub(crate) fn show(
    client: &ClientRecord,
    pending: &PendingAuthorization,
    session: &LoginSession,
    request_id: &str,
    cookie: Option<&str>,
) -> Response {
    let html = match &session.subject {
        Some(user) => pages::consent(client, pending, user, request_id, &session.csrf),
        None => pages::login(client, request_id, &session.csrf, None),
    };
    pages::page(StatusCode::OK, html, cookie)
}

/// The client with this id, or the error page.
pub(crate) async fn load_client(
    state: &AppState,
    client_id: &str,
) -> Result<ClientRecord, Response> {
    let mut conn = state
        .redis()
        .await
        .map_err(|_| page(PageError::Unavailable))?;
    match state.clients().get(&mut conn, client_id).await {
        Ok(Some(client)) => Ok(client),
        Ok(None) => {
            tracing::info!(%client_id, "authorization request from an unknown client");
            Err(page(PageError::UnknownClient))
        }
        Err(ClientError::Redis(_)) => Err(page(PageError::Unavailable)),
        Err(error) => {
            tracing::error!(%error, "cannot use client record");
            Err(page(PageError::Internal))
        }
    }
}

/// The session store of this state.
pub(crate) fn state_sessions(state: &AppState) -> crate::oauth::sessions::SessionStore {
    crate::oauth::sessions::SessionStore::new(state.names().clone())
}

/// An error page response.
pub(crate) fn page(error: PageError) -> Response {
    error.into_response()
}

/// The value of the session cookie, if the request has one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE && !value.is_empty()).then(|| value.to_owned())
        })
}

/// The `Set-Cookie` value of a session: HttpOnly, SameSite=Lax (the forms are same-site; the cookie is not sent on
/// cross-site POSTs), and Secure when the issuer is https.
pub(crate) fn session_set_cookie(id: &str, issuer: &str) -> String {
    let secure = if issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{SESSION_COOKIE}={id}; Path=/oauth; Max-Age={SESSION_TTL_SECS}; HttpOnly; SameSite=Lax{secure}"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; keymesh_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        let mut two = HeaderMap::new();
        two.append(header::COOKIE, HeaderValue::from_static("a=1"));
        two.append(
            header::COOKIE,
            HeaderValue::from_static("keymesh_session=xyz"),
        );
        assert_eq!(session_cookie(&two).as_deref(), Some("xyz"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn cookie_attributes_follow_the_issuer() {
        let plain = session_set_cookie("id", "http://127.0.0.1:8080");
        assert!(
            plain.contains("HttpOnly") && plain.contains("SameSite=Lax"),
            "{plain}"
        );
        assert!(!plain.contains("Secure"), "{plain}");
        assert!(session_set_cookie("id", "https://as.example").ends_with("; Secure"));
    }
}
