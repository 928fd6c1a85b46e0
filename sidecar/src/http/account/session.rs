//! The account session: its cookie, its CSRF token, and the checks every state-changing request passes.
//!
//! The session is a [`LoginSession`] in Redis (keyed by the SHA-256 of the cookie value, with the sessions' expiry),
//! started anonymous for the login form and replaced by a new one at login, so an id planted before login is
//! worthless after it. The cookie is `HttpOnly`, `SameSite=Lax`, and `Secure` with the `__Host-` prefix when the
//! issuer is https (the page must then be served at the issuer's origin, which is also what the `Origin` check
//! compares with).

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use crate::http::state::AppState;
use crate::oauth::sessions::{LoginSession, SessionStore, SESSION_TTL_SECS};

/// The cookie's name over plain http.
const COOKIE: &str = "keymesh_account";
/// The cookie's name over https: the `__Host-` prefix makes browsers refuse it unless it is `Secure`, host-only and
/// for `/`, so a sibling subdomain cannot plant or shadow it.
const SECURE_COOKIE: &str = "__Host-keymesh_account";
/// The header carrying the CSRF token of JSON requests authenticated by the cookie.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// A session found from the request's cookie.
pub(crate) struct Current {
    /// The cookie value.
    pub(crate) id: String,
    /// The stored session.
    pub(crate) session: LoginSession,
}

impl Current {
    /// The logged-in user, if any.
    pub(crate) fn user(&self) -> Option<&str> {
        self.session.subject.as_deref()
    }

    /// Whether `given` is this session's CSRF token (compared in constant time).
    pub(crate) fn csrf_matches(&self, given: &str) -> bool {
        !given.is_empty() && bool::from(given.as_bytes().ct_eq(self.session.csrf.as_bytes()))
    }
}

fn is_https(issuer: &str) -> bool {
    issuer.starts_with("https://")
}

fn cookie_name(issuer: &str) -> &'static str {
    if is_https(issuer) {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

/// The session store of this state.
pub(crate) fn store(state: &AppState) -> SessionStore {
    SessionStore::new(state.names().clone())
}

/// The session of the request's cookie, if the cookie names a live session.
pub(crate) async fn current(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Current>, crate::oauth::sessions::SessionError> {
    let Some(id) = cookie_value(headers, cookie_name(&state.config().issuer)) else {
        return Ok(None);
    };
    let mut conn = state.redis().await?;
    Ok(store(state)
        .get(&mut conn, &id)
        .await?
        .map(|session| Current { id, session }))
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_owned())
        })
}

/// The `Set-Cookie` value of a session.
pub(crate) fn set_cookie(id: &str, issuer: &str) -> String {
    let secure = if is_https(issuer) { "; Secure" } else { "" };
    format!(
        "{}={id}; Path=/; Max-Age={SESSION_TTL_SECS}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(issuer)
    )
}

/// The `Set-Cookie` value that removes the session cookie (logout).
pub(crate) fn clear_cookie(issuer: &str) -> String {
    let secure = if is_https(issuer) { "; Secure" } else { "" };
    format!(
        "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}",
        cookie_name(issuer)
    )
}

/// Whether the browser says the request comes from another site: `Sec-Fetch-Site` other than `same-origin` or
/// `none` (typed in, bookmark), or an `Origin` other than the issuer's. `Origin: null` is what browsers send for a
/// same-origin form POST from a page with `Referrer-Policy: no-referrer` (as this one), so it alone proves
/// nothing: `Sec-Fetch-Site` decides then. Requests with neither header (older browsers, command-line clients) are
/// left to the CSRF token.
pub(crate) fn is_cross_site(headers: &HeaderMap, issuer: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return true;
        }
    }
    match headers.get(header::ORIGIN).map(|origin| origin.to_str()) {
        None | Some(Ok("null")) => false,
        Some(origin) => origin.map_or(true, |o| o != origin_of(issuer)),
    }
}

/// `scheme://authority` of an absolute URL.
fn origin_of(url: &str) -> &str {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    url.get(..scheme.len() + 3 + end).unwrap_or(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn cookies_follow_the_issuer_scheme() {
        let plain = set_cookie("abc", "http://127.0.0.1:8080");
        assert_eq!(
            plain,
            "keymesh_account=abc; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"
        );
        let secure = set_cookie("abc", "https://as.example");
        assert!(
            secure.starts_with("__Host-keymesh_account=abc; Path=/;"),
            "{secure}"
        );
        assert!(secure.ends_with("; Secure"), "{secure}");
        assert!(clear_cookie("https://as.example").contains("Max-Age=0"));
        let sent = headers(&[("cookie", "keymesh_account=x; __Host-keymesh_account=y")]);
        assert_eq!(cookie_value(&sent, COOKIE).as_deref(), Some("x"));
        assert_eq!(cookie_value(&sent, SECURE_COOKIE).as_deref(), Some("y"));
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let issuer = "https://as.example/tenant";
        assert!(!is_cross_site(&headers(&[]), issuer));
        for same in [
            &[("sec-fetch-site", "same-origin")][..],
            &[("sec-fetch-site", "none")],
            &[("origin", "https://as.example")],
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
            &[("origin", "null")],
        ] {
            assert!(!is_cross_site(&headers(same), issuer), "{same:?}");
        }
        for cross in [
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-site")],
            &[("origin", "https://evil.example")],
            &[("origin", "null"), ("sec-fetch-site", "cross-site")],
            &[("origin", "http://as.example")],
            &[
                ("origin", "https://as.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        ] {
            assert!(is_cross_site(&headers(cross), issuer), "{cross:?}");
        }
    }
}
