//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the sidecar's freshness, its proxies and its
//! counters; and the middleware that counts issued tokens.

use std::fmt::Write;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::ops::telemetry::BundleAnswer;
use crate::http::state::AppState;

/// Serves the metrics.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let body = render(&state);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn render(state: &AppState) -> String {
    let mut out = String::new();
    let telemetry = state.telemetry();
    let snapshot = state.mirror().snapshot();
    if let Some(snapshot) = &snapshot {
        gauge(
            &mut out,
            "keymesh_bundle_version",
            "Version of the bundle this sidecar serves.",
        );
        sample(&mut out, "keymesh_bundle_version", None, snapshot.version());
    }
    let proxies = telemetry.proxies(state.clock().now_secs());
    gauge(
        &mut out,
        "keymesh_proxy_bundle_version",
        "Bundle version each proxy held at its last request (proxies seen in the last 10 minutes).",
    );
    for (id, seen) in &proxies {
        sample(
            &mut out,
            "keymesh_proxy_bundle_version",
            Some(("proxy", id)),
            seen.version,
        );
    }
    gauge(
        &mut out,
        "keymesh_proxy_last_seen_seconds",
        "When each proxy last asked for the bundle, in seconds since the Unix epoch.",
    );
    for (id, seen) in &proxies {
        sample(
            &mut out,
            "keymesh_proxy_last_seen_seconds",
            Some(("proxy", id)),
            seen.last_seen,
        );
    }
    if let Some(snapshot) = &snapshot {
        gauge(&mut out, "keymesh_api_keys", "API keys in the bundle.");
        sample(
            &mut out,
            "keymesh_api_keys",
            None,
            snapshot.api_key_count() as u64,
        );
        gauge(
            &mut out,
            "keymesh_signing_keys",
            "Signing keys published (next, active and retiring).",
        );
        sample(
            &mut out,
            "keymesh_signing_keys",
            None,
            snapshot.kids().len() as u64,
        );
        gauge(
            &mut out,
            "keymesh_issuer_refused_keys",
            "Keys of each external provider's set that could not be used (its other keys are delivered).",
        );
        for record in snapshot.external_issuers() {
            sample(
                &mut out,
                "keymesh_issuer_refused_keys",
                Some(("issuer", &record.issuer)),
                record.refused_keys.len() as u64,
            );
        }
    }
    counter(
        &mut out,
        "keymesh_tokens_issued_total",
        "Access tokens issued by this sidecar.",
    );
    sample(
        &mut out,
        "keymesh_tokens_issued_total",
        None,
        telemetry.tokens_issued(),
    );
    counter(
        &mut out,
        "keymesh_bundle_requests_total",
        "Bundle requests answered, by kind of answer.",
    );
    for answer in [
        BundleAnswer::Full,
        BundleAnswer::Delta,
        BundleAnswer::NotModified,
        BundleAnswer::Page,
    ] {
        sample(
            &mut out,
            "keymesh_bundle_requests_total",
            Some(("kind", answer.label())),
            telemetry.bundle_answers(answer),
        );
    }
    gauge(
        &mut out,
        "keymesh_redis_connected",
        "1 while the mirror's Redis session is up.",
    );
    sample(
        &mut out,
        "keymesh_redis_connected",
        None,
        u64::from(state.mirror().is_connected()),
    );
    out
}

fn gauge(out: &mut String, name: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n");
}

fn counter(out: &mut String, name: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
}

fn sample(out: &mut String, name: &str, label: Option<(&str, &str)>, value: u64) {
    let _ = match label {
        Some((label, text)) => {
            writeln!(out, "{name}{{{label}=\"{}\"}} {value}", escape_label(text))
        }
        None => writeln!(out, "{name} {value}"),
    };
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counts each successful token response in `keymesh_tokens_issued_total`, whatever the grant.
pub(crate) async fn count_issued_tokens(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::OK {
        state.telemetry().token_issued();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        let mut out = String::new();
        sample(&mut out, "m", Some(("proxy", "x\"y")), 3);
        assert_eq!(out, "m{proxy=\"x\\\"y\"} 3\n");
    }
}
