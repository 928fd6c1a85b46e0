//! `GET` and `POST /account/api-keys`: the account page, server-rendered.
//!
//! `GET` shows the login form (starting an anonymous session for its CSRF token) or, once logged in, the user's
//! keys. Every `POST` is refused with 403 if the browser says it comes from another site or if its CSRF token is
//! not the session's; then `action` says what to do. A new key is rendered in the answer to the POST that made it
//! and nowhere else: not in a redirect, not in the session, so a reload cannot show it again. Actions that show
//! no secret answer `303 See Other` back to the page.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::html::{self, KeysPage, Notice};
use super::session::{self, Current};
use super::ACCOUNT_PATH;
use crate::api_keys::owned::UserKeyRequest;
use crate::api_keys::{UserKeyError, UserKeys};
use crate::http::oauth::pages;
use crate::http::oauth::source::Source;
use crate::http::oauth::token_request::{self, form_decode};
use crate::http::state::AppState;
use crate::oauth::login::{self, LoginOutcome};

/// `GET /account/api-keys`.
pub(crate) async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let current = match session::current(&state, &headers).await {
        Ok(current) => current,
        Err(error) => return unavailable(&error),
    };
    match current {
        Some(current) => match current.user() {
            Some(user) => keys_page(&state, user, &current.session.csrf, Notice::None).await,
            None => pages::page(
                StatusCode::OK,
                html::login(&current.session.csrf, None),
                None,
            ),
        },
        None => login_page(&state, StatusCode::OK, None).await,
    }
}

/// `POST /account/api-keys`.
pub(crate) async fn submit(
    State(state): State<AppState>,
    source: Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !token_request::is_form(&headers) {
        return refused(StatusCode::BAD_REQUEST, "The request is not a form.");
    }
    if session::is_cross_site(&headers, &state.config().issuer) {
        tracing::warn!("account form sent from another site");
        return refused(
            StatusCode::FORBIDDEN,
            "This form was sent from another site.",
        );
    }
    let Some(form) = body.ok().as_deref().and_then(Form::parse) else {
        return refused(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    let current = match session::current(&state, &headers).await {
        Ok(Some(current)) => current,
        Ok(None) => {
            return refused(
                StatusCode::FORBIDDEN,
                "Your session has expired. Open the page again and sign in.",
            )
        }
        Err(error) => return unavailable(&error),
    };
    if !current.csrf_matches(form.one("csrf").unwrap_or_default()) {
        tracing::warn!("account form with a missing or wrong CSRF token");
        return refused(
            StatusCode::FORBIDDEN,
            "The form has expired or did not come from this page. Open the page again and retry.",
        );
    }
    let action = form.one("action").unwrap_or_default();
    match (action, current.user()) {
        ("login", _) => log_in(&state, &source, &current, &form).await,
        ("logout", _) => log_out(&state, &current).await,
        (_, None) => pages::page(
            StatusCode::OK,
            html::login(&current.session.csrf, Some("Sign in first.")),
            None,
        ),
        (action, Some(user)) => act(&state, user, &current.session.csrf, action, &form).await,
    }
}

async fn act(state: &AppState, user: &str, csrf: &str, action: &str, form: &Form) -> Response {
    let keys = UserKeys::new(state.names().clone());
    let mut conn = match state.redis().await {
        Ok(conn) => conn,
        Err(error) => return unavailable(&error),
    };
    let now = state.clock().now_secs();
    let id = form.one("id").unwrap_or_default();
    let result = match action {
        "create" => {
            let expires_in_secs = match form.one("expires_in") {
                None | Some("never") => None,
                Some(secs) => match secs.parse() {
                    Ok(secs) => Some(secs),
                    Err(_) => {
                        return keys_page_with(
                            state,
                            user,
                            csrf,
                            Notice::Error("The expiry is not a number of seconds."),
                            StatusCode::BAD_REQUEST,
                        )
                        .await
                    }
                },
            };
            let request = UserKeyRequest {
                label: form.one("label").unwrap_or_default().to_owned(),
                resources: form.all("resource"),
                scopes: form.all("scope"),
                expires_in_secs,
            };
            keys.create(&mut conn, user, request, now).await.map(Some)
        }
        "regenerate" => {
            let grace_secs = match form.one("grace").map(str::parse).transpose() {
                Ok(grace) => grace.unwrap_or(0),
                Err(_) => {
                    return keys_page_with(
                        state,
                        user,
                        csrf,
                        Notice::Error("The grace period is not a number of seconds."),
                        StatusCode::BAD_REQUEST,
                    )
                    .await
                }
            };
            keys.regenerate(&mut conn, user, id, grace_secs, now)
                .await
                .map(Some)
        }
        "revoke" => keys.revoke(&mut conn, user, id).await.map(|()| None),
        "disable" => keys.disable(&mut conn, user, id).await.map(|_| None),
        "enable" => keys.enable(&mut conn, user, id, now).await.map(|_| None),
        _ => {
            return refused(StatusCode::BAD_REQUEST, "Unknown action.");
        }
    };
    match result {
        Ok(Some(issued)) => {
            tracing::info!(%user, id = %issued.id, prefix = %issued.prefix, %action, "account: api key issued");
            keys_page_with(state, user, csrf, Notice::NewKey(&issued), StatusCode::OK).await
        }
        Ok(None) => {
            tracing::info!(%user, %id, %action, "account: api key changed");
            see_other(None)
        }
        Err(error) => {
            let (status, message) = problem(&error);
            keys_page_with(state, user, csrf, Notice::Error(&message), status).await
        }
    }
}

/// What a user is told about a failed operation, and the status.
fn problem(error: &UserKeyError) -> (StatusCode, String) {
    match error {
        UserKeyError::Denied(denied) => (StatusCode::FORBIDDEN, capitalised(&denied.to_string())),
        UserKeyError::NotFound => (StatusCode::NOT_FOUND, "There is no such key.".to_owned()),
        error if error.is_invalid_request() => {
            (StatusCode::BAD_REQUEST, capitalised(&error.to_string()))
        }
        UserKeyError::Key(crate::api_keys::ApiKeyError::Conflict(_)) => (
            StatusCode::CONFLICT,
            "The key was being changed at the same time. Try again.".to_owned(),
        ),
        error => {
            tracing::warn!(%error, "account: api key operation failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is unavailable right now. Try again in a moment.".to_owned(),
            )
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => String::new(),
    }
}

async fn log_in(state: &AppState, source: &Source, current: &Current, form: &Form) -> Response {
    let username = form.one("username").unwrap_or_default();
    let password = form.one("password").unwrap_or_default();
    let mut conn = match state.redis().await {
        Ok(conn) => conn,
        Err(error) => return unavailable(&error),
    };
    let outcome = login::log_in(
        &mut conn,
        state.names(),
        state.argon2_slots(),
        username,
        password,
        &source.0,
    )
    .await;
    let retry = |status, message: &str| {
        pages::page(
            status,
            html::login(&current.session.csrf, Some(message)),
            None,
        )
    };
    let user = match outcome {
        Ok(LoginOutcome::LoggedIn(user)) => user,
        Ok(LoginOutcome::Refused) => {
            tracing::info!(%username, "account: failed login");
            return retry(StatusCode::OK, "Wrong username or password.");
        }
        Ok(LoginOutcome::Throttled(secs)) => {
            return retry(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed attempts. Try again in {secs} seconds."),
            )
        }
        Err(error) => return unavailable(&error),
    };
    // A new session id at login: an id planted before is not the one that is logged in.
    let sessions = session::store(state);
    let started = sessions.start(&mut conn, Some(&user.username)).await;
    let (id, _) = match started {
        Ok(started) => started,
        Err(error) => return unavailable(&error),
    };
    if let Err(error) = sessions.end(&mut conn, &current.id).await {
        return unavailable(&error);
    }
    tracing::info!(user = %user.username, "account: user logged in");
    see_other(Some(&session::set_cookie(&id, &state.config().issuer)))
}

async fn log_out(state: &AppState, current: &Current) -> Response {
    let mut conn = match state.redis().await {
        Ok(conn) => conn,
        Err(error) => return unavailable(&error),
    };
    if let Err(error) = session::store(state).end(&mut conn, &current.id).await {
        return unavailable(&error);
    }
    tracing::info!(user = ?current.user(), "account: user logged out");
    see_other(Some(&session::clear_cookie(&state.config().issuer)))
}

/// The login form in a new anonymous session.
async fn login_page(state: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let mut conn = match state.redis().await {
        Ok(conn) => conn,
        Err(error) => return unavailable(&error),
    };
    match session::store(state).start(&mut conn, None).await {
        Ok((id, session)) => pages::page(
            status,
            html::login(&session.csrf, error),
            Some(&session::set_cookie(&id, &state.config().issuer)),
        ),
        Err(error) => unavailable(&error),
    }
}

async fn keys_page(state: &AppState, user: &str, csrf: &str, notice: Notice<'_>) -> Response {
    keys_page_with(state, user, csrf, notice, StatusCode::OK).await
}

async fn keys_page_with(
    state: &AppState,
    user: &str,
    csrf: &str,
    notice: Notice<'_>,
    status: StatusCode,
) -> Response {
    let service = UserKeys::new(state.names().clone());
    let mut conn = match state.redis().await {
        Ok(conn) => conn,
        Err(error) => return unavailable(&error),
    };
    let now = state.clock().now_secs();
    let loaded = async {
        let (policy, _) = service.policy(&mut conn, user).await?;
        let keys = service.list(&mut conn, user, now).await?;
        Ok::<_, UserKeyError>((policy, keys))
    }
    .await;
    let (policy, keys) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return unavailable(&error),
    };
    let page = KeysPage {
        user,
        csrf,
        policy: &policy,
        keys: &keys,
    };
    pages::page(status, html::keys(&page, &notice), None)
}

/// `303 See Other` back to the page, with the page's headers and, if given, a cookie.
fn see_other(cookie: Option<&str>) -> Response {
    let mut response = pages::page(StatusCode::SEE_OTHER, String::new(), cookie);
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(ACCOUNT_PATH));
    response
}

fn refused(status: StatusCode, message: &str) -> Response {
    pages::page(status, html::refused(message), None)
}

fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::warn!(%error, "account page: service unavailable");
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is unavailable right now. Try again in a moment.",
    )
}

/// A submitted form: every name → value pair in order (checkbox groups repeat a name).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Option<Self> {
        let mut pairs = Vec::new();
        for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let name = form_decode(pair.get(..eq)?)?;
            let value = form_decode(pair.get(eq + 1..)?)?;
            pairs.push((name, value));
        }
        Some(Self(pairs))
    }

    /// The value of a field that must appear once; `None` if it is missing, empty or repeated.
    fn one(&self, name: &str) -> Option<&str> {
        let mut values = self.0.iter().filter(|(n, _)| n == name);
        match (values.next(), values.next()) {
            (Some((_, value)), None) if !value.is_empty() => Some(value),
            _ => None,
        }
    }

    /// Every non-empty value of a repeated field.
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_keep_repeated_fields_and_refuse_repeated_single_ones() {
        let form = Form::parse(b"csrf=a%2Bb&scope=read&scope=write&label=my+key&csrf2=")
            .unwrap_or(Form(vec![]));
        assert_eq!(form.one("csrf"), Some("a+b"));
        assert_eq!(form.one("label"), Some("my key"));
        assert_eq!(form.all("scope"), ["read", "write"]);
        assert_eq!(form.one("scope"), None, "repeated");
        assert_eq!(form.one("csrf2"), None, "empty");
        assert!(Form::parse(b"novalue").is_none());
    }
}
