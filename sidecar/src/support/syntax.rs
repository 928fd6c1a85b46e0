//! Syntax checks for protocol values: resource indicators, scope tokens, client identifiers, and API key ids and
//! labels.
//!
//! Values are compared as exact strings elsewhere, so these checks only reject what the RFCs forbid; they never
//! normalise.

/// Whether `value` is an absolute URI (RFC 3986 §4.3) with no fragment, as RFC 8707 §2 requires of a `resource`.
///
/// Checks the scheme grammar and that every other character is a URI character or a well-formed percent escape;
/// the hierarchical part is not parsed further.
pub fn is_absolute_uri_without_fragment(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut scheme_chars = scheme.chars();
    let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() {
        return false;
    }
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escape_ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
                if !escape_ok {
                    return false;
                }
                i += 3;
            }
            b if is_uri_char_except_fragment(b) => i += 1,
            _ => return false,
        }
    }
    true
}

/// RFC 3986 unreserved, sub-delims and gen-delims, minus `#` (the fragment delimiter).
fn is_uri_char_except_fragment(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// Whether `value` is a scope token (RFC 6749 §3.3: `1*( %x21 / %x23-5B / %x5D-7E )`).
pub fn is_scope_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Longest client identifier accepted.
pub const MAX_CLIENT_ID_LEN: usize = 128;

/// Whether `value` is an acceptable client identifier: 1 to [`MAX_CLIENT_ID_LEN`] visible ASCII characters
/// (RFC 6749 Appendix A.1 allows `VSCHAR`; spaces are excluded here because they make CLI use and logs ambiguous).
pub fn is_client_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CLIENT_ID_LEN
        && value.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Longest API key label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// Whether `value` is an acceptable API key label: 1 to [`MAX_LABEL_CHARS`] printable characters. Control
/// characters and the invisible formatting characters that can disguise text (zero-width and bidirectional
/// controls) are refused, since labels are shown to people in listings and portals.
pub fn is_label(value: &str) -> bool {
    let count = value.chars().count();
    (1..=MAX_LABEL_CHARS).contains(&count)
        && value.chars().all(|c| {
            !c.is_control()
                && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
        })
}

/// Longest API key id accepted.
const MAX_API_KEY_ID_LEN: usize = 64;

/// Whether `value` has the shape of an API key id (`ak_` and base64url characters). Ids are generated, so this
/// only keeps arbitrary input out of Redis key names.
pub fn is_api_key_id(value: &str) -> bool {
    value.len() <= MAX_API_KEY_ID_LEN
        && value
            .strip_prefix(keymesh_core::apikey::ID_PREFIX)
            .is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
}

/// The hash tag Redis Cluster hashes, instead of the whole key, for every key that starts with `prefix`: the text
/// between the prefix's first `{` and the first `}` after it. `None` when that text is empty or the `}` is not in the
/// prefix (the slot would then depend on the rest of each key).
pub fn hash_tag(prefix: &str) -> Option<&str> {
    let (_, after_open) = prefix.split_once('{')?;
    let (tag, _) = after_open.split_once('}')?;
    (!tag.is_empty()).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uris() {
        for ok in [
            "https://api.example.com",
            "https://api.example.com/orders?x=1",
            "http://127.0.0.1:9000/",
            "urn:example:resource",
            "https://example.com/a%20b",
        ] {
            assert!(is_absolute_uri_without_fragment(ok), "{ok}");
        }
        for bad in [
            "",
            "/orders",
            "orders",
            "api.example.com/x",
            "https://api.example.com/#frag",
            "https://api.example.com#",
            "1http://x",
            "https:",
            "https://exa mple.com",
            "https://example.com/%zz",
            "https://example.com/%4",
            "https://example.com/\u{e9}",
            ":nothing",
        ] {
            assert!(!is_absolute_uri_without_fragment(bad), "{bad}");
        }
    }

    #[test]
    fn scope_tokens() {
        for ok in ["read", "orders:write", "a/b", "!", "~"] {
            assert!(is_scope_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a\\b", "caf\u{e9}", "tab\t"] {
            assert!(!is_scope_token(bad), "{bad}");
        }
    }

    #[test]
    fn client_ids() {
        assert!(is_client_id("demo"));
        assert!(is_client_id("svc:orders@prod"));
        assert!(!is_client_id(""));
        assert!(!is_client_id("has space"));
        assert!(!is_client_id(&"x".repeat(MAX_CLIENT_ID_LEN + 1)));
    }

    #[test]
    fn labels() {
        assert!(is_label("CI deploy key"));
        assert!(is_label("Zugang f\u{fc}r M\u{fc}ller \u{2713}"));
        assert!(is_label(&"\u{e9}".repeat(MAX_LABEL_CHARS)));
        assert!(!is_label(""));
        assert!(!is_label(&"x".repeat(MAX_LABEL_CHARS + 1)));
        for bad in [
            "tab\there",
            "new\nline",
            "nul\0",
            "bell\u{7}",
            "rtl\u{202e}txt",
            "zero\u{200b}width",
            "bom\u{feff}",
        ] {
            assert!(!is_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn api_key_ids() {
        assert!(is_api_key_id("ak_3fZ-x_9"));
        for bad in [
            "",
            "ak_",
            "km_abc",
            "ak_a b",
            "ak_a*",
            "ak_\u{e9}",
            "AK_abc",
        ] {
            assert!(!is_api_key_id(bad), "{bad:?}");
        }
        assert!(!is_api_key_id(&format!(
            "ak_{}",
            "a".repeat(MAX_API_KEY_ID_LEN)
        )));
    }

    #[test]
    fn hash_tags_follow_the_cluster_rule() {
        let cases = [
            ("{keymesh}:", Some("keymesh")),
            ("prod:{km}:", Some("km")),
            ("{a}{b}:", Some("a")),
            ("{{x}}:", Some("{x")),
            ("keymesh:", None),
            ("{}:", None),
            ("{}{a}:", None),
            ("{open:", None),
            ("close}:", None),
        ];
        for (prefix, tag) in cases {
            assert_eq!(hash_tag(prefix), tag, "{prefix}");
        }
    }
}
