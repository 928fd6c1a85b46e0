//! The token request an egress filter sends to the sidecar, what the answer means, and what the application is
//! told when no token can be had.

use crate::egress::config::{Destination, EgressConfig, Mode};
use base64ct::{Base64, Encoding};
use serde::Deserialize;

/// `grant_type` of RFC 8693 token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of access tokens (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// How long a refusal for an invalid subject token is remembered, so that waiting requests on every worker get
/// the same answer without asking again.
pub const INVALID_SUBJECT_MEMORY_MS: u64 = 5_000;
/// How long a failure to get a token is remembered: short, the sidecar may be back at once.
pub const UNAVAILABLE_MEMORY_MS: u64 = 1_000;

/// Why a request gets no token, and what it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token to exchange, or the sidecar refused it as the subject: 401.
    InvalidSubject,
    /// The sidecar could not be reached or refused the workload: 503.
    Unavailable,
}

impl Refusal {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidSubject => 401,
            Self::Unavailable => 503,
        }
    }

    /// The response headers.
    pub fn headers(self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        match self {
            Self::InvalidSubject => headers.push((
                "www-authenticate",
                "Bearer error=\"invalid_token\"".to_owned(),
            )),
            Self::Unavailable => headers.push(("retry-after", "1".to_owned())),
        }
        headers
    }

    /// The JSON body.
    pub fn body(self) -> String {
        let (error, description) = match self {
            Self::InvalidSubject => (
                "invalid_token",
                "the bearer token for this call is missing, invalid, expired or revoked",
            ),
            Self::Unavailable => (
                "token_unavailable",
                "no token could be obtained for this destination; try again later",
            ),
        };
        serde_json::json!({ "error": error, "error_description": description }).to_string()
    }

    /// The one-letter code stored in shared data.
    pub(crate) fn code(self) -> char {
        match self {
            Self::InvalidSubject => 'i',
            Self::Unavailable => 'u',
        }
    }

    pub(crate) fn from_code(code: char) -> Option<Self> {
        match code {
            'i' => Some(Self::InvalidSubject),
            'u' => Some(Self::Unavailable),
            _ => None,
        }
    }
}

/// The subject token of an `exchange` destination: the one `Authorization: Bearer` value the application sent.
pub fn bearer_token<'a>(authorization: &[&'a str]) -> Result<&'a str, Refusal> {
    let [value] = authorization else {
        return Err(Refusal::InvalidSubject);
    };
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(Refusal::InvalidSubject)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
    {
        return Err(Refusal::InvalidSubject);
    }
    Ok(token)
}

/// A token request, ready to dispatch. No `Debug`: it holds secrets.
pub struct TokenRequest {
    /// Headers besides `:method`, `:path` and `:authority`.
    pub headers: Vec<(&'static str, String)>,
    /// The form body.
    pub body: String,
}

/// The request for `destination`'s token; `subject` is the token to exchange (`exchange` mode).
pub fn token_request(
    config: &EgressConfig,
    destination: &Destination,
    subject: Option<&str>,
) -> TokenRequest {
    let credentials = format!(
        "{}:{}",
        form_encode(&config.client_id),
        form_encode(&config.client_secret)
    );
    let mut body = match (destination.mode, subject) {
        (Mode::Exchange, Some(subject)) => format!(
            "grant_type={}&subject_token={}&subject_token_type={}&requested_token_type={}",
            form_encode(TOKEN_EXCHANGE),
            form_encode(subject),
            form_encode(ACCESS_TOKEN_TYPE),
            form_encode(ACCESS_TOKEN_TYPE)
        ),
        _ => "grant_type=client_credentials".to_owned(),
    };
    body.push_str("&resource=");
    body.push_str(&form_encode(&destination.audience));
    if !destination.scopes.is_empty() {
        body.push_str("&scope=");
        body.push_str(&form_encode(&destination.scopes.join(" ")));
    }
    TokenRequest {
        headers: vec![
            (
                "authorization",
                format!("Basic {}", Base64::encode_string(credentials.as_bytes())),
            ),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("accept", "application/json".to_owned()),
        ],
        body,
    }
}

/// What a token answer came to. No `Debug`: it holds a token.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// A token, valid until `exp_ms`.
    Token {
        /// The access token.
        token: String,
        /// When it expires, in milliseconds since the epoch.
        exp_ms: u64,
    },
    /// No token.
    Refused(Refusal),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

impl Answer {
    /// Reads the sidecar's answer at `now_ms`: `status` is `None` when the call failed. In `exchange` mode an
    /// `invalid_request` or `invalid_grant` answer means the subject token was refused (RFC 8693 §2.2.2); any other
    /// failure means no token can be had now.
    pub fn read(status: Option<u16>, body: Option<&[u8]>, now_ms: u64) -> Self {
        match (status, body) {
            (Some(200), Some(body)) => match serde_json::from_slice::<TokenResponse>(body) {
                Ok(answer)
                    if answer.token_type.eq_ignore_ascii_case("bearer")
                        && bearer_token(&[&format!("Bearer {}", answer.access_token)]).is_ok() =>
                {
                    Self::Token {
                        exp_ms: now_ms.saturating_add(answer.expires_in.saturating_mul(1_000)),
                        token: answer.access_token,
                    }
                }
                _ => Self::Refused(Refusal::Unavailable),
            },
            (Some(400), Some(body)) => match serde_json::from_slice::<ErrorResponse>(body) {
                Ok(e) if e.error == "invalid_request" || e.error == "invalid_grant" => {
                    Self::Refused(Refusal::InvalidSubject)
                }
                _ => Self::Refused(Refusal::Unavailable),
            },
            _ => Self::Refused(Refusal::Unavailable),
        }
    }
}

/// `application/x-www-form-urlencoded` value encoding: unreserved characters as they are, the rest as `%XX`.
fn form_encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0x0f] {
                out.push(HEX.get(usize::from(nibble)).map_or('0', |h| char::from(*h)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EgressConfig {
        EgressConfig::parse(
            br#"{"sidecar":{"cluster":"k"},"client_id":"orders","client_secret":"p@ss:word",
            "destinations":[{"authority":"payments","audience":"https://payments.example",
            "scopes":["payments:read","x"],"mode":"exchange"},
            {"authority":"ledger","audience":"urn:ledger","mode":"client_credentials"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn exchange_and_client_credentials_requests() {
        let config = config();
        let request = token_request(&config, &config.destinations[0], Some("a.b.c"));
        assert_eq!(
            request.body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a.b.c\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &resource=https%3A%2F%2Fpayments.example&scope=payments%3Aread%20x"
        );
        let basic = &request.headers[0].1;
        let decoded = Base64::decode_vec(basic.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(decoded, b"orders:p%40ss%3Aword");
        let own = token_request(&config, &config.destinations[1], Some("ignored"));
        assert_eq!(
            own.body,
            "grant_type=client_credentials&resource=urn%3Aledger"
        );
    }

    #[test]
    fn bearer_tokens_are_taken_only_from_one_well_formed_header() {
        assert_eq!(bearer_token(&["Bearer a.b.c"]), Ok("a.b.c"));
        assert_eq!(bearer_token(&["bearer  a.b.c "]), Ok("a.b.c"));
        for bad in [
            &[][..],
            &["Basic abc"],
            &["Bearer"],
            &["Bearer a b"],
            &["Bearer a", "Bearer b"],
        ] {
            assert_eq!(bearer_token(bad), Err(Refusal::InvalidSubject), "{bad:?}");
        }
    }

    #[test]
    fn answers_are_read_strictly() {
        let ok = br#"{"access_token":"x.y.z","token_type":"Bearer","expires_in":60}"#;
        assert!(matches!(
            Answer::read(Some(200), Some(ok), 1_000),
            Answer::Token { ref token, exp_ms: 61_000 } if token == "x.y.z"
        ));
        let refused = |status, body: &[u8]| match Answer::read(status, Some(body), 0) {
            Answer::Refused(r) => Some(r),
            Answer::Token { .. } => None,
        };
        assert_eq!(
            refused(Some(400), br#"{"error":"invalid_request"}"#),
            Some(Refusal::InvalidSubject)
        );
        assert_eq!(
            refused(Some(400), br#"{"error":"invalid_grant"}"#),
            Some(Refusal::InvalidSubject)
        );
        for (status, body) in [
            (Some(400), &br#"{"error":"unauthorized_client"}"#[..]),
            (Some(400), br#"{"error":"invalid_target"}"#),
            (Some(401), br#"{"error":"invalid_client"}"#),
            (Some(503), b"{}"),
            (
                Some(200),
                br#"{"access_token":"x","token_type":"DPoP","expires_in":1}"#,
            ),
            (
                Some(200),
                br#"{"access_token":"a\r\nb","token_type":"Bearer","expires_in":1}"#,
            ),
            (Some(200), b"not json"),
            (None, b""),
        ] {
            assert_eq!(
                refused(status, body),
                Some(Refusal::Unavailable),
                "{status:?}"
            );
        }
    }

    #[test]
    fn refusals_have_clear_json_bodies() {
        let body: serde_json::Value =
            serde_json::from_str(&Refusal::InvalidSubject.body()).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(Refusal::Unavailable.status(), 503);
        assert!(Refusal::InvalidSubject
            .headers()
            .iter()
            .any(|(n, v)| *n == "www-authenticate" && v.contains("invalid_token")));
    }
}
