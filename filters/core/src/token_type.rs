//! The `typ` header of JWT access tokens (RFC 9068 §4): a resource server refuses a JWT whose `typ` is not
//! `at+jwt`, so an ID token or any other JWT signed by the same issuer cannot be replayed as an access token.
//!
//! `typ` is a media type: compared case-insensitively, with `application/` implied when the value has no `/`
//! (RFC 7515 §4.1.9), so `at+jwt`, `AT+JWT` and `application/at+jwt` are one type. Media type parameters are not
//! accepted. Some identity providers mint access tokens with `typ: JWT` or no `typ`; an operator may accept that
//! per provider (the bundle's issuer entry), never globally.

/// The media type of JWT access tokens, normalised.
pub const ACCESS_TOKEN_TYPE: &str = "application/at+jwt";

/// The `typ` values an issuer's access tokens may carry: always `at+jwt`, plus what the operator allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptedTypes {
    /// Further types, normalised.
    extra: Vec<String>,
    /// Whether a token without `typ` is accepted.
    missing: bool,
}

impl AcceptedTypes {
    /// `at+jwt`, plus `extra` (any spelling) and, when `missing`, tokens with no `typ` at all.
    pub fn new(extra: &[String], missing: bool) -> Self {
        Self {
            extra: extra.iter().map(|t| normalize(t)).collect(),
            missing,
        }
    }

    /// Whether a token with this `typ` header (or none) is accepted.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        match typ {
            None => self.missing,
            Some(typ) => {
                let typ = normalize(typ);
                typ == ACCESS_TOKEN_TYPE || self.extra.contains(&typ)
            }
        }
    }
}

/// A `typ` value as a full, lower-case media type (`JWT` → `application/jwt`).
pub fn normalize(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    if lower.contains('/') {
        lower
    } else {
        format!("application/{lower}")
    }
}

/// Whether `typ` can be configured as an accepted type: a media type (`type/subtype`, or a subtype alone) of
/// RFC 6838 name characters, without parameters.
pub fn is_media_type(typ: &str) -> bool {
    let name = |part: &str| {
        !part.is_empty()
            && part.len() <= 127
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match typ.split_once('/') {
        Some((kind, subtype)) => name(kind) && name(subtype),
        None => name(typ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_jwt_in_every_spelling_and_nothing_else_by_default() {
        let strict = AcceptedTypes::default();
        for ok in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(strict.accepts(Some(ok)), "{ok}");
        }
        for refused in [
            "JWT",
            "jwt",
            "application/jwt",
            "",
            "at+jwt; charset=utf-8",
            "text/at+jwt",
            "application/application/at+jwt",
            "at+jwt ",
            "JOSE",
        ] {
            assert!(!strict.accepts(Some(refused)), "{refused:?}");
        }
        assert!(!strict.accepts(None));
    }

    #[test]
    fn an_issuer_may_accept_more() {
        let jwt = AcceptedTypes::new(&["JWT".into()], false);
        assert!(jwt.accepts(Some("jwt")));
        assert!(jwt.accepts(Some("application/JWT")));
        assert!(jwt.accepts(Some("at+jwt")));
        assert!(!jwt.accepts(None));
        assert!(!jwt.accepts(Some("id+jwt")));
        let untyped = AcceptedTypes::new(&[], true);
        assert!(untyped.accepts(None));
        assert!(!untyped.accepts(Some("JWT")));
    }

    #[test]
    fn configured_types_are_media_types() {
        for ok in ["JWT", "application/jwt", "at+jwt", "vnd.example-token"] {
            assert!(is_media_type(ok), "{ok}");
        }
        for bad in ["", "a/b/c", "jwt; q=1", "j t", "/jwt", "jwt/", "é"] {
            assert!(!is_media_type(bad), "{bad:?}");
        }
    }
}
