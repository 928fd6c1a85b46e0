//! Finding the credential in a request: a bearer token (RFC 6750 §2) in `Authorization`, or in a query parameter
//! only when configured; or an API key as `Authorization: apikey KEY` or in the configured API-key header. More
//! than one credential in one request is refused (RFC 6750 §2: clients MUST NOT use more than one method).

use crate::apikey;
use crate::error::CredentialError;
use crate::verdict::IDENTITY_HEADERS;

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

/// What the filter reads from a request's headers, in one pass over them and borrowed from them: the parts a
/// decision needs, and how often the client sent each identity header (which the filter must strip).
#[derive(Debug, Clone, Default)]
pub struct RequestHeaders<'a> {
    /// `:path` (`/` if absent), `authorization` and the API-key header.
    pub parts: RequestParts<'a>,
    /// `:method`, if sent.
    pub method: Option<&'a str>,
    /// How many copies of each of [`IDENTITY_HEADERS`] the client sent, in that order.
    pub identity_sent: [u32; IDENTITY_HEADERS.len()],
}

impl<'a> RequestHeaders<'a> {
    /// Reads `headers` (name, value) as bytes, in order, as the host hands them over; `api_key_header` is the
    /// configured API-key header, if any. Names are compared ignoring ASCII case.
    ///
    /// HTTP allows header values that are not UTF-8 (`obs-text`). No credential can be one: an `authorization`
    /// value that is not UTF-8 stands for a malformed one of its scheme (or is ignored, for another scheme) and
    /// an API-key value for a malformed key, which is what decoding them lossily would come to. A `:path` that is
    /// not UTF-8 is cut at its first bad byte; route prefixes are UTF-8, so it matches the routes the lossy form
    /// would.
    pub fn scan(
        headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        api_key_header: Option<&str>,
    ) -> Self {
        let mut scanned = RequestHeaders {
            parts: RequestParts {
                path: "/",
                ..RequestParts::default()
            },
            ..RequestHeaders::default()
        };
        let api_key_header = api_key_header.map(str::as_bytes);
        for (name, value) in headers {
            if name.first() == Some(&b':') {
                if name == b":path" {
                    scanned.parts.path = utf8_prefix(value);
                } else if name == b":method" {
                    scanned.method = Some(utf8_prefix(value));
                }
            } else if name.eq_ignore_ascii_case(b"authorization") {
                scanned.parts.authorization.push(authorization_text(value));
            } else if api_key_header.is_some_and(|h| name.eq_ignore_ascii_case(h)) {
                scanned
                    .parts
                    .api_key
                    .push(std::str::from_utf8(value).unwrap_or(NOT_UTF8));
            } else if let Some(sent) = name
                .get(..IDENTITY_PREFIX.len())
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case(IDENTITY_PREFIX))
                .then(|| {
                    IDENTITY_HEADERS
                        .iter()
                        .zip(scanned.identity_sent.iter_mut())
                        .find_map(|(h, sent)| {
                            name.eq_ignore_ascii_case(h.as_bytes()).then_some(sent)
                        })
                })
                .flatten()
            {
                *sent = sent.saturating_add(1);
            }
        }
        scanned
    }

    /// How many copies of identity header `name` the client sent (0 for a name that is not one).
    pub fn identity_count(&self, name: &str) -> u32 {
        IDENTITY_HEADERS
            .iter()
            .zip(self.identity_sent)
            .find_map(|(h, sent)| (*h == name).then_some(sent))
            .unwrap_or(0)
    }
}

/// What every one of [`IDENTITY_HEADERS`] starts with: most headers are told apart from them by this alone.
const IDENTITY_PREFIX: &[u8] = b"x-keymesh-";

/// What a value that is not UTF-8 becomes: the replacement character, as lossy decoding would make of it.
const NOT_UTF8: &str = "\u{FFFD}";

/// The longest UTF-8 prefix of `value`.
fn utf8_prefix(value: &[u8]) -> &str {
    match std::str::from_utf8(value) {
        Ok(text) => text,
        Err(e) => value
            .get(..e.valid_up_to())
            .and_then(|valid| std::str::from_utf8(valid).ok())
            .unwrap_or(""),
    }
}

/// An `authorization` value as text: itself, or for one that is not UTF-8, a malformed credential of its scheme
/// (`Bearer`, `apikey`) or a value of no scheme keymesh reads.
fn authorization_text(value: &[u8]) -> &str {
    if let Ok(text) = std::str::from_utf8(value) {
        return text;
    }
    let start = value
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(value.len());
    let scheme = value
        .get(start..)
        .and_then(|rest| rest.split(|b| *b == b' ').next())
        .unwrap_or_default();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        "Bearer \u{FFFD}"
    } else if scheme.eq_ignore_ascii_case(b"apikey") {
        "apikey \u{FFFD}"
    } else {
        NOT_UTF8
    }
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
    credential_known(req, query_param, max_len, |_| false)
}

/// [`credential`], skipping the syntax checks of a bearer token for which `known` is true: one that passed them
/// before (a token in the worker's verdict cache, where only tokens that passed them are ever put) passes them
/// again, and they read every byte of it. The outcome is the same as [`credential`]'s.
pub fn credential_known<'a>(
    req: &RequestParts<'a>,
    query_param: Option<&str>,
    max_len: usize,
    known: impl Fn(&str) -> bool,
) -> Result<Credential<'a>, CredentialError> {
    let mut found: Option<Credential<'a>> = None;
    let mut add = |c: Credential<'a>| match found.replace(c) {
        Some(_) => Err(CredentialError::Ambiguous),
        None => Ok(()),
    };
    for value in &req.authorization {
        if let Some(c) = parse_authorization(value, &known)? {
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
        Credential::Bearer(token) if known(token) => Ok(Credential::Bearer(token)),
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
fn parse_authorization<'v>(
    value: &'v str,
    known: &impl Fn(&str) -> bool,
) -> Result<Option<Credential<'v>>, CredentialError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let bearer = scheme.eq_ignore_ascii_case("bearer");
    if !bearer && !scheme.eq_ignore_ascii_case("apikey") {
        return Ok(None);
    }
    let credential = rest.trim_start_matches(' ');
    // A known token has no space: it is a `b64token`.
    let known = bearer && !credential.is_empty() && known(credential);
    if credential.is_empty() || (!known && credential.contains(' ')) {
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
pub(crate) fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| B64TOKEN_CHAR.get(usize::from(b)) == Some(&true))
}

/// Which bytes a `b64token` body may hold. A table: every byte of every token goes through it, and in wasm a
/// lookup costs a few instructions where the chain of range tests cost about forty.
// Built at compile time: `b` runs over 0..256, so the index is in bounds, the increment cannot overflow and the
// cast is exact.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
static B64TOKEN_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        #[allow(clippy::cast_possible_truncation)]
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

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

    fn scan<'a>(
        headers: &[(&'a str, &'a [u8])],
        api_key_header: Option<&str>,
    ) -> RequestHeaders<'a> {
        RequestHeaders::scan(
            headers.iter().map(|(n, v)| (n.as_bytes(), *v)),
            api_key_header,
        )
    }

    #[test]
    fn one_pass_finds_every_credential_value_and_counts_identity_headers() {
        let h = scan(
            &[
                (":method", b"POST"),
                (":path", b"/orders?x=1"),
                ("Authorization", b"Bearer a"),
                ("x-keymesh-subject", b"spoofed"),
                ("authorization", b"Basic b"),
                ("X-Api-Key", b"km_k"),
                ("X-Keymesh-Subject", b"again"),
                ("x-keymesh-tier", b"gold"),
                ("x-keymesh-unknown", b"ignored"),
            ],
            Some("x-api-key"),
        );
        assert_eq!(h.method, Some("POST"));
        assert_eq!(h.parts.path, "/orders?x=1");
        assert_eq!(h.parts.authorization, ["Bearer a", "Basic b"]);
        assert_eq!(h.parts.api_key, ["km_k"]);
        assert_eq!(h.identity_count("x-keymesh-subject"), 2);
        assert_eq!(h.identity_count(crate::tier::TIER_HEADER), 1);
        assert_eq!(h.identity_count("x-keymesh-scope"), 0);
        assert_eq!(h.identity_sent.iter().sum::<u32>(), 3);
        // Without an API-key header configured, `x-api-key` is just another header.
        assert!(scan(&[("x-api-key", b"km_k")], None)
            .parts
            .api_key
            .is_empty());
        let bare = scan(&[], None);
        assert_eq!((bare.parts.path, bare.method), ("/", None));
    }

    #[test]
    fn a_known_token_skips_only_checks_it_passed_before() {
        let known = |t: &str| t == "a.b.c";
        let r = req("/", &["Bearer a.b.c"]);
        assert_eq!(
            credential_known(&r, None, 100, known),
            credential(&r, None, 100)
        );
        // Which credential, and how many, is still decided on every request.
        let two = req("/", &["Bearer a.b.c", "Bearer a.b.c"]);
        assert_eq!(
            credential_known(&two, None, 100, known),
            Err(CredentialError::Ambiguous)
        );
        assert_eq!(
            credential_known(&req("/", &[]), None, 100, known),
            Err(CredentialError::Missing)
        );
        // The checks are what is skipped: a token `known` vouches for is taken as it is.
        assert_eq!(
            credential_known(&req("/", &["Bearer a.b.c"]), None, 3, known),
            Ok(Credential::Bearer("a.b.c"))
        );
        assert_eq!(
            credential(&req("/", &["Bearer a.b.c"]), None, 3),
            Err(CredentialError::TooLong { max: 3 })
        );
    }

    #[test]
    fn the_b64token_table_is_the_rfc_6750_alphabet() {
        for b in 0..=255u8 {
            let rfc = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(B64TOKEN_CHAR[usize::from(b)], rfc, "byte {b}");
        }
        assert!(is_b64token("a.b-c_d~e+f/g=="));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("a=b"));
    }

    #[test]
    fn every_identity_header_has_the_prefix_the_scan_looks_for() {
        for name in IDENTITY_HEADERS {
            assert!(name.as_bytes().starts_with(IDENTITY_PREFIX), "{name}");
        }
    }

    #[test]
    fn values_that_are_not_utf8_decide_as_their_lossy_form_would() {
        let cases: [(&[u8], Result<(), CredentialError>); 6] = [
            (b"Bearer abc\xff", Err(CredentialError::MalformedHeader)),
            (b"bearer \xfe\xff", Err(CredentialError::MalformedHeader)),
            (b"Bearer a\xff b", Err(CredentialError::MalformedHeader)),
            (b"ApiKey km_\xff", Err(CredentialError::ApiKeyMalformed)),
            // Another scheme is ignored, as it would be in UTF-8.
            (b"Basic \xff", Err(CredentialError::Missing)),
            (b"Bear\xffer x", Err(CredentialError::Missing)),
        ];
        for (value, expected) in cases {
            let h = scan(&[("authorization", value)], None);
            let lossy = String::from_utf8_lossy(value);
            let lossy_req = req("/", &[&lossy]);
            assert_eq!(
                credential(&h.parts, None, 100).map(|_| ()),
                expected,
                "{lossy}"
            );
            assert_eq!(
                credential(&lossy_req, None, 100).map(|_| ()),
                expected,
                "lossy {lossy}"
            );
        }
        let key = scan(&[("x-api-key", b"km_\xff")], Some("x-api-key"));
        assert_eq!(
            credential(&key.parts, None, 100),
            Err(CredentialError::ApiKeyMalformed)
        );
        // A path is cut at its first bad byte; the route prefix it matches is the same.
        let path = scan(&[(":path", b"/orders\xff/1")], None);
        assert_eq!(path.parts.path, "/orders");
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
