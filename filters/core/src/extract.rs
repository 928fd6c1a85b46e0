//! Finding the bearer token in a request (RFC 6750 §2): the `Authorization` header, and a query parameter only
//! when configured. More than one token in one request is refused (RFC 6750 §2: clients MUST NOT use more than
//! one method).

use crate::error::TokenError;

/// The parts of a request the filter looks at, borrowed from the adapter's header map.
#[derive(Debug, Clone, Default)]
pub struct RequestParts<'a> {
    /// `:path`, including the query string.
    pub path: &'a str,
    /// Every `Authorization` header value, in order.
    pub authorization: Vec<&'a str>,
}

/// Extracts the one bearer token of a request.
pub fn bearer_token<'a>(
    req: &RequestParts<'a>,
    query_param: Option<&str>,
    max_len: usize,
) -> Result<&'a str, TokenError> {
    let mut found: Option<&'a str> = None;
    for value in &req.authorization {
        if let Some(token) = parse_bearer(value)? {
            if found.replace(token).is_some() {
                return Err(TokenError::Ambiguous);
            }
        }
    }
    if let Some(name) = query_param {
        for token in query_values(req.path, name) {
            if found.replace(token).is_some() {
                return Err(TokenError::Ambiguous);
            }
        }
    }
    let token = found.ok_or(TokenError::Missing)?;
    if token.len() > max_len {
        return Err(TokenError::TooLong { max: max_len });
    }
    if !is_b64token(token) {
        return Err(TokenError::MalformedHeader);
    }
    Ok(token)
}

/// `Some(token)` for a `Bearer` credential, `None` for another scheme, an error for a broken `Bearer` one.
fn parse_bearer(value: &str) -> Result<Option<&str>, TokenError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(TokenError::MalformedHeader);
    }
    Ok(Some(token))
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

    fn req<'a>(path: &'a str, auth: &[&'a str]) -> RequestParts<'a> {
        RequestParts {
            path,
            authorization: auth.to_vec(),
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
            Err(TokenError::Missing)
        );
        assert_eq!(
            bearer_token(&req("/", &["Basic dXNlcg=="]), None, 100),
            Err(TokenError::Missing)
        );
        assert_eq!(
            bearer_token(&req("/", &["Bearer"]), None, 100),
            Err(TokenError::MalformedHeader)
        );
        assert_eq!(
            bearer_token(&req("/", &["Bearer a b"]), None, 100),
            Err(TokenError::MalformedHeader)
        );
        assert_eq!(
            bearer_token(&req("/", &["Bearer a%b"]), None, 100),
            Err(TokenError::MalformedHeader)
        );
        assert_eq!(
            bearer_token(&req("/", &["Bearer a", "Bearer b"]), None, 100),
            Err(TokenError::Ambiguous)
        );
        assert_eq!(
            bearer_token(
                &req("/?access_token=x", &["Bearer a"]),
                Some("access_token"),
                100
            ),
            Err(TokenError::Ambiguous)
        );
    }

    #[test]
    fn query_parameter_only_when_configured() {
        let r = req("/x?a=1&access_token=tok.en&b=2", &[]);
        assert_eq!(bearer_token(&r, None, 100), Err(TokenError::Missing));
        assert_eq!(bearer_token(&r, Some("access_token"), 100), Ok("tok.en"));
    }

    #[test]
    fn oversized_token_refused_before_parsing() {
        let long = format!("Bearer {}", "a".repeat(101));
        assert_eq!(
            bearer_token(&req("/", &[&long]), None, 100),
            Err(TokenError::TooLong { max: 100 })
        );
    }
}
