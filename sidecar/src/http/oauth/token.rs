//! `POST /oauth/token`: the client credentials (RFC 6749 §4.4), authorization code (§4.1.3, with PKCE),
//! refresh token (§6) and token exchange (RFC 8693) grants, with resource indicators (RFC 8707). The password and implicit grants are not
//! supported (RFC 9700 §2.4). The grants themselves are [`crate::oauth::issuing`]'s; this handler parses the
//! request, authenticates the client and renders the result.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::http::oauth::client_auth;
use crate::http::oauth::error::{OAuthError, RequestProblem};
use crate::http::oauth::source::Source;
use crate::http::oauth::token_request::{self, Credentials, TokenRequest};
use crate::http::state::AppState;
use crate::oauth::clients::GrantType;
use crate::oauth::exchange::{self, SubjectKeys};
use crate::oauth::issuing::{CodeRedemption, IssueError, Issued, Requested, TokenIssuer};
use crate::oauth::pkce;

/// RFC 6749 §5.1 success response.
#[derive(Serialize)]
pub(crate) struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// RFC 8693 §2.2.1: set for token exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

impl From<Issued> for TokenResponse {
    fn from(issued: Issued) -> Self {
        Self {
            issued_token_type: None,
            access_token: issued.access.token,
            token_type: "Bearer",
            expires_in: issued.access.expires_in,
            refresh_token: issued.refresh_token,
            scope: (!issued.scopes.is_empty()).then(|| issued.scopes.join(" ")),
        }
    }
}

impl From<IssueError> for OAuthError {
    fn from(error: IssueError) -> Self {
        match error {
            IssueError::InvalidGrant => Self::InvalidGrant,
            IssueError::InvalidScope => Self::InvalidScope,
            IssueError::InvalidTarget => Self::InvalidTarget,
            // RFC 8693 §2.2.2: an unacceptable subject token is invalid_request.
            IssueError::InvalidSubject => Self::InvalidRequest(RequestProblem::SubjectToken),
            IssueError::Unavailable => Self::Unavailable,
            IssueError::ServerError => Self::ServerError,
        }
    }
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut response = Json(self).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
            .headers_mut()
            .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

/// A token request as read from the wire, before the client is authenticated.
#[derive(Debug)]
pub(crate) struct ParsedTokenRequest {
    /// The parameters.
    pub(crate) request: TokenRequest,
    /// The credentials the client presented, not yet checked.
    pub(crate) credentials: Credentials,
    /// The grant asked for.
    pub(crate) grant: GrantType,
}

/// Reads a token request: a form body, one client authentication method, a grant type this server knows.
pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<ParsedTokenRequest, OAuthError> {
    if !token_request::is_form(headers) {
        return Err(OAuthError::InvalidRequest(RequestProblem::ContentType));
    }
    let request = token_request::parse_form(body).map_err(OAuthError::InvalidRequest)?;
    let credentials = token_request::credentials(
        headers,
        request.client_id.as_deref(),
        request.client_secret.as_deref(),
    )?;
    let grant: GrantType = request
        .grant_type
        .parse()
        .map_err(|_| OAuthError::UnsupportedGrantType)?;
    Ok(ParsedTokenRequest {
        request,
        credentials,
        grant,
    })
}

/// Handles a token request.
pub(crate) async fn token(
    State(state): State<AppState>,
    source: Source,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let body = body.map_err(|_| OAuthError::InvalidRequest(RequestProblem::MalformedBody))?;
    let ParsedTokenRequest {
        request,
        credentials,
        grant,
    } = parse(&headers, &body)?;
    let client = client_auth::authenticate(&state, &source, credentials).await?;
    if !client.allows(grant) {
        tracing::info!(client_id = %client.client_id, %grant, "grant type not allowed for the client");
        return Err(OAuthError::UnauthorizedClient);
    }
    let issuer = TokenIssuer::new(
        state.config(),
        state
            .mirror()
            .snapshot()
            .and_then(|snapshot| snapshot.active_key().cloned()),
        state.names(),
        state.clock().now_secs(),
    );
    let issued = match grant {
        GrantType::TokenExchange => {
            let subject_token = exchange_subject(&request)?;
            let snapshot = state.mirror().snapshot().ok_or(OAuthError::Unavailable)?;
            let keys = SubjectKeys {
                issuer: &state.config().issuer,
                own: snapshot.own_keys(),
                external: snapshot.external_issuers(),
            };
            let mut targets = request.resources.clone();
            targets.extend(request.audiences.iter().cloned());
            let mut conn = client_auth::redis(&state).await?;
            let issued = issuer
                .token_exchange(
                    &mut conn,
                    &client,
                    keys,
                    subject_token,
                    &targets,
                    request.scope.as_deref(),
                )
                .await?;
            let mut response = TokenResponse::from(issued);
            response.issued_token_type = Some(exchange::ACCESS_TOKEN_TYPE);
            return Ok(response.into_response());
        }
        GrantType::ClientCredentials => issuer.client_credentials(&client, requested(&request))?,
        GrantType::AuthorizationCode => {
            let code = request
                .code
                .as_deref()
                .ok_or(OAuthError::InvalidRequest(RequestProblem::Missing("code")))?;
            if request
                .code_verifier
                .as_deref()
                .is_some_and(|verifier| !pkce::is_verifier(verifier))
            {
                return Err(OAuthError::InvalidRequest(
                    RequestProblem::MalformedCodeVerifier,
                ));
            }
            let redemption = CodeRedemption {
                code,
                redirect_uri: request.redirect_uri.as_deref(),
                code_verifier: request.code_verifier.as_deref(),
            };
            let mut conn = client_auth::redis(&state).await?;
            issuer
                .authorization_code(&mut conn, &client, requested(&request), redemption)
                .await?
        }
        GrantType::RefreshToken => {
            let presented = request
                .refresh_token
                .as_deref()
                .ok_or(OAuthError::InvalidRequest(RequestProblem::Missing(
                    "refresh_token",
                )))?;
            let mut conn = client_auth::redis(&state).await?;
            issuer
                .refresh_token(&mut conn, &client, requested(&request), presented)
                .await?
        }
    };
    if client.registration.is_some() {
        // A self-registered client that obtained a token is in use: it no longer expires as unused.
        let mut conn = client_auth::redis(&state).await?;
        crate::oauth::registration::mark_used(&mut conn, state.names(), &client.client_id)
            .await
            .map_err(client_auth::unavailable)?;
    }
    Ok(TokenResponse::from(issued).into_response())
}

/// The subject token of a token exchange request, after checking the token types (RFC 8693 §2.1).
fn exchange_subject(request: &TokenRequest) -> Result<&str, OAuthError> {
    let missing = |name| OAuthError::InvalidRequest(RequestProblem::Missing(name));
    let subject_token = request
        .subject_token
        .as_deref()
        .ok_or(missing("subject_token"))?;
    let subject_type = request
        .subject_token_type
        .as_deref()
        .ok_or(missing("subject_token_type"))?;
    let unsupported = OAuthError::InvalidRequest(RequestProblem::UnsupportedTokenType);
    if subject_type != exchange::ACCESS_TOKEN_TYPE {
        return Err(unsupported);
    }
    if request
        .requested_token_type
        .as_deref()
        .is_some_and(|wanted| wanted != exchange::ACCESS_TOKEN_TYPE)
    {
        return Err(unsupported);
    }
    if request.actor_token.is_some() {
        return Err(OAuthError::InvalidRequest(RequestProblem::ActorToken));
    }
    Ok(subject_token)
}

/// The scope and resources of `request`.
fn requested(request: &TokenRequest) -> Requested<'_> {
    Requested {
        scope: request.scope.as_deref(),
        resources: &request.resources,
    }
}
