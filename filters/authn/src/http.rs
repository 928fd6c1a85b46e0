//! The HTTP context: strip identity headers, ask core for a verdict, act on it.
//!
//! This runs on every request, so it reads the header map once and borrows from it, and writes no more headers
//! than the verdict needs: what it costs is booked per case by `keymesh-bench request-cost`.

use crate::host;
use crate::root::ConfiguredFilter;
use keymesh_core::extract::RequestHeaders;
use keymesh_core::policy::unknown_external_kid;
use keymesh_core::verdict::{IDENTITY_HEADERS, IDENTITY_HEADER_KINDS};
use keymesh_core::{authorize, CredentialError, Denial, DenyReason, Identity, Verdict};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub(crate) struct AuthnHttp {
    filter: Option<Rc<ConfiguredFilter>>,
}

impl AuthnHttp {
    pub(crate) fn new(filter: Option<Rc<ConfiguredFilter>>) -> Self {
        Self { filter }
    }

    fn deny(filter: &ConfiguredFilter, denial: &Denial) -> Action {
        let label = match &denial.reason {
            DenyReason::Token(e) => {
                log::debug!("denied {}: {e}", denial.status);
                e.label()
            }
            DenyReason::InsufficientScope { missing } => {
                log::debug!("denied 403: missing scopes {}", missing.join(" "));
                "insufficient_scope"
            }
            DenyReason::WrongApi => "api_key_wrong_api",
            DenyReason::NoKeyMaterial => "no_key_material",
            DenyReason::StaleKeyMaterial => "stale_key_material",
            DenyReason::NoRoute => "no_route",
        };
        filter.metrics.denied(label);
        if let Err(status) = host::send_reply(&denial.reply) {
            log::error!("cannot send local response: {status:?}");
        }
        Action::Pause
    }
}

impl Context for AuthnHttp {}

impl HttpContext for AuthnHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(filter) = self.filter.as_deref() else {
            // Only reachable if Envoy creates streams for a plugin whose configuration was refused.
            let _ = host::send_response(500, &[], "keymesh filter is not configured");
            return Action::Pause;
        };
        let pairs = host::request_header_pairs();
        let headers = RequestHeaders::scan(pairs.iter(), filter.config.api_key_header.as_deref());
        let request = &headers.parts;
        // RFC 9728 metadata is answered here and never reaches the upstream.
        if let Some(reply) = filter
            .config
            .resource_metadata
            .as_ref()
            .and_then(|m| m.serve(headers.method.unwrap_or("GET"), request.path))
        {
            if let Err(status) = host::send_response(reply.status, &reply.headers, &reply.body) {
                log::error!("cannot send local response: {status:?}");
            }
            return Action::Pause;
        }
        let snapshot = filter.material.snapshot();
        if let Some(e) = snapshot.reload_error() {
            // Only validated bundles are stored, so this means shared data was changed by something else.
            log::error!("bundle in shared data does not parse: {e}");
        }
        let now_ms = host::now_ms();
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let material = snapshot.key_material(now_ms, Some(&filter.tokens));
        match authorize(&filter.config, request, &material, now) {
            Verdict::Allow(identity) => {
                if !filter.config.forward_token {
                    // The credential is for this proxy; upstreams get the verified identity instead.
                    if !request.authorization.is_empty() {
                        remove_header("authorization");
                    }
                    if let (Some(name), false) = (
                        filter.config.api_key_header.as_deref(),
                        request.api_key.is_empty(),
                    ) {
                        remove_header(name);
                    }
                }
                let principal = &identity.principal;
                if let (Some(usage), "api_key", Some(id)) =
                    (&filter.usage, principal.credential, &principal.client_id)
                {
                    // Counted in worker memory; reported in a batch on a later tick.
                    usage.borrow_mut().record(id);
                }
                write_identity(Some(&identity), &headers.identity_sent);
                filter.metrics.allowed();
                Action::Continue
            }
            Verdict::Deny(denial) => {
                // Never forwarded, but access logs and later filters still see the request's headers.
                write_identity(None, &headers.identity_sent);
                if matches!(
                    denial.reason,
                    DenyReason::Token(CredentialError::UnknownKid)
                ) {
                    if let Some(kid) = snapshot
                        .keys()
                        .and_then(|keys| unknown_external_kid(&filter.config, request, keys))
                    {
                        filter.refetch_hint.replace(Some(kid));
                    }
                }
                Self::deny(filter, &denial)
            }
        }
    }
}

fn remove_header(name: &str) {
    if let Err(status) = host::remove_request_header(name) {
        log::error!("cannot remove `{name}`: {status:?}");
    }
}

/// Sets the route's identity headers and removes every other identity header the client sent, so an upstream can
/// trust any of them. Each request-header write is a host call and clears Envoy's route cache (ABI 0.2.1), so each
/// header costs one write where one is enough: a header keymesh sets and the client sent once is replaced in place,
/// one the client did not send is added, one the client sent and keymesh does not set is removed. A header the
/// client sent more than once is removed first (a replace changes only the first copy). A denied request gets no
/// identity: only what the client sent is removed. `sent` counts each of [`IDENTITY_HEADERS`] in the request.
fn write_identity(identity: Option<&Identity>, sent: &[u32; IDENTITY_HEADERS.len()]) {
    let headers = IDENTITY_HEADERS.iter().zip(IDENTITY_HEADER_KINDS).zip(sent);
    for ((name, kind), &sent) in headers {
        let value = identity.and_then(|identity| identity.upstream_value(kind));
        if sent > 1 || (sent == 1 && value.is_none()) {
            remove_header(name);
        }
        let Some(value) = value else {
            continue;
        };
        let result = if sent == 1 {
            host::replace_request_header(name, value)
        } else {
            host::add_request_header(name, value)
        };
        if let Err(status) = result {
            log::error!("cannot set `{name}`: {status:?}");
        }
    }
}
