//! The HTML of the authorization page: login, consent and error pages, rendered on the server with every value
//! escaped, and sent with headers that keep them out of frames, caches and referrers.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::oauth::clients::ClientRecord;
use crate::oauth::sessions::PendingAuthorization;

/// Path the forms post to.
const FORM_ACTION: &str = "/oauth/authorize";

/// Headers of every page: no framing (clickjacking of the consent button), no caching, no referrer (the URL holds
/// the client's `state`), no scripts.
const SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f3f4f6;margin:0;color:#111}\
main{max-width:26rem;margin:4rem auto;background:#fff;border-radius:.75rem;padding:2rem;\
box-shadow:0 1px 3px rgba(0,0,0,.15)}h1{font-size:1.3rem;margin-top:0}\
label{display:block;margin:.8rem 0 .2rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}\
button{font-size:1rem;padding:.55rem 1.2rem;margin:1.2rem .5rem 0 0;border-radius:.4rem;border:1px solid #888;\
cursor:pointer}button.primary{background:#1d4ed8;color:#fff;border-color:#1d4ed8}\
.error{background:#fee2e2;color:#991b1b;padding:.6rem;border-radius:.4rem}\
code{background:#eef;padding:0 .2rem}ul{padding-left:1.2rem}.who{color:#555;font-size:.9rem}";

/// An HTML page with the security headers and, if given, a `Set-Cookie`.
pub(crate) fn page(status: StatusCode, html: String, cookie: Option<&str>) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Some(value) = cookie.and_then(|cookie| HeaderValue::from_str(cookie).ok()) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

/// The login form for `client`'s pending request.
pub(crate) fn login(
    client: &ClientRecord,
    request_id: &str,
    csrf: &str,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|message| format!(r#"<p class="error" role="alert">{}</p>"#, escape(message)))
        .unwrap_or_default();
    document(
        "Sign in",
        &format!(
            r#"<h1>Sign in</h1>
<p>to continue to <strong>{name}</strong></p>
{error}
<form method="post" action="{FORM_ACTION}">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="request" value="{request_id}">
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit" class="primary" name="action" value="login">Sign in</button>
</form>"#,
            name = escape(client.display_name()),
            csrf = escape(csrf),
            request_id = escape(request_id),
        ),
    )
}

/// The consent form: who asks, for which APIs and scopes, on whose behalf.
pub(crate) fn consent(
    client: &ClientRecord,
    pending: &PendingAuthorization,
    user: &str,
    request_id: &str,
    csrf: &str,
) -> String {
    let list = |items: &[String], empty: &str| {
        if items.is_empty() {
            return format!("<p>{empty}</p>");
        }
        let items: String = items
            .iter()
            .map(|item| format!("<li><code>{}</code></li>", escape(item)))
            .collect();
        format!("<ul>{items}</ul>")
    };
    document(
        "Authorize access",
        &format!(
            r#"<h1>Authorize <span id="client-name">{name}</span>?</h1>
<p><strong>{name}</strong> (client <code id="client-id">{client_id}</code>) asks to act on your behalf.</p>
<h2>APIs</h2>
<div id="resources">{resources}</div>
<h2>Permissions</h2>
<div id="scopes">{scopes}</div>
<p class="who">Signed in as <strong id="user">{user}</strong>. You will be sent back to <code>{redirect}</code>.</p>
<form method="post" action="{FORM_ACTION}">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="request" value="{request_id}">
<button type="submit" class="primary" id="approve" name="action" value="approve">Approve</button>
<button type="submit" id="deny" name="action" value="deny">Deny</button>
</form>"#,
            name = escape(client.display_name()),
            client_id = escape(&client.client_id),
            resources = list(&pending.resources, "No API."),
            scopes = list(&pending.scopes, "No specific permission."),
            user = escape(user),
            redirect = escape(origin_of(&pending.redirect_uri)),
            csrf = escape(csrf),
            request_id = escape(request_id),
        ),
    )
}

/// A page explaining why the request cannot go on.
pub(crate) fn error(title: &str, message: &str) -> String {
    document(
        title,
        &format!(
            r#"<h1>{}</h1>
<p class="error" role="alert">{}</p>
<p>Go back to the application and start again.</p>"#,
            escape(title),
            escape(message)
        ),
    )
}

fn document(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} – keymesh</title><style>{STYLE}</style></head>
<body><main>
{body}
</main></body></html>
"#,
        escape(title)
    )
}

/// `scheme://authority` of a URI, or the whole URI if it has no authority: what the user needs to recognise.
fn origin_of(uri: &str) -> &str {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    &uri[..scheme.len() + 3 + end]
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_origins() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            origin_of("https://app.example:8443/cb?x=1"),
            "https://app.example:8443"
        );
        assert_eq!(origin_of("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(origin_of("com.example.app:/cb"), "com.example.app:/cb");
    }
}
