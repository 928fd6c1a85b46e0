//! Parsing of token requests: the form body (RFC 6749 Appendix B) and the client credentials (§2.3.1).

use std::collections::HashMap;

use axum::http::{header, HeaderMap};
use base64ct::{Base64, Encoding};

use super::oauth_error::{RequestProblem, TokenError};

/// The parameters of a token request that this server reads.
#[derive(Default, PartialEq, Eq)]
pub(crate) struct TokenRequest {
    pub(crate) grant_type: String,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) scope: Option<String>,
    /// RFC 8707 resource indicators, in request order (the only parameter that may repeat).
    pub(crate) resources: Vec<String>,
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
}

/// A client's claimed identity and secret, not yet verified.
#[derive(PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) client_id: String,
    pub(crate) secret: String,
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

/// Parses the form body. Empty values count as absent (RFC 6749 §3.1); repeats are refused except `resource`.
pub(crate) fn parse_form(body: &[u8]) -> Result<TokenRequest, RequestProblem> {
    let mut single: HashMap<String, String> = HashMap::new();
    let mut resources = Vec::new();
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
        } else if single.insert(name, value).is_some() {
            return Err(RequestProblem::RepeatedParameter);
        }
    }
    Ok(TokenRequest {
        grant_type: single
            .remove("grant_type")
            .ok_or(RequestProblem::MissingGrantType)?,
        client_id: single.remove("client_id"),
        client_secret: single.remove("client_secret"),
        scope: single.remove("scope"),
        resources,
    })
}

/// Extracts the client's credentials from the Authorization header or the body, refusing a mix of both.
pub(crate) fn credentials(
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Result<Credentials, TokenError> {
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = authorization.next() else {
        return match (&request.client_id, &request.client_secret) {
            (Some(client_id), Some(secret)) => Ok(Credentials {
                client_id: client_id.clone(),
                secret: secret.clone(),
                method: AuthMethod::Post,
            }),
            // A secret without an id cannot be checked; an id alone is an unauthenticated (public) client, which
            // this server does not accept.
            _ => Err(TokenError::InvalidClient),
        };
    };
    if authorization.next().is_some() || request.client_secret.is_some() {
        return Err(TokenError::InvalidRequest(
            RequestProblem::MultipleAuthMethods,
        ));
    }
    let (client_id, secret) = value
        .to_str()
        .ok()
        .and_then(parse_basic)
        .ok_or(TokenError::InvalidClient)?;
    if request
        .client_id
        .as_ref()
        .is_some_and(|body_id| *body_id != client_id)
    {
        return Err(TokenError::InvalidRequest(RequestProblem::ClientIdMismatch));
    }
    Ok(Credentials {
        client_id,
        secret,
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
fn form_decode(input: &[u8]) -> Option<String> {
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

    #[test]
    fn basic_credentials_are_form_decoded() {
        let request = parse_form(b"grant_type=client_credentials").unwrap();
        let creds = credentials(&basic("svc%3Aa", "p%40ss+word"), &request).unwrap();
        assert_eq!(creds.client_id, "svc:a");
        assert_eq!(creds.secret, "p@ss word");
        assert_eq!(creds.method, AuthMethod::Basic);
    }

    #[test]
    fn credential_conflicts() {
        let both =
            parse_form(b"grant_type=client_credentials&client_id=a&client_secret=s").unwrap();
        assert_eq!(
            credentials(&basic("a", "s"), &both),
            Err(TokenError::InvalidRequest(
                RequestProblem::MultipleAuthMethods
            ))
        );
        let other_id = parse_form(b"grant_type=client_credentials&client_id=b").unwrap();
        assert_eq!(
            credentials(&basic("a", "s"), &other_id),
            Err(TokenError::InvalidRequest(RequestProblem::ClientIdMismatch))
        );
        let id_only = parse_form(b"grant_type=client_credentials&client_id=a").unwrap();
        assert_eq!(
            credentials(&HeaderMap::new(), &id_only),
            Err(TokenError::InvalidClient)
        );
        let post =
            parse_form(b"grant_type=client_credentials&client_id=a&client_secret=s").unwrap();
        assert_eq!(
            credentials(&HeaderMap::new(), &post).unwrap().method,
            AuthMethod::Post
        );
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(
            credentials(&bearer, &id_only),
            Err(TokenError::InvalidClient)
        );
        let mut garbage = HeaderMap::new();
        garbage.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(
            credentials(&garbage, &id_only),
            Err(TokenError::InvalidClient)
        );
    }
}
