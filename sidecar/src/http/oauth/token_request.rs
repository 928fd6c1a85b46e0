//! Parsing of token, revocation and introspection requests: the form body (RFC 6749 Appendix B) and the client
//! credentials (§2.3.1, and `client_id` alone for public clients).

use std::collections::HashMap;

use axum::http::{header, HeaderMap};
use base64ct::{Base64, Encoding};

use crate::http::oauth::error::{OAuthError, RequestProblem};

/// The parameters of a token request that this server reads.
#[derive(Default, PartialEq, Eq)]
pub(crate) struct TokenRequest {
    pub(crate) grant_type: String,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) scope: Option<String>,
    /// RFC 8707 resource indicators, in request order (the only parameter that may repeat).
    pub(crate) resources: Vec<String>,
    /// `authorization_code`: the code.
    pub(crate) code: Option<String>,
    /// `authorization_code`: the redirect URI the code was sent to.
    pub(crate) redirect_uri: Option<String>,
    /// `authorization_code`: the PKCE verifier.
    pub(crate) code_verifier: Option<String>,
    /// `refresh_token`: the refresh token.
    pub(crate) refresh_token: Option<String>,
    /// Token exchange (RFC 8693 §2.1): the token whose subject the new token is about.
    pub(crate) subject_token: Option<String>,
    /// Token exchange: the subject token's type.
    pub(crate) subject_token_type: Option<String>,
    /// Token exchange: the type of token wanted.
    pub(crate) requested_token_type: Option<String>,
    /// Token exchange: an actor token (not supported: the authenticated client is the actor).
    pub(crate) actor_token: Option<String>,
    /// Token exchange: `audience` values, in request order (they may repeat, like `resource`).
    pub(crate) audiences: Vec<String>,
}

/// A form (or query string) as name → value, with `resource` and `audience` kept apart because they alone may
/// repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Params {
    single: HashMap<String, String>,
    /// Every `resource` value, in order.
    pub(crate) resources: Vec<String>,
    /// Every `audience` value (RFC 8693), in order.
    pub(crate) audiences: Vec<String>,
}

impl Params {
    /// Removes and returns a parameter.
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.single.remove(name)
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of debug output.
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("scope", &self.scope)
            .field("resources", &self.resources)
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .field("redirect_uri", &self.redirect_uri)
            .field(
                "code_verifier",
                &self.code_verifier.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "subject_token",
                &self.subject_token.as_ref().map(|_| "<redacted>"),
            )
            .field("subject_token_type", &self.subject_token_type)
            .field("requested_token_type", &self.requested_token_type)
            .field(
                "actor_token",
                &self.actor_token.as_ref().map(|_| "<redacted>"),
            )
            .field("audiences", &self.audiences)
            .finish()
    }
}

/// How the client authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// Body parameters (`client_secret_post`).
    Post,
    /// `client_id` alone (`none`): a public client.
    None,
}

/// A client's claimed identity and secret, not yet verified.
#[derive(PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) client_id: String,
    /// The secret; `None` for a public client's `client_id`-only identification.
    pub(crate) secret: Option<String>,
    pub(crate) method: AuthMethod,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of debug output.
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .finish()
    }
}

/// Whether the request declares a form body (parameters such as `charset` are allowed).
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Parses a token request's form body. Empty values count as absent (RFC 6749 §3.1); repeats are refused except
/// `resource`; unknown parameters are ignored.
pub(crate) fn parse_form(body: &[u8]) -> Result<TokenRequest, RequestProblem> {
    let mut params = parse_params(body)?;
    Ok(TokenRequest {
        grant_type: params
            .take("grant_type")
            .ok_or(RequestProblem::MissingGrantType)?,
        client_id: params.take("client_id"),
        client_secret: params.take("client_secret"),
        scope: params.take("scope"),
        code: params.take("code"),
        redirect_uri: params.take("redirect_uri"),
        code_verifier: params.take("code_verifier"),
        refresh_token: params.take("refresh_token"),
        subject_token: params.take("subject_token"),
        subject_token_type: params.take("subject_token_type"),
        requested_token_type: params.take("requested_token_type"),
        actor_token: params.take("actor_token"),
        resources: params.resources,
        audiences: params.audiences,
    })
}

/// Parses `application/x-www-form-urlencoded` parameters (a body or a query string) by the rules of
/// [`parse_form`].
pub(crate) fn parse_params(body: &[u8]) -> Result<Params, RequestProblem> {
    let mut single: HashMap<String, String> = HashMap::new();
    let mut resources = Vec::new();
    let mut audiences = Vec::new();
    for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
        let eq = pair
            .iter()
            .position(|&b| b == b'=')
            .ok_or(RequestProblem::MalformedBody)?;
        let name = form_decode(&pair[..eq]).ok_or(RequestProblem::MalformedBody)?;
        let value = form_decode(&pair[eq + 1..]).ok_or(RequestProblem::MalformedBody)?;
        if name.is_empty() {
            return Err(RequestProblem::MalformedBody);
        }
        if value.is_empty() {
            continue;
        }
        if name == "resource" {
            resources.push(value);
        } else if name == "audience" {
            audiences.push(value);
        } else if single.insert(name, value).is_some() {
            return Err(RequestProblem::RepeatedParameter);
        }
    }
    Ok(Params {
        single,
        resources,
        audiences,
    })
}

/// Extracts the client's credentials from the Authorization header or the body (`client_id` and
/// `client_secret`), refusing a mix of both. `client_id` alone identifies a public client.
pub(crate) fn credentials(
    headers: &HeaderMap,
    client_id: Option<&str>,
    client_secret: Option<&str>,
) -> Result<Credentials, OAuthError> {
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = authorization.next() else {
        return match (client_id, client_secret) {
            (Some(client_id), Some(secret)) => Ok(Credentials {
                client_id: client_id.to_owned(),
                secret: Some(secret.to_owned()),
                method: AuthMethod::Post,
            }),
            (Some(client_id), None) => Ok(Credentials {
                client_id: client_id.to_owned(),
                secret: None,
                method: AuthMethod::None,
            }),
            // A secret without an id cannot be checked.
            (None, _) => Err(OAuthError::InvalidClient),
        };
    };
    if authorization.next().is_some() || client_secret.is_some() {
        return Err(OAuthError::InvalidRequest(
            RequestProblem::MultipleAuthMethods,
        ));
    }
    let (basic_id, secret) = value
        .to_str()
        .ok()
        .and_then(parse_basic)
        .ok_or(OAuthError::InvalidClient)?;
    if client_id.is_some_and(|body_id| body_id != basic_id) {
        return Err(OAuthError::InvalidRequest(RequestProblem::ClientIdMismatch));
    }
    Ok(Credentials {
        client_id: basic_id,
        secret: Some(secret),
        method: AuthMethod::Basic,
    })
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Base64::decode_vec(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let client_id = form_decode(&decoded[..colon])?;
    let secret = form_decode(&decoded[colon + 1..])?;
    (!client_id.is_empty()).then_some((client_id, secret))
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space, `%XX` a byte, and the
/// result must be UTF-8. Malformed escapes are an error rather than passed through.
pub(crate) fn form_decode(input: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = hex_value(*input.get(i + 1)?)?;
                let lo = hex_value(*input.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!(
            "Basic {}",
            Base64::encode_string(format!("{id}:{secret}").as_bytes())
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        headers
    }

    #[test]
    fn parses_parameters_and_repeated_resources() {
        let request = parse_form(
            b"grant_type=client_credentials&scope=read+write&resource=https%3A%2F%2Fa.example&resource=urn:b&x=",
        )
        .unwrap();
        assert_eq!(request.grant_type, "client_credentials");
        assert_eq!(request.scope.as_deref(), Some("read write"));
        assert_eq!(request.resources, ["https://a.example", "urn:b"]);
    }

    #[test]
    fn refuses_malformed_and_repeated() {
        assert_eq!(
            parse_form(b"grant_type=a&grant_type=b"),
            Err(RequestProblem::RepeatedParameter)
        );
        assert_eq!(
            parse_form(b"grant_type=a&foo=1&foo=2"),
            Err(RequestProblem::RepeatedParameter)
        );
        assert_eq!(
            parse_form(b"grant_type=a&scope"),
            Err(RequestProblem::MalformedBody)
        );
        assert_eq!(
            parse_form(b"grant_type=%zz"),
            Err(RequestProblem::MalformedBody)
        );
        assert_eq!(
            parse_form(b"grant_type=%C3"),
            Err(RequestProblem::MalformedBody)
        );
        assert_eq!(
            parse_form(b"=x&grant_type=a"),
            Err(RequestProblem::MalformedBody)
        );
        assert_eq!(
            parse_form(b"scope=read"),
            Err(RequestProblem::MissingGrantType)
        );
        assert_eq!(
            parse_form(b"grant_type="),
            Err(RequestProblem::MissingGrantType)
        );
    }

    fn creds(headers: &HeaderMap, body: &[u8]) -> Result<Credentials, OAuthError> {
        let request = parse_form(body).unwrap();
        credentials(
            headers,
            request.client_id.as_deref(),
            request.client_secret.as_deref(),
        )
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let creds = creds(
            &basic("svc%3Aa", "p%40ss+word"),
            b"grant_type=client_credentials",
        )
        .unwrap();
        assert_eq!(creds.client_id, "svc:a");
        assert_eq!(creds.secret.as_deref(), Some("p@ss word"));
        assert_eq!(creds.method, AuthMethod::Basic);
    }

    #[test]
    fn code_and_refresh_parameters_are_read() {
        let request = parse_form(
            b"grant_type=authorization_code&code=c&redirect_uri=https%3A%2F%2Fa.example%2Fcb&code_verifier=v&refresh_token=r",
        )
        .unwrap();
        assert_eq!(request.code.as_deref(), Some("c"));
        assert_eq!(
            request.redirect_uri.as_deref(),
            Some("https://a.example/cb")
        );
        assert_eq!(request.code_verifier.as_deref(), Some("v"));
        assert_eq!(request.refresh_token.as_deref(), Some("r"));
        let debug = format!("{request:?}");
        assert!(
            !debug.contains("\"c\"") && !debug.contains("\"v\""),
            "{debug}"
        );
        let mut params = parse_params(b"token=t&resource=a&resource=b").unwrap();
        assert_eq!(params.take("token").as_deref(), Some("t"));
        assert_eq!(params.take("token"), None);
        assert_eq!(params.resources, ["a", "b"]);
    }

    #[test]
    fn token_exchange_parameters_are_read_and_audience_may_repeat() {
        let request = parse_form(
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=s.t.x\
&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&audience=urn:a&audience=urn:b\
&resource=https%3A%2F%2Fp.example&actor_token=a&requested_token_type=r",
        )
        .unwrap();
        assert_eq!(request.subject_token.as_deref(), Some("s.t.x"));
        assert_eq!(
            request.subject_token_type.as_deref(),
            Some("urn:ietf:params:oauth:token-type:access_token")
        );
        assert_eq!(request.audiences, ["urn:a", "urn:b"]);
        assert_eq!(request.resources, ["https://p.example"]);
        assert_eq!(request.actor_token.as_deref(), Some("a"));
        assert_eq!(request.requested_token_type.as_deref(), Some("r"));
        let debug = format!("{request:?}");
        assert!(!debug.contains("s.t.x"), "{debug}");
        assert_eq!(
            parse_form(b"grant_type=a&subject_token=1&subject_token=2"),
            Err(RequestProblem::RepeatedParameter)
        );
    }

    #[test]
    fn credential_conflicts() {
        let both: &[u8] = b"grant_type=client_credentials&client_id=a&client_secret=s";
        assert_eq!(
            creds(&basic("a", "s"), both),
            Err(OAuthError::InvalidRequest(
                RequestProblem::MultipleAuthMethods
            ))
        );
        assert_eq!(
            creds(
                &basic("a", "s"),
                b"grant_type=client_credentials&client_id=b"
            ),
            Err(OAuthError::InvalidRequest(RequestProblem::ClientIdMismatch))
        );
        let id_only: &[u8] = b"grant_type=client_credentials&client_id=a";
        let public = creds(&HeaderMap::new(), id_only).unwrap();
        assert_eq!((public.method, public.secret), (AuthMethod::None, None));
        assert_eq!(
            creds(
                &HeaderMap::new(),
                b"grant_type=client_credentials&client_secret=s"
            ),
            Err(OAuthError::InvalidClient),
            "a secret without an id"
        );
        assert_eq!(
            creds(&HeaderMap::new(), both).unwrap().method,
            AuthMethod::Post
        );
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(creds(&bearer, id_only), Err(OAuthError::InvalidClient));
        let mut garbage = HeaderMap::new();
        garbage.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(creds(&garbage, id_only), Err(OAuthError::InvalidClient));
        let mut two = basic("a", "s");
        two.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpz"),
        );
        assert_eq!(
            creds(&two, b"grant_type=client_credentials"),
            Err(OAuthError::InvalidRequest(
                RequestProblem::MultipleAuthMethods
            ))
        );
    }
}
