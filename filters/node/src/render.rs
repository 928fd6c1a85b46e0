//! Verdicts as the JSON the JavaScript side reads: on allow the identity, the headers the filter would set
//! upstream and the credential headers it would remove; on deny the filter's local response (status, headers,
//! body) and a short reason label for metrics.

use keymesh_core::verdict::IDENTITY_HEADERS;
use keymesh_core::{DenyReason, FilterConfig, Verdict};
use serde_json::{json, Map, Value};

/// The verdict as JSON.
pub fn render_verdict(config: &FilterConfig, verdict: &Verdict) -> String {
    let value = match verdict {
        Verdict::Allow(identity) => {
            let headers: Map<String, Value> = identity
                .upstream_headers()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), Value::String(value)))
                .collect();
            // What the filter removes from the request before it goes upstream: identity headers sent by the
            // client always, the credential unless `forward_token`.
            let mut remove: Vec<&str> = IDENTITY_HEADERS.to_vec();
            if !config.forward_token {
                remove.push("authorization");
                remove.extend(config.api_key_header.as_deref());
            }
            json!({
                "allow": true,
                "identity": {
                    "subject": identity.principal.subject,
                    "clientId": identity.principal.client_id,
                    "scopes": identity.principal.scopes,
                    "issuer": identity.principal.issuer,
                    "credential": identity.principal.credential,
                },
                "headers": headers,
                "remove": remove,
            })
        }
        Verdict::Deny(denial) => {
            let headers: Map<String, Value> = denial
                .reply
                .headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), Value::String(value.clone())))
                .collect();
            json!({
                "allow": false,
                "status": denial.status,
                "headers": headers,
                "body": denial.reply.body,
                "reason": reason_label(&denial.reason),
            })
        }
    };
    value.to_string()
}

/// The filter's metric label for a refusal.
pub fn reason_label(reason: &DenyReason) -> &'static str {
    match reason {
        DenyReason::Token(e) => e.label(),
        DenyReason::InsufficientScope { .. } => "insufficient_scope",
        DenyReason::WrongApi => "api_key_wrong_api",
        DenyReason::NoKeyMaterial => "no_key_material",
        DenyReason::StaleKeyMaterial => "stale_key_material",
        DenyReason::NoRoute => "no_route",
    }
}

/// What is held, as JSON.
pub fn render_status(version: Option<u64>, age_ms: u64) -> String {
    json!({ "version": version, "ageMs": age_ms }).to_string()
}
