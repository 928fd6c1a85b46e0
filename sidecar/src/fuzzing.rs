//! Entry points for the fuzz targets in `fuzz/`, compiled only with the cargo feature `fuzzing` (which no build
//! that ships enables). Each takes the bytes a client or an identity provider controls, runs the sidecar's own
//! parser on them, and asserts what must hold of the outcome: what parses re-encodes to itself and stays within
//! what was allowed; what is refused is an RFC 6749 error with its status and challenge. A panic or a failed
//! assertion is a finding. Not an API: hidden from the docs, and it changes with the parsers.
// A finding must stop the fuzzer where it happens, with what was wrong: here a panic is the report.
#![allow(clippy::panic)]

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use keymesh_core::KeySet;
use serde_json::Value;

use crate::config::RegistrationSettings;
use crate::http::oauth::authorize::{self, CheckedRequest, Refusal};
use crate::http::oauth::authorize_error::{form_urlencode, Target};
use crate::http::oauth::error::OAuthError;
use crate::http::oauth::token_request::{self, AuthMethod, Credentials, TokenRequest};
use crate::http::oauth::{register, token, token_lookup};
use crate::issuers::{check_fetch_url, fetch};
use crate::oauth::clients::{ClientRecord, GrantType};
use crate::oauth::registration::{RegisteredVia, Registrar, RegistrationError};
use crate::oauth::{pkce, redirect_uri};
use crate::store::names::KeyNames;
use crate::support::admin_token::AdminToken;

/// The issuer the authorization server runs as, and the external provider the issuer targets fetch from.
const ISSUER: &str = "https://as.fuzz.example";
/// The registered external provider.
const PROVIDER: &str = "https://idp.fuzz.example";
/// Where the provider's discovery document is.
const DISCOVERY_URL: &str = "https://idp.fuzz.example/.well-known/openid-configuration";
/// Where the provider's keys are.
const JWKS_URL: &str = "https://idp.fuzz.example/jwks.json";

/// Token endpoint (`POST /oauth/token`) and, on the same bytes, revocation and introspection: the first line is
/// the `Authorization` header (none when empty), the rest the form body.
pub fn token_request(data: &[u8]) {
    let (authorization, body) = first_line(data);
    let headers = form_headers(authorization);
    match token::parse(&headers, body) {
        Ok(parsed) => {
            assert_form_round_trips(&parsed.request);
            assert_credentials(&headers, &parsed.request, &parsed.credentials);
            assert_eq!(parsed.grant.as_str(), parsed.request.grant_type);
            if let Some(verifier) = parsed.request.code_verifier.as_deref() {
                if pkce::is_verifier(verifier) {
                    assert!(pkce::verify(verifier, &pkce::s256(verifier)));
                }
            }
        }
        Err(OAuthError::UnsupportedGrantType) => {
            let request = token_request::parse_form(body);
            assert!(
                request.is_ok_and(|r| r.grant_type.parse::<GrantType>().is_err()),
                "unsupported_grant_type for a grant this server supports"
            );
        }
        Err(error) => assert_malformed_request_answer(error),
    }
    match token_lookup::parse(&headers, body) {
        Ok((credentials, token)) => {
            assert!(!token.is_empty() && !credentials.client_id.is_empty());
        }
        Err(error) => assert_malformed_request_answer(error),
    }
}

/// Authorization endpoint (`GET /oauth/authorize`): the first line is the `Cookie` header, the rest the query,
/// checked against a public (native) and a confidential (web) client.
pub fn authorization_request(data: &[u8]) {
    let (cookie, query) = first_line(data);
    let mut headers = HeaderMap::new();
    if let Some(cookie) = cookie {
        headers.insert(header::COOKIE, cookie);
    }
    if let Some(session) = authorize::session_cookie(&headers) {
        assert!(!session.is_empty() && !session.contains(';'), "{session:?}");
    }
    let Ok(params) = token_request::parse_params(query) else {
        return;
    };
    assert!(params.resources.iter().all(|r| !r.is_empty()));
    for client in [native_app(), web_app()] {
        match authorize::check_request(&client, params.clone()) {
            Ok(request) => assert_accepted(&client, &request),
            Err(Refusal::Redirect(target, error)) => {
                assert_registered(&client, &target);
                let params = redirected_params(&target, target.error(error, ISSUER));
                let code = params.get("error").map(String::as_str);
                assert_eq!(code, Some(error.code()));
                assert!(
                    matches!(
                        error.code(),
                        "invalid_request"
                            | "unauthorized_client"
                            | "unsupported_response_type"
                            | "invalid_scope"
                            | "invalid_target"
                    ),
                    "{error:?} is not an RFC 6749 §4.1.2.1 (or RFC 8707) error"
                );
                assert!(params
                    .get("error_description")
                    .is_some_and(|d| is_error_text(d)));
            }
            Err(Refusal::Page(error)) => assert!(
                matches!(
                    error,
                    crate::http::oauth::authorize_error::PageError::UnregisteredRedirectUri
                        | crate::http::oauth::authorize_error::PageError::RedirectUriRequired
                ),
                "{error:?}"
            ),
        }
    }
}

/// Dynamic client registration (`POST /oauth/register`): the JSON body, checked under the anonymous and the
/// initial-access-token policy.
pub fn client_registration(data: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let metadata = match register::metadata(&headers, data) {
        Ok(metadata) => metadata,
        Err(error) => return assert_registration_refusal(error),
    };
    let policy = RegistrationSettings {
        initial_access_token: AdminToken::new("fuzz-initial-access-token").ok(),
        anonymous: true,
        resources: vec!["https://orders.example".into()],
        scopes: vec!["orders:read".into(), "orders:write".into()],
        ..RegistrationSettings::default()
    };
    let names = KeyNames::new("fuzz:");
    let registrar = Registrar::new(&policy, &names, format!("{ISSUER}/oauth/register"));
    for via in [RegisteredVia::Anonymous, RegisteredVia::InitialAccessToken] {
        let checked = match registrar.check(metadata.clone(), via) {
            Ok(checked) => checked,
            Err(error) => {
                assert_registration_refusal(error);
                continue;
            }
        };
        let new = &checked.new;
        assert_eq!(new.public, checked.method == "none");
        assert!(matches!(
            checked.method.as_str(),
            "none" | "client_secret_basic" | "client_secret_post"
        ));
        assert!(via != RegisteredVia::Anonymous || new.public);
        assert!(!new.redirect_uris.is_empty());
        assert!(new.grant_types.contains(&GrantType::AuthorizationCode));
        assert!(!new.grant_types.contains(&GrantType::ClientCredentials));
        assert!(new.scopes.iter().all(|s| policy.scopes.contains(s)));
        for uri in &new.redirect_uris {
            assert!(redirect_uri::validate(uri).is_ok(), "{uri:?}");
            // Whatever was registered must work as a redirect, with any `state`.
            let target = Target {
                redirect_uri: uri.clone(),
                state: new.name.clone(),
            };
            let params = redirected_params(&target, target.redirect(&[("code", "c")], ISSUER));
            assert_eq!(params.get("code").map(String::as_str), Some("c"));
        }
    }
}

/// An external provider's discovery document: its `jwks_uri` is taken only from a document of the registered
/// issuer, and is checked like a registered URL.
pub fn issuer_discovery(data: &[u8]) {
    let Ok(document) = fetch::parse_document(DISCOVERY_URL, data) else {
        return;
    };
    match fetch::discovered_jwks_uri(DISCOVERY_URL, PROVIDER, &document) {
        Ok(jwks_uri) => {
            assert_eq!(
                document.get("issuer").and_then(Value::as_str),
                Some(PROVIDER)
            );
            if check_fetch_url(&jwks_uri).is_ok() {
                // As the HTTP client will read it: https (or http), and no credentials in the authority (an `@`
                // further on is part of the path).
                let uri = jwks_uri.parse::<ureq::http::Uri>().ok();
                let authority = uri.as_ref().and_then(|u| u.authority());
                assert!(
                    authority.is_some_and(|a| !a.as_str().contains('@')),
                    "{jwks_uri:?} carries credentials"
                );
                assert!(matches!(
                    uri.as_ref().and_then(|u| u.scheme_str()),
                    Some("https" | "http")
                ));
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// An external provider's JWK Set: the keys kept are exactly those the filters will use, and every other key is
/// accounted for (skipped as not meant for keymesh, or refused with a reason).
pub fn issuer_jwks(data: &[u8]) {
    let Ok(document) = fetch::parse_document(JWKS_URL, data) else {
        return;
    };
    let usable = match fetch::usable_keys(PROVIDER, &document) {
        Ok(usable) => usable,
        Err(reason) => {
            assert!(!reason.is_empty());
            return;
        }
    };
    let published = document
        .get("keys")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    assert_eq!(
        usable.jwks.keys.len() + usable.skipped.len() + usable.refused.len(),
        published,
        "a key was neither kept, skipped nor refused"
    );
    assert!(usable
        .refused
        .iter()
        .all(|r| !r.kid.is_empty() && !r.reason.is_empty()));
    match KeySet::single_issuer(0, PROVIDER, &usable.jwks) {
        Ok(set) => assert_eq!(set.len(), usable.jwks.keys.len(), "a kept key is unusable"),
        Err(error) => panic!("the kept keys are refused by the filters: {error}"),
    }
    // What is kept is delivered as JSON in the bundle: read again, it keeps the same keys.
    let again = serde_json::to_value(&usable.jwks)
        .ok()
        .and_then(|json| fetch::usable_keys(PROVIDER, &json).ok());
    assert_eq!(again.map(|u| u.jwks), Some(usable.jwks));
}

/// Splits at the first newline: a header value (none when the line is empty or not a valid value) and the rest.
fn first_line(data: &[u8]) -> (Option<HeaderValue>, &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => {
            let (line, rest) = data.split_at(at);
            let value = (!line.is_empty())
                .then(|| HeaderValue::from_bytes(line).ok())
                .flatten();
            (value, rest.get(1..).unwrap_or_default())
        }
        None => (None, data),
    }
}

/// The headers of a form post, with `authorization` if given.
fn form_headers(authorization: Option<HeaderValue>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if let Some(value) = authorization {
        headers.insert(header::AUTHORIZATION, value);
    }
    headers
}

/// A parsed token request carries no empty value, and encoded again as a form it parses to itself.
fn assert_form_round_trips(request: &TokenRequest) {
    let optional = [
        ("client_id", &request.client_id),
        ("client_secret", &request.client_secret),
        ("scope", &request.scope),
        ("code", &request.code),
        ("redirect_uri", &request.redirect_uri),
        ("code_verifier", &request.code_verifier),
        ("refresh_token", &request.refresh_token),
        ("subject_token", &request.subject_token),
        ("subject_token_type", &request.subject_token_type),
        ("requested_token_type", &request.requested_token_type),
        ("actor_token", &request.actor_token),
    ];
    assert!(!request.grant_type.is_empty());
    assert!(optional
        .iter()
        .all(|(_, value)| value.as_ref().is_none_or(|v| !v.is_empty())));
    assert!(request.resources.iter().all(|r| !r.is_empty()));
    assert!(request.audiences.iter().all(|a| !a.is_empty()));
    let mut pairs: Vec<String> = vec![format!(
        "grant_type={}",
        form_urlencode(&request.grant_type)
    )];
    for (name, value) in optional {
        if let Some(value) = value {
            pairs.push(format!("{name}={}", form_urlencode(value)));
        }
    }
    for resource in &request.resources {
        pairs.push(format!("resource={}", form_urlencode(resource)));
    }
    for audience in &request.audiences {
        pairs.push(format!("audience={}", form_urlencode(audience)));
    }
    let again = token_request::parse_form(pairs.join("&").as_bytes());
    assert!(again.as_ref() == Ok(request), "{request:?} → {again:?}");
}

/// The credentials say where they came from, and HTTP Basic ones encode and parse back to themselves.
fn assert_credentials(headers: &HeaderMap, request: &TokenRequest, credentials: &Credentials) {
    assert!(!credentials.client_id.is_empty());
    let basic = headers.contains_key(header::AUTHORIZATION);
    match credentials.method {
        AuthMethod::Basic => {
            assert!(basic && request.client_secret.is_none());
            let secret = credentials.secret.as_deref().unwrap_or_default();
            let encoded = <base64ct::Base64 as base64ct::Encoding>::encode_string(
                format!(
                    "{}:{}",
                    form_urlencode(&credentials.client_id),
                    form_urlencode(secret)
                )
                .as_bytes(),
            );
            let again = form_headers(HeaderValue::from_str(&format!("Basic {encoded}")).ok());
            let parsed = token_request::credentials(&again, None, None);
            assert!(parsed.as_ref() == Ok(credentials), "{credentials:?}");
        }
        AuthMethod::Post => {
            assert!(!basic);
            assert_eq!(credentials.secret, request.client_secret);
            assert_eq!(Some(&credentials.client_id), request.client_id.as_ref());
        }
        AuthMethod::None => {
            assert!(!basic && credentials.secret.is_none() && request.client_secret.is_none());
            assert_eq!(Some(&credentials.client_id), request.client_id.as_ref());
        }
    }
}

/// A request refused before any client is looked up gets `invalid_request` (400) or `invalid_client` (401, with a
/// challenge), as RFC 6749 §5.2 JSON with a description of allowed characters, and is never cached.
fn assert_malformed_request_answer(error: OAuthError) {
    let code = error.code();
    let expected = match code {
        "invalid_request" => StatusCode::BAD_REQUEST,
        "invalid_client" => StatusCode::UNAUTHORIZED,
        other => panic!("a malformed request was answered {other}"),
    };
    let response = error.into_response();
    assert_eq!(response.status(), expected);
    assert_eq!(
        response.status() == StatusCode::UNAUTHORIZED,
        response.headers().contains_key(header::WWW_AUTHENTICATE)
    );
    assert_json_error(response, code);
}

/// A refused registration is an RFC 7591 §3.2.2 error (400) naming what is wrong.
fn assert_registration_refusal(error: RegistrationError) {
    let code = match &error {
        RegistrationError::InvalidMetadata(_) => "invalid_client_metadata",
        RegistrationError::InvalidRedirectUri(_) => "invalid_redirect_uri",
        other => panic!("a registration body was refused with {other:?}"),
    };
    let response = register::render(error);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_json_error(response, code);
}

/// The body is `{"error": code, "error_description": …}` and the answer is not cached.
fn assert_json_error(response: Response, code: &str) {
    assert_eq!(
        response
            .headers()
            .get(header::CACHE_CONTROL)
            .map(HeaderValue::as_bytes),
        Some(&b"no-store"[..])
    );
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .now_or_never()
        .and_then(Result::ok)
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let Some(body) = body else {
        panic!("the error body is not JSON");
    };
    assert_eq!(body["error"], code);
    if code != "invalid_client_metadata" && code != "invalid_redirect_uri" {
        // RFC 7591 descriptions may quote the client's own values; RFC 6749 ones are fixed text.
        assert!(body["error_description"]
            .as_str()
            .is_some_and(is_error_text));
    }
}

/// RFC 6749 §5.2 `error_description`: %x20-21 / %x23-5B / %x5D-7E.
fn is_error_text(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// An accepted request stays within the client's registration, and its answer can be delivered.
fn assert_accepted(client: &ClientRecord, request: &CheckedRequest) {
    assert_registered(client, &request.target);
    assert!(request.scopes.iter().all(|s| client.scopes.contains(s)));
    assert!(!request.resources.is_empty());
    assert!(request
        .resources
        .iter()
        .all(|r| client.resources.contains(r)));
    assert!(!client.public || request.code_challenge.is_some());
    if let Some(challenge) = &request.code_challenge {
        assert_eq!(challenge.len(), 43);
    }
    let params = redirected_params(
        &request.target,
        request.target.redirect(&[("code", "c0de")], ISSUER),
    );
    assert_eq!(params.get("code").map(String::as_str), Some("c0de"));
}

/// The redirect URI is one the client registered (for a native app, up to the loopback port).
fn assert_registered(client: &ClientRecord, target: &Target) {
    assert!(
        redirect_uri::find(&client.redirect_uris, &target.redirect_uri, client.public).is_some(),
        "{:?} is not registered",
        target.redirect_uri
    );
}

/// The parameters a redirect adds to the target's URI, after checking it is a 303 there that returns `state` and
/// names the issuer (RFC 9207).
fn redirected_params(
    target: &Target,
    response: Response,
) -> std::collections::HashMap<String, String> {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let added = location
        .strip_prefix(target.redirect_uri.as_str())
        .and_then(|rest| rest.get(1..));
    let Some(added) = added else {
        panic!("{location:?} does not go to {:?}", target.redirect_uri);
    };
    let mut out = std::collections::HashMap::new();
    for pair in added.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = token_request::parse_params(format!("v={value}").as_bytes())
            .ok()
            .and_then(|mut p| p.take("v"))
            .unwrap_or_default();
        out.insert(name.to_owned(), decoded);
    }
    assert_eq!(out.get("state"), target.state.as_ref());
    assert_eq!(out.get("iss").map(String::as_str), Some(ISSUER));
    out
}

/// A native app: loopback and private-use redirect URIs, PKCE required.
fn native_app() -> ClientRecord {
    client(
        "native",
        true,
        &["http://127.0.0.1/cb", "com.example.app:/callback"],
    )
}

/// A web app with one redirect URI that has a query of its own.
fn web_app() -> ClientRecord {
    client("web", false, &["https://app.example/cb?tenant=a"])
}

fn client(id: &str, public: bool, redirect_uris: &[&str]) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        name: None,
        secret_hash: String::new(),
        public,
        resources: vec![
            "https://orders.example".into(),
            "https://payments.example".into(),
        ],
        scopes: vec!["orders:read".into(), "orders:write".into()],
        redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        created_at: 0,
        registration: None,
        exchange_resources: vec![],
        tier: None,
    }
}
