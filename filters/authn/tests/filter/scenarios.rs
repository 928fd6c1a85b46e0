//! The shared scenario table on the compiled filter, plus header handling that only the adapter does.

use crate::{bearer, ready_vm, request, tick_and_answer, vm};
use keymesh_testkit::{claims, fixture, scenarios, Alg};
use keymesh_wasm_host::{Action, HostError, HttpResponse, SharedStore};

const IDENTITY: [&str; 5] = [
    "x-keymesh-subject",
    "x-keymesh-client-id",
    "x-keymesh-scope",
    "x-keymesh-issuer",
    "x-keymesh-credential",
];

#[test]
fn scenario_table_on_the_compiled_filter() -> Result<(), HostError> {
    let mut vm = ready_vm()?;
    let table = scenarios();
    assert!(table.len() >= 40, "table has {} scenarios", table.len());
    let mut failures = Vec::new();
    for s in &table {
        let mut headers: Vec<(&str, &str)> = s
            .authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        if let Some(key) = &s.x_api_key {
            headers.push(("x-api-key", key));
        }
        headers.push(("x-keymesh-subject", "spoofed"));
        let out = request(&mut vm, s.path, &headers)?;
        let problem = if s.status == 200 {
            if out.action != Action::Continue || out.local.is_some() {
                Some(format!(
                    "denied {} ({:?}): {}",
                    out.status(),
                    out.challenge(),
                    out.body()
                ))
            } else if out.upstream_header("x-keymesh-subject") != s.subject {
                Some(format!(
                    "upstream subject {:?}",
                    out.upstream_header("x-keymesh-subject")
                ))
            } else if out.upstream_header("authorization").is_some()
                || out.upstream_header("x-api-key").is_some()
            {
                Some("credential forwarded upstream".into())
            } else {
                None
            }
        } else if out.action != Action::Pause
            || out.status() != s.status
            || out.challenge_error() != s.error
        {
            Some(format!(
                "got {:?} {} {:?}, expected {} {:?}",
                out.action,
                out.status(),
                out.challenge_error(),
                s.status,
                s.error
            ))
        } else if out.status() == 401
            && !out
                .challenge()
                .is_some_and(|c| c.starts_with(&format!("{} realm=\"keymesh\"", s.scheme)))
        {
            Some(format!(
                "401 without a Bearer challenge: {:?}",
                out.challenge()
            ))
        } else if out
            .local
            .as_ref()
            .and_then(|l| l.headers.get("content-type"))
            != Some("application/json")
        {
            Some("error body is not JSON".into())
        } else {
            None
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}", s.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    crate::flush_metrics(&mut vm)?;
    assert_eq!(
        vm.counter("keymesh.authn.allowed"),
        Some(table.iter().filter(|s| s.status == 200).count() as u64)
    );
    crate::finish(vm)
}

#[test]
fn every_spoofed_identity_header_is_replaced_or_removed() -> Result<(), HostError> {
    let mut vm = ready_vm()?;
    let token = bearer(&fixture().token(
        Alg::EdDsa,
        &claims(&["https://orders.local"], "orders:read"),
    ));
    let mut headers = vec![("authorization", token.as_str())];
    headers.extend(IDENTITY.iter().map(|h| (*h, "spoofed")));
    let out = request(&mut vm, "/orders/1", &headers)?;
    assert_eq!(out.status(), 200, "{}", out.body());
    for name in IDENTITY {
        assert_ne!(
            out.upstream_header(name),
            Some("spoofed"),
            "{name} passed through"
        );
        assert_eq!(
            out.upstream.iter().filter(|(n, _)| n == name).count(),
            1,
            "{name}: {:?}",
            out.upstream
        );
    }
    assert_eq!(out.upstream_header("x-keymesh-client-id"), Some("client-a"));
    assert_eq!(
        out.upstream_header("x-keymesh-issuer"),
        Some(keymesh_testkit::ISSUER)
    );
    assert_eq!(out.upstream_header("x-keymesh-credential"), Some("jwt"));
    // Denied requests never reach the upstream, but the headers are still stripped first.
    let denied = request(&mut vm, "/orders/1", &[("x-keymesh-subject", "spoofed")])?;
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.upstream_header("x-keymesh-subject"), None);
    crate::finish(vm)
}

#[test]
fn a_route_sets_only_the_identity_headers_it_names_and_still_strips_the_others(
) -> Result<(), HostError> {
    let config = r#"{"sidecar":{"cluster":"keymesh_sidecar"},"identity_headers":["subject"],
                     "routes":[{"prefix":"/orders","audience":"https://orders.local","identity_headers":["client_id","scope"]},
                               {"prefix":"/","audience":"https://orders.local"}]}"#;
    let mut vm = vm(config, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    let token = bearer(&fixture().token(
        Alg::EdDsa,
        &claims(&["https://orders.local"], "orders:read"),
    ));
    let mut headers = vec![("authorization", token.as_str())];
    headers.extend(IDENTITY.iter().map(|h| (*h, "spoofed")));
    // The route's own list.
    let out = request(&mut vm, "/orders/1", &headers)?;
    assert_eq!(out.status(), 200, "{}", out.body());
    assert_eq!(out.upstream_header("x-keymesh-client-id"), Some("client-a"));
    assert_eq!(out.upstream_header("x-keymesh-scope"), Some("orders:read"));
    for name in [
        "x-keymesh-subject",
        "x-keymesh-issuer",
        "x-keymesh-credential",
    ] {
        assert_eq!(
            out.upstream_header(name),
            None,
            "{name}: {:?}",
            out.upstream
        );
    }
    // The filter's list.
    let out = request(&mut vm, "/other", &headers)?;
    assert_eq!(out.status(), 200, "{}", out.body());
    assert!(out
        .upstream_header("x-keymesh-subject")
        .is_some_and(|s| s != "spoofed"));
    for name in IDENTITY.iter().filter(|n| **n != "x-keymesh-subject") {
        assert_eq!(
            out.upstream_header(name),
            None,
            "{name}: {:?}",
            out.upstream
        );
    }
    crate::finish(vm)
}

#[test]
fn forward_token_keeps_authorization_upstream() -> Result<(), HostError> {
    let config = r#"{"sidecar":{"cluster":"keymesh_sidecar"},"forward_token":true,
                     "routes":[{"prefix":"/","audience":"https://orders.local"}]}"#;
    let mut vm = vm(config, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    let token = bearer(&fixture().token(Alg::EdDsa, &claims(&["https://orders.local"], "")));
    let out = request(&mut vm, "/x", &[("authorization", &token)])?;
    assert_eq!(out.status(), 200);
    assert_eq!(out.upstream_header("authorization"), Some(token.as_str()));
    crate::finish(vm)
}

#[test]
fn query_parameter_token_only_when_configured() -> Result<(), HostError> {
    let token = fixture().token(
        Alg::EdDsa,
        &claims(&["https://orders.local"], "orders:read"),
    );
    let path = format!("/orders/1?access_token={token}");
    let mut plain = ready_vm()?;
    assert_eq!(request(&mut plain, &path, &[])?.status(), 401);
    crate::finish(plain)?;

    let config = r#"{"sidecar":{"cluster":"keymesh_sidecar"},"token_query_param":"access_token",
                     "routes":[{"prefix":"/","audience":"https://orders.local","scopes":["orders:read"]}]}"#;
    let mut vm = vm(config, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    assert_eq!(request(&mut vm, &path, &[])?.status(), 200);
    // Header and query parameter together: RFC 6750 forbids more than one method.
    let both = request(&mut vm, &path, &[("authorization", &bearer(&token))])?;
    assert_eq!(
        (both.status(), both.challenge_error()),
        (400, Some("invalid_request"))
    );
    crate::finish(vm)
}

#[test]
fn denials_are_counted_by_reason() -> Result<(), HostError> {
    let mut vm = ready_vm()?;
    request(&mut vm, "/orders/1", &[])?;
    request(&mut vm, "/orders/1", &[])?;
    let expired = fixture().token(
        Alg::EdDsa,
        &keymesh_testkit::with(
            claims(&["https://orders.local"], "orders:read"),
            "exp",
            serde_json::json!(1),
        ),
    );
    request(
        &mut vm,
        "/orders/1",
        &[("authorization", &bearer(&expired))],
    )?;
    // Counted in the worker, handed to Envoy on its next tick.
    assert_eq!(vm.counter("keymesh.authn.denied.missing"), Some(0));
    crate::flush_metrics(&mut vm)?;
    assert_eq!(vm.counter("keymesh.authn.denied.missing"), Some(2));
    assert_eq!(vm.counter("keymesh.authn.denied.expired"), Some(1));
    assert_eq!(vm.counter("keymesh.authn.allowed"), Some(0));
    // Handed over once: another tick adds nothing.
    crate::flush_metrics(&mut vm)?;
    assert_eq!(vm.counter("keymesh.authn.denied.missing"), Some(2));
    crate::finish(vm)
}
