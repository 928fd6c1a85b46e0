//! The HTML of the account page: the login form and the list of the user's keys with their forms. Every value is
//! escaped; there is no script (the CSP of [`pages::page`] forbids them), and every form carries the CSRF token.

use crate::api_keys::{ApiKeyInfo, ApiKeyState, IssuedApiKey, KeyPolicy};
use crate::http::oauth::pages::escape;
use crate::support::clock::format_utc_minutes;

use super::ACCOUNT_PATH;

/// Lifetimes offered on the form, in seconds, with their names.
const LIFETIMES: [(u64, &str); 5] = [
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
    (30 * 86_400, "30 days"),
    (90 * 86_400, "90 days"),
    (365 * 86_400, "1 year"),
];
/// The lifetime selected at first, if the policy allows it.
const PRESELECTED_LIFETIME: u64 = 90 * 86_400;
/// Grace periods offered for the old secret on regeneration, in seconds, with their names.
const GRACE_PERIODS: [(u64, &str); 4] = [
    (0, "no grace: stops now"),
    (3_600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
];

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f3f4f6;margin:0;color:#111;line-height:1.4}\
main{max-width:72rem;margin:2rem auto;background:#fff;border-radius:.75rem;padding:2rem;\
box-shadow:0 1px 3px rgba(0,0,0,.15)}main.narrow{max-width:26rem}h1{font-size:1.4rem;margin-top:0}\
h2{font-size:1.1rem;margin-top:1.8rem}label,legend{font-weight:600}\
.field{margin:.8rem 0}.field label{display:block;margin-bottom:.2rem}\
input[type=text],input[type=password],select{box-sizing:border-box;padding:.45rem;font-size:1rem;\
border:1px solid #555;border-radius:.3rem;background:#fff;color:#111}input[type=text],input[type=password]{width:100%}\
fieldset{border:1px solid #999;border-radius:.4rem;margin:.8rem 0;padding:.4rem .8rem}\
.choice{margin:.3rem 0}.choice label{font-weight:400;margin-left:.3rem}\
button{font-size:1rem;padding:.45rem 1rem;border-radius:.4rem;border:1px solid #555;background:#fff;color:#111;\
cursor:pointer}button.primary{background:#1d4ed8;color:#fff;border-color:#1d4ed8}\
button.danger{background:#b91c1c;color:#fff;border-color:#b91c1c}\
button:focus-visible,input:focus-visible,select:focus-visible{outline:3px solid #1d4ed8;outline-offset:2px}\
.error{background:#fee2e2;color:#7f1d1d;padding:.6rem;border-radius:.4rem}\
.notice{background:#dcfce7;color:#14532d;padding:.6rem;border-radius:.4rem}\
#new-key{border:2px solid #166534;border-radius:.5rem;padding:.8rem 1rem;background:#f0fdf4;color:#14532d}\
#new-key code{font-size:1.05rem;word-break:break-all;background:#fff;color:#111;padding:.2rem .4rem}\
code{background:#eef;color:#111;padding:0 .2rem}table{border-collapse:collapse;width:100%;font-size:.95rem}\
th,td{text-align:left;vertical-align:top;padding:.5rem .4rem;border-bottom:1px solid #ccc}\
td ul{margin:0;padding-left:1rem}.actions form{display:inline-block;margin:0 .3rem .3rem 0}\
.actions form.regenerate{display:block;margin-top:.3rem}.regenerate label{font-weight:400;font-size:.9rem}\
.grace{font-size:.9rem;color:#444}\
.state{font-weight:600}.state-active{color:#166534}.state-disabled{color:#92400e}.state-expired{color:#991b1b}\
header{display:flex;justify-content:space-between;align-items:center;gap:1rem}\
header form{margin:0}.who{color:#444}";

/// What the page shows above the keys.
pub(crate) enum Notice<'a> {
    /// Nothing.
    None,
    /// A key just created or regenerated, shown this once.
    NewKey(&'a IssuedApiKey),
    /// What went wrong with the last form.
    Error(&'a str),
}

/// The login form.
pub(crate) fn login(csrf: &str, error: Option<&str>) -> String {
    let error = error
        .map(|message| format!(r#"<p class="error" role="alert">{}</p>"#, escape(message)))
        .unwrap_or_default();
    document(
        "Sign in",
        "narrow",
        &format!(
            r#"<h1>Sign in</h1>
<p>to manage your API keys</p>
{error}
<form method="post" action="{ACCOUNT_PATH}">
<input type="hidden" name="csrf" value="{csrf}">
<div class="field"><label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required autofocus></div>
<div class="field"><label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required></div>
<button type="submit" class="primary" name="action" value="login">Sign in</button>
</form>"#,
            csrf = escape(csrf),
        ),
    )
}

/// A page that only says what went wrong (a refused form).
pub(crate) fn refused(message: &str) -> String {
    document(
        "Request refused",
        "narrow",
        &format!(
            r#"<h1>Request refused</h1>
<p class="error" role="alert">{}</p>
<p><a href="{ACCOUNT_PATH}">Back to your API keys</a></p>"#,
            escape(message)
        ),
    )
}

/// Everything the keys page shows.
pub(crate) struct KeysPage<'a> {
    /// The logged-in user.
    pub(crate) user: &'a str,
    /// The session's CSRF token.
    pub(crate) csrf: &'a str,
    /// The policy that applies to the user.
    pub(crate) policy: &'a KeyPolicy,
    /// The user's keys, as listed now.
    pub(crate) keys: &'a [ApiKeyInfo],
}

/// The keys page.
pub(crate) fn keys(page: &KeysPage<'_>, notice: &Notice<'_>) -> String {
    let csrf = escape(page.csrf);
    let notice = match notice {
        Notice::None => String::new(),
        Notice::Error(message) => {
            format!(r#"<p class="error" role="alert">{}</p>"#, escape(message))
        }
        Notice::NewKey(issued) => format!(
            r#"<section id="new-key" role="status" aria-labelledby="new-key-heading">
<h2 id="new-key-heading">Your new key “{label}”</h2>
<p>Copy it now and keep it somewhere safe: it is shown only this once, and keymesh keeps only its hash.</p>
<p><code id="new-key-value">{key}</code></p>
</section>"#,
            label = escape(&issued.label),
            key = escape(&issued.key),
        ),
    };
    document(
        "API keys",
        "",
        &format!(
            r#"<header><p class="who">Signed in as <strong id="user">{user}</strong></p>
<form method="post" action="{ACCOUNT_PATH}"><input type="hidden" name="csrf" value="{csrf}">
<button type="submit" name="action" value="logout">Sign out</button></form></header>
<h1>API keys</h1>
{notice}
{create}
<h2 id="keys-heading">Your keys</h2>
{table}"#,
            user = escape(page.user),
            create = create_form(page, &csrf),
            table = key_table(page, &csrf),
        ),
    )
}

fn create_form(page: &KeysPage<'_>, csrf: &str) -> String {
    let policy = page.policy;
    if !policy.allows_keys() {
        return r#"<p id="no-keys-allowed">You may not create API keys yet: your operator has not allowed you any API.</p>"#
            .to_owned();
    }
    let at_limit = u32::try_from(page.keys.len()).map_or(true, |held| held >= policy.max_keys);
    let choices = |name: &str, values: &[String]| -> String {
        values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                format!(
                    r#"<div class="choice"><input type="checkbox" id="{name}-{i}" name="{name}" value="{value}"><label for="{name}-{i}"><code>{value}</code></label></div>"#,
                    value = escape(value)
                )
            })
            .collect()
    };
    let scopes = if policy.scopes.is_empty() {
        String::new()
    } else {
        format!(
            "<fieldset><legend>Scopes</legend>{}</fieldset>",
            choices("scope", &policy.scopes)
        )
    };
    let limit = if at_limit {
        format!(
            r#"<p class="notice">You hold {} of the {} keys allowed: revoke one to create another.</p>"#,
            page.keys.len(),
            policy.max_keys
        )
    } else {
        format!(
            "<p>You may hold up to {} keys{}.</p>",
            policy.max_keys,
            policy
                .max_lifetime_secs
                .map(|max| format!(", each valid for at most {}", duration(max)))
                .unwrap_or_default()
        ) + &policy
            .tier
            .as_ref()
            .map(|tier| {
                format!(
                    r#"<p>Your keys are in the rate tier <strong id="tier">{}</strong>.</p>"#,
                    escape(tier)
                )
            })
            .unwrap_or_default()
    };
    format!(
        r#"<section aria-labelledby="create-heading">
<h2 id="create-heading">Create a key</h2>
{limit}
<form method="post" action="{ACCOUNT_PATH}" id="create-form">
<input type="hidden" name="csrf" value="{csrf}">
<div class="field"><label for="label">Label</label>
<input type="text" id="label" name="label" maxlength="200" required placeholder="where the key is used, such as ci-deploy"></div>
<fieldset><legend>APIs</legend>{resources}</fieldset>
{scopes}
<div class="field"><label for="expires_in">Expires after</label>
<select id="expires_in" name="expires_in">{lifetimes}</select></div>
<button type="submit" class="primary" id="create" name="action" value="create">Create key</button>
</form>
</section>"#,
        resources = choices("resource", &policy.resources),
        lifetimes = lifetime_options(policy.max_lifetime_secs),
    )
}

/// The `<option>`s of the lifetime menu: the usual lifetimes up to the maximum, the maximum itself, and "never"
/// only when the policy has no maximum.
fn lifetime_options(max: Option<u64>) -> String {
    let mut options: Vec<(u64, String)> = LIFETIMES
        .iter()
        .filter(|(secs, _)| max.is_none_or(|max| *secs <= max))
        .map(|(secs, name)| (*secs, (*name).to_owned()))
        .collect();
    if let Some(max) = max {
        if !options.iter().any(|(secs, _)| *secs == max) {
            options.push((max, format!("{} (the maximum)", duration(max))));
        }
    }
    let selected = options
        .iter()
        .map(|(secs, _)| *secs)
        .filter(|secs| *secs <= PRESELECTED_LIFETIME)
        .max()
        .or_else(|| options.first().map(|(secs, _)| *secs));
    let mut html: String = options
        .iter()
        .map(|(secs, name)| {
            let mark = if Some(*secs) == selected {
                " selected"
            } else {
                ""
            };
            format!(r#"<option value="{secs}"{mark}>{}</option>"#, escape(name))
        })
        .collect();
    if max.is_none() {
        html.push_str(r#"<option value="never">Never</option>"#);
    }
    html
}

fn key_table(page: &KeysPage<'_>, csrf: &str) -> String {
    if page.keys.is_empty() {
        return r#"<p id="no-keys">You have no API keys.</p>"#.to_owned();
    }
    let list = |items: &[String]| -> String {
        let items: String = items
            .iter()
            .map(|item| format!("<li><code>{}</code></li>", escape(item)))
            .collect();
        format!("<ul>{items}</ul>")
    };
    let rows: String = page
        .keys
        .iter()
        .map(|key| {
            let id = escape(&key.id);
            let label = escape(&key.label);
            let state = key.state.as_str();
            let hidden = format!(
                r#"<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="id" value="{id}">"#
            );
            let button = |action: &str, text: &str, class: &str| {
                format!(
                    r#"<form method="post" action="{ACCOUNT_PATH}">{hidden}<button type="submit"{class} name="action" value="{action}" aria-label="{text} {label}">{text}</button></form>"#,
                )
            };
            let graces: String = GRACE_PERIODS
                .iter()
                .map(|(secs, name)| format!(r#"<option value="{secs}">{name}</option>"#))
                .collect();
            let regenerate = format!(
                r#"<form method="post" action="{ACCOUNT_PATH}" class="regenerate">{hidden}<label for="grace-{id}">Old key keeps working</label> <select id="grace-{id}" name="grace">{graces}</select> <button type="submit" name="action" value="regenerate" aria-label="Regenerate {label}">Regenerate</button></form>"#
            );
            let toggle = if key.state == ApiKeyState::Disabled {
                button("enable", "Enable", "")
            } else {
                button("disable", "Disable", "")
            };
            let grace = key
                .previous_secret
                .as_ref()
                .map(|previous| {
                    format!(
                        r#"<br><span class="grace">old key <code>{}…</code> works until {}</span>"#,
                        escape(&previous.prefix),
                        format_utc_minutes(previous.until)
                    )
                })
                .unwrap_or_default();
            format!(
                r#"<tr id="key-{id}" data-key-id="{id}">
<td class="key-label">{label}</td>
<td><code class="key-prefix">{prefix}…</code></td>
<td>{resources}</td>
<td>{scopes}</td>
<td>{created}</td>
<td>{expires}</td>
<td class="last-used">{last_used}</td>
<td><span class="state state-{state}">{state}</span>{grace}</td>
<td class="actions">{toggle}{revoke}{regenerate}</td>
</tr>"#,
                prefix = escape(&key.prefix),
                resources = list(&key.resources),
                scopes = list(&key.scopes),
                created = format_utc_minutes(key.created_at),
                expires = key.expires_at.map_or("never".to_owned(), format_utc_minutes),
                last_used = key.last_used_at.map_or("never".to_owned(), format_utc_minutes),
                revoke = button("revoke", "Revoke", r#" class="danger""#),
            )
        })
        .collect();
    format!(
        r#"<table id="keys" aria-labelledby="keys-heading">
<thead><tr><th scope="col">Label</th><th scope="col">Prefix</th><th scope="col">APIs</th><th scope="col">Scopes</th>
<th scope="col">Created</th><th scope="col">Expires</th><th scope="col">Last used</th><th scope="col">State</th>
<th scope="col">Actions</th></tr></thead>
<tbody>{rows}</tbody>
</table>"#
    )
}

/// A lifetime in words: whole days, hours or minutes when it is one, else seconds.
pub(crate) fn duration(secs: u64) -> String {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match secs {
        s if s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s % 3_600 == 0 => plural(s / 3_600, "hour"),
        s if s % 60 == 0 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

fn document(title: &str, class: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} – keymesh</title><style>{STYLE}</style></head>
<body><main class="{class}">
{body}
</main></body></html>
"#,
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_stay_within_the_maximum() {
        let open = lifetime_options(None);
        assert!(open.contains(r#"value="never""#), "{open}");
        assert!(
            open.contains(r#"<option value="7776000" selected>"#),
            "{open}"
        );
        let capped = lifetime_options(Some(10 * 86_400));
        assert!(
            !capped.contains("never") && !capped.contains("2592000"),
            "{capped}"
        );
        assert!(
            capped.contains(r#"<option value="864000" selected>10 days (the maximum)"#),
            "{capped}"
        );
        let short = lifetime_options(Some(3_600));
        assert_eq!(
            short,
            r#"<option value="3600" selected>1 hour (the maximum)</option>"#
        );
        assert_eq!(duration(90), "90 seconds");
        assert_eq!(duration(86_400), "1 day");
    }

    #[test]
    fn values_are_escaped() {
        let policy = KeyPolicy {
            resources: vec!["https://a.test/<x>".into()],
            scopes: vec![],
            max_keys: 1,
            max_lifetime_secs: None,
            tier: None,
        };
        let page = KeysPage {
            user: "<alice>",
            csrf: "t\"",
            policy: &policy,
            keys: &[],
        };
        let html = keys(&page, &Notice::Error("<b>"));
        assert!(!html.contains("<alice>") && !html.contains("<x>") && !html.contains("<b>"));
        assert!(html.contains("&lt;alice&gt;") && html.contains(r#"value="t&quot;""#));
    }
}
