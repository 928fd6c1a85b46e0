//! `Authorization` header values and `application/x-www-form-urlencoded` bodies.

use base64ct::{Base64, Encoding};

/// `Bearer TOKEN` (RFC 6750 §2.1).
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `Basic` client credentials as RFC 6749 §2.3.1 asks: id and secret are form-encoded first, then joined with `:`
/// and base64-encoded (so a `:` in the id survives).
pub fn basic(id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", form_urlencode(id), form_urlencode(secret));
    format!("Basic {}", Base64::encode_string(pair.as_bytes()))
}

/// `application/x-www-form-urlencoded` encoding of one name or value (the WHATWG URL standard's byte set: `*-._`
/// and alphanumerics as they are, space as `+`, every other byte as `%XX`).
pub fn form_urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                char::from(b).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A form body of `pairs`, each name and value encoded with [`form_urlencode`], joined with `&`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", form_urlencode(name), form_urlencode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_everything_but_the_unreserved_set() {
        assert_eq!(form_urlencode("aZ09-._*"), "aZ09-._*");
        assert_eq!(form_urlencode("a b"), "a+b");
        assert_eq!(
            form_urlencode("https://x.test/?a=1&b"),
            "https%3A%2F%2Fx.test%2F%3Fa%3D1%26b"
        );
        assert_eq!(form_urlencode("é"), "%C3%A9");
        assert_eq!(
            form(&[("grant_type", "client_credentials"), ("scope", "a b")]),
            "grant_type=client_credentials&scope=a+b"
        );
    }

    #[test]
    fn basic_form_encodes_before_base64() {
        // "a:b" / "s p" → "a%3Ab:s+p"
        assert_eq!(
            basic("a:b", "s p"),
            format!("Basic {}", Base64::encode_string(b"a%3Ab:s+p"))
        );
        assert_eq!(bearer("t"), "Bearer t");
    }
}
