//! `POST /oauth/authorize`: the login and consent forms.
//!
//! Every form carries the session's CSRF token and the id of the parked request, which must belong to the session
//! of the cookie. `action=login` checks the password (throttled per user) and starts a new session, so a session id
//! planted before login is worthless after it; `action=approve` issues a code bound to the parked request and
//! redirects to the client; `action=deny` redirects with `error=access_denied`. Either answers the request once.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::http::oauth::authorize::{
    load_client, page, session_cookie, session_set_cookie, show, state_sessions,
};
use crate::http::oauth::authorize_error::{PageError, RedirectError, Target};
use crate::http::oauth::pages;
use crate::http::oauth::source::Source;
use crate::http::oauth::token_request;
use crate::http::state::AppState;
use crate::oauth::clients::ClientRecord;
use crate::oauth::codes::{CodeGrant, CodeStore, CODE_TTL_SECS};
use crate::oauth::login::{self, LoginOutcome};
use crate::oauth::random_token;
use crate::oauth::sessions::{session_digest, LoginSession, PendingAuthorization};

/// Random bytes of a grant id.
const GRANT_ID_BYTES: usize = 16;

/// Handles a submitted login or consent form.
pub(crate) async fn submit(
    State(state): State<AppState>,
    source: Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, &source, &headers, body).await {
        Ok(response) | Err(response) => response,
    }
}

/// What every form has once its session, CSRF token and parked request check out.
struct Form {
    session_id: String,
    session: LoginSession,
    request_id: String,
    pending: PendingAuthorization,
    client: ClientRecord,
}

async fn handle(
    state: &AppState,
    source: &Source,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    if !token_request::is_form(headers) {
        return Err(page(PageError::Malformed));
    }
    let body = body.map_err(|_| page(PageError::Malformed))?;
    let mut params = token_request::parse_params(&body).map_err(|_| page(PageError::Malformed))?;
    let session_id = session_cookie(headers).ok_or_else(|| page(PageError::SessionExpired))?;
    let sessions = state_sessions(state);
    let mut conn = state
        .redis()
        .await
        .map_err(|_| page(PageError::Unavailable))?;
    let session = sessions
        .get(&mut conn, &session_id)
        .await
        .map_err(|_| page(PageError::Unavailable))?
        .ok_or_else(|| page(PageError::SessionExpired))?;
    let csrf = params.take("csrf").unwrap_or_default();
    if !bool::from(csrf.as_bytes().ct_eq(session.csrf.as_bytes())) {
        tracing::warn!("authorization form with a wrong CSRF token");
        return Err(page(PageError::BadCsrf));
    }
    let request_id = params
        .take("request")
        .ok_or_else(|| page(PageError::RequestExpired))?;
    let pending = sessions
        .pending(&mut conn, &request_id)
        .await
        .map_err(|_| page(PageError::Unavailable))?
        .filter(|pending| pending.session == session_digest(&session_id))
        .ok_or_else(|| page(PageError::RequestExpired))?;
    let client = load_client(state, &pending.client_id).await?;
    let form = Form {
        session_id,
        session,
        request_id,
        pending,
        client,
    };
    match params.take("action").as_deref() {
        Some("login") => {
            let username = params.take("username").unwrap_or_default();
            let password = params.take("password").unwrap_or_default();
            login(state, source, form, &username, &password).await
        }
        Some("approve") => approve(state, form).await,
        Some("deny") => deny(state, form).await,
        _ => Err(page(PageError::Malformed)),
    }
}

async fn login(
    state: &AppState,
    source: &Source,
    form: Form,
    username: &str,
    password: &str,
) -> Result<Response, Response> {
    let mut conn = state
        .redis()
        .await
        .map_err(|_| page(PageError::Unavailable))?;
    let retry = |status: StatusCode, message: &str| {
        pages::page(
            status,
            pages::login(
                &form.client,
                &form.request_id,
                &form.session.csrf,
                Some(message),
            ),
            None,
        )
    };
    let outcome = login::log_in(
        &mut conn,
        state.names(),
        state.argon2_slots(),
        username,
        password,
        &source.0,
    )
    .await
    .map_err(|error| {
        tracing::warn!(%error, "cannot check a password");
        page(PageError::Unavailable)
    })?;
    let user = match outcome {
        LoginOutcome::LoggedIn(user) => user,
        LoginOutcome::Throttled(secs) => {
            return Err(retry(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many failed attempts. Try again in {secs} seconds."),
            ))
        }
        LoginOutcome::Refused => {
            tracing::info!(%username, client_id = %form.client.client_id, "failed login");
            return Err(retry(StatusCode::OK, "Wrong username or password."));
        }
    };
    // A new session id after login: an id the attacker planted before is not the one that is logged in.
    let sessions = state_sessions(state);
    let (session_id, session) = sessions
        .start(&mut conn, Some(&user.username))
        .await
        .map_err(|_| page(PageError::Unavailable))?;
    let rebound = PendingAuthorization {
        session: session_digest(&session_id),
        ..form.pending
    };
    sessions
        .rebind(&mut conn, &form.request_id, &rebound)
        .await
        .map_err(|_| page(PageError::Unavailable))?;
    sessions
        .end(&mut conn, &form.session_id)
        .await
        .map_err(|_| page(PageError::Unavailable))?;
    tracing::info!(user = %user.username, client_id = %form.client.client_id, "user logged in");
    let cookie = session_set_cookie(&session_id, &state.config().issuer);
    Ok(show(
        &form.client,
        &rebound,
        &session,
        &form.request_id,
        Some(&cookie),
    ))
}

async fn approve(state: &AppState, form: Form) -> Result<Response, Response> {
    let Some(subject) = form.session.subject.clone() else {
        // Consent without login (a stale page): ask for the login first.
        return Ok(show(
            &form.client,
            &form.pending,
            &form.session,
            &form.request_id,
            None,
        ));
    };
    let pending = take(state, &form).await?;
    let issuer = state.config().issuer.as_str();
    let target = Target {
        redirect_uri: pending.redirect_uri.clone(),
        state: pending.state.clone(),
    };
    let grant = CodeGrant {
        client_id: pending.client_id,
        redirect_uri: pending.redirect_uri,
        redirect_uri_given: pending.redirect_uri_given,
        code_challenge: pending.code_challenge,
        scopes: pending.scopes,
        resources: pending.resources,
        subject,
        grant_id: random_token(GRANT_ID_BYTES),
        expires_at: state.clock().now_secs().saturating_add(CODE_TTL_SECS),
    };
    let mut conn = state
        .redis()
        .await
        .map_err(|_| target.error(RedirectError::Unavailable, issuer))?;
    let code = CodeStore::new(state.names().clone())
        .issue(&mut conn, &grant)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "cannot store an authorization code");
            target.error(RedirectError::Unavailable, issuer)
        })?;
    tracing::info!(user = %grant.subject, client_id = %grant.client_id, grant_id = %grant.grant_id,
        scope = %grant.scopes.join(" "), aud = ?grant.resources, "authorization approved");
    Ok(target.redirect(&[("code", &code)], issuer))
}

async fn deny(state: &AppState, form: Form) -> Result<Response, Response> {
    let pending = take(state, &form).await?;
    tracing::info!(user = ?form.session.subject, client_id = %pending.client_id, "authorization denied");
    let target = Target {
        redirect_uri: pending.redirect_uri,
        state: pending.state,
    };
    Ok(target.error(RedirectError::AccessDenied, &state.config().issuer))
}

/// Removes the parked request, so it is answered once.
async fn take(state: &AppState, form: &Form) -> Result<PendingAuthorization, Response> {
    let mut conn = state
        .redis()
        .await
        .map_err(|_| page(PageError::Unavailable))?;
    state_sessions(state)
        .take(&mut conn, &form.request_id)
        .await
        .map_err(|_| page(PageError::Unavailable))?
        .ok_or_else(|| page(PageError::RequestExpired))
}
