//! Redirect URIs: which ones a client may register, and how a requested one is matched against them.
//!
//! Matching is exact string comparison (RFC 9700 §2.1): no prefix, wildcard or normalisation. The only exception
//! is RFC 8252 §7.3 for native apps (public clients): a registered `http://127.0.0.1/…` or `http://[::1]/…`
//! matches the same URI with any port, since the app picks a free port at run time.

use crate::support::syntax;

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    /// Not an absolute URI, or it has a fragment (RFC 6749 §3.1.2).
    #[error("must be an absolute URI without fragment")]
    NotAbsolute,
    /// `http` to a host other than a loopback address: the code would travel in clear.
    #[error("http is only allowed to 127.0.0.1, [::1] or localhost; use https")]
    InsecureHttp,
    /// A scheme that runs or embeds content (`javascript:`, `data:`, …) or a custom scheme without a dot.
    #[error("custom schemes must be reverse domain names (com.example.app:/callback)")]
    ForbiddenScheme,
}

/// Checks a redirect URI a client wants to register.
pub fn validate(uri: &str) -> Result<(), RedirectUriError> {
    if !syntax::is_absolute_uri_without_fragment(uri) {
        return Err(RedirectUriError::NotAbsolute);
    }
    let (scheme, rest) = uri.split_once(':').ok_or(RedirectUriError::NotAbsolute)?;
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {
            if host(rest).is_none_or(str::is_empty) {
                return Err(RedirectUriError::NotAbsolute);
            }
            Ok(())
        }
        "http" => match host(rest) {
            Some("127.0.0.1" | "[::1]" | "localhost") => Ok(()),
            Some("") | None => Err(RedirectUriError::NotAbsolute),
            Some(_) => Err(RedirectUriError::InsecureHttp),
        },
        // RFC 8252 §7.1: private-use schemes are reverse domain names, which always contain a dot.
        other if other.contains('.') => Ok(()),
        _ => Err(RedirectUriError::ForbiddenScheme),
    }
}

/// The host of the part after `scheme:`, if it starts with `//`.
fn host(rest: &str) -> Option<&str> {
    let authority = rest.strip_prefix("//")?;
    let end = authority.find(['/', '?']).unwrap_or(authority.len());
    let authority = &authority[..end];
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if authority.starts_with('[') {
        let close = authority.find(']')?;
        return Some(&authority[..=close]);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

/// The registered URI `requested` matches, if any: exact string equality, or for native apps
/// (`loopback_any_port`) equality once the port of a loopback IP literal is ignored.
pub fn find<'a>(
    registered: &'a [String],
    requested: &str,
    loopback_any_port: bool,
) -> Option<&'a str> {
    if let Some(exact) = registered.iter().find(|uri| *uri == requested) {
        return Some(exact);
    }
    if !loopback_any_port {
        return None;
    }
    let requested = without_loopback_port(requested)?;
    registered
        .iter()
        .find(|uri| without_loopback_port(uri).is_some_and(|uri| uri == requested))
        .map(String::as_str)
}

/// `http://127.0.0.1:PORT/rest` or `http://[::1]:PORT/rest` without `:PORT`; `None` for any other URI.
fn without_loopback_port(uri: &str) -> Option<String> {
    let (origin, rest) = ["http://127.0.0.1", "http://[::1]"]
        .into_iter()
        .find_map(|origin| uri.strip_prefix(origin).map(|rest| (origin, rest)))?;
    let rest = match rest.strip_prefix(':') {
        Some(port_and_rest) => {
            let digits = port_and_rest.bytes().take_while(u8::is_ascii_digit).count();
            if !(1..=5).contains(&digits) {
                return None;
            }
            &port_and_rest[digits..]
        }
        None => rest,
    };
    (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
        .then(|| format!("{origin}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_uris() {
        for ok in [
            "https://app.example/cb",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8000/cb",
            "http://[::1]:9/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for (bad, error) in [
            ("https://app.example/cb#frag", RedirectUriError::NotAbsolute),
            ("/cb", RedirectUriError::NotAbsolute),
            ("https:///cb", RedirectUriError::NotAbsolute),
            ("http://app.example/cb", RedirectUriError::InsecureHttp),
            (
                "http://127.0.0.1.evil.example/cb",
                RedirectUriError::InsecureHttp,
            ),
            (
                "http://localhost@evil.example/cb",
                RedirectUriError::InsecureHttp,
            ),
            ("javascript:alert(1)", RedirectUriError::ForbiddenScheme),
            ("data:text/html,x", RedirectUriError::ForbiddenScheme),
            ("myapp:/cb", RedirectUriError::ForbiddenScheme),
        ] {
            assert_eq!(validate(bad), Err(error), "{bad}");
        }
    }

    #[test]
    fn matching_is_exact() {
        let registered = vec!["https://app.example/cb".to_owned()];
        assert!(find(&registered, "https://app.example/cb", true).is_some());
        for other in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://APP.example/cb",
            "https://app.example/c",
            "https://app.example/cb/../cb",
            "https://app.example:443/cb",
            "http://app.example/cb",
        ] {
            assert_eq!(find(&registered, other, true), None, "{other}");
        }
    }

    #[test]
    fn loopback_port_is_ignored_only_for_native_apps() {
        let registered = vec![
            "http://127.0.0.1/callback".to_owned(),
            "http://[::1]:1234/cb".to_owned(),
        ];
        assert_eq!(
            find(&registered, "http://127.0.0.1:51234/callback", true),
            Some("http://127.0.0.1/callback")
        );
        assert!(find(&registered, "http://[::1]:80/cb", true).is_some());
        assert_eq!(
            find(&registered, "http://127.0.0.1:51234/callback", false),
            None
        );
        for other in [
            "http://127.0.0.1:51234/callback2",
            "http://127.0.0.1:51234/other",
            "http://127.0.0.1:x/callback",
            "http://127.0.0.1:123456/callback",
            "http://localhost:51234/callback",
            "https://127.0.0.1:51234/callback",
            "http://127.0.0.1.evil:1/callback",
        ] {
            assert_eq!(find(&registered, other, true), None, "{other}");
        }
        // Non-loopback URIs never get the exception.
        let web = vec!["https://app.example/cb".to_owned()];
        assert_eq!(find(&web, "https://app.example:1/cb", true), None);
    }
}
