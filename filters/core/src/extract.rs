//! Finding the credential in a request: a bearer token (RFC 6750 §2) in `Authorization`, or in a query parameter
//! only when configured; or an API key as `Authorization: apikey KEY` or in the configured API-key header. More
//! than one credential in one request is refused (RFC 6750 §2: clients MUST NOT use more than one method).

use crate::apikey;
use crate::error::CredentialError;

/// The parts of a request the filter looks at, borrowed from the adapter's header map.
#[derive(Debug, Clone, Default)]
pub struct RequestParts<'a> {
    /// `:path`, including the query string.
    pub path: &'a str,
    /// Every `Authorization` header value, in order.
    pub authorization: Vec<&'a str>,
    /// Every value of the configured API-key header (e.g. `x-api-key`), in order.
    pub api_key: Vec<&'a str>,
}

/// The one credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A bearer token (not yet verified).
    Bearer(&'a str),
    /// A well-formed API key (not yet looked up).
    ApiKey(&'a str),
}

/// Extracts the one credential of a request.
pub fn credential<'a>(
    req: &RequestParts<'a>,
    query_param: Option<&str>,
    max_len: usize,
) -> Result<Credential<'a>, CredentialError> {
    let mut found: Option<Credential<'a>> = None;
    let mut add = |c: Credential<'a>| match found.replace(c) {
        Some(_) => Err(CredentialError::Ambiguous),
        None => Ok(()),
    };
    for value in &req.authorization {
        if let Some(c) = parse_authorization(value)? {
            add(c)?;
        }
    }
    for value in &req.api_key {
        add(Credential::ApiKey(value.trim()))?;
    }
    if let Some(name) = query_param {
        for token in query_values(req.path, name) {
            add(Credential::Bearer(token))?;
        }
    }
    match found.ok_or(CredentialError::Missing)? {
        Credential::Bearer(token) if token.len() > max_len => {
            Err(CredentialError::TooLong { max: max_len })
        }
        Credential::Bearer(token) if !is_b64token(token) => Err(CredentialError::MalformedHeader),
        Credential::ApiKey(key) if !apikey::is_well_formed(key) => {
            Err(CredentialError::ApiKeyMalformed)
        }
        c => Ok(c),
    }
}

/// A `Bearer` or `apikey` credential, `None` for another scheme, an error for a broken one of ours.
fn parse_authorization(value: &str) -> Result<Option<Credential<'_>>, CredentialError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let bearer = scheme.eq_ignore_ascii_case("bearer");
    if !bearer && !scheme.eq_ignore_ascii_case("apikey") {
        return Ok(None);
    }
    let credential = rest.trim_start_matches(' ');
    if credential.is_empty() || credential.contains(' ') {
        return Err(if bearer {
            CredentialError::MalformedHeader
        } else {
            CredentialError::ApiKeyMalformed
        });
    }
    Ok(Some(if bearer {
        Credential::Bearer(credential)
    } else {
        Credential::ApiKey(credential)
    }))
}

fn query_values<'a>(path: &'a str, name: &str) -> Vec<&'a str> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter_map(|pair| {
            pair.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
        .collect()
}

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::format_key;

    fn req<'a>(path: &'a str, auth: &[&'a str]) -> RequestParts<'a> {
        RequestParts {
            path,
            authorization: auth.to_vec(),
            api_key: vec![],
        }
    }

    fn bearer_token<'a>(
        r: &RequestParts<'a>,
        q: Option<&str>,
        max: usize,
    ) -> Result<&'a str, CredentialError> {
        match credential(r, q, max)? {
            Credential::Bearer(t) => Ok(t),
            Credential::ApiKey(_) => Err(CredentialError::CredentialNotAccepted),
        }
    }

    #[test]
    fn bearer_header_any_case() {
        assert_eq!(
            bearer_token(&req("/", &["Bearer abc.def.ghi"]), None, 100),
            Ok("abc.def.ghi")
        );
        assert_eq!(
            bearer_token(&req("/", &["bearer  abc"]), None, 100),
            Ok("abc")
        );
    }

    #[test]
    fn missing_malformed_and_ambiguous() {
        assert_eq!(
            bearer_token(&req("/", &[]), None, 100),
            Err(CredentialError::Missing)
        );
        assert_eq!(
            bearer_token(&req("/", &["Basic dXNlcg=="]), None, 100),
            Err(CredentialError::Missing)
        );
        assert_eq!(
            bearer_token(&req("/", &["Bearer"]), None, 100),
            Err(CredentialError::MalformedHeader)
        );
        assert_eq!(
            bearer_token(&req("/", &["Bearer a b"]), None, 100),
            Err(CredentialError::MalformedHeader)
        );
        assert_eq!(
            bearer_token(&req("/", &["Bearer a%b"]), None, 100),
            Err(CredentialError::MalformedHeader)
        );
        assert_eq!(
            bearer_token(&req("/", &["Bearer a", "Bearer b"]), None, 100),
            Err(CredentialError::Ambiguous)
        );
        assert_eq!(
            bearer_token(
                &req("/?access_token=x", &["Bearer a"]),
                Some("access_token"),
                100
            ),
            Err(CredentialError::Ambiguous)
        );
    }

    #[test]
    fn query_parameter_only_when_configured() {
        let r = req("/x?a=1&access_token=tok.en&b=2", &[]);
        assert_eq!(bearer_token(&r, None, 100), Err(CredentialError::Missing));
        assert_eq!(bearer_token(&r, Some("access_token"), 100), Ok("tok.en"));
    }

    #[test]
    fn oversized_token_refused_before_parsing() {
        let long = format!("Bearer {}", "a".repeat(101));
        assert_eq!(
            bearer_token(&req("/", &[&long]), None, 100),
            Err(CredentialError::TooLong { max: 100 })
        );
    }

    #[test]
    fn api_keys_from_authorization_or_header() {
        let key = format_key(&[3u8; 32]);
        let auth = format!("ApiKey {key}");
        assert_eq!(
            credential(&req("/", &[&auth]), None, 100),
            Ok(Credential::ApiKey(&key))
        );
        let r = RequestParts {
            path: "/",
            authorization: vec![],
            api_key: vec![&key],
        };
        assert_eq!(credential(&r, None, 100), Ok(Credential::ApiKey(&key)));
        let both = RequestParts {
            path: "/",
            authorization: vec![&auth],
            api_key: vec![&key],
        };
        assert_eq!(
            credential(&both, None, 100),
            Err(CredentialError::Ambiguous)
        );
        let with_bearer = RequestParts {
            path: "/",
            authorization: vec!["Bearer a.b.c"],
            api_key: vec![&key],
        };
        assert_eq!(
            credential(&with_bearer, None, 100),
            Err(CredentialError::Ambiguous)
        );
        assert_eq!(
            credential(&req("/", &["apikey km_short"]), None, 100),
            Err(CredentialError::ApiKeyMalformed)
        );
        assert_eq!(
            credential(&req("/", &["apikey"]), None, 100),
            Err(CredentialError::ApiKeyMalformed)
        );
    }
}
