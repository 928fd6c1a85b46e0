//! RFC 9728 on the compiled filter: the metadata document is a local reply (before any bundle, never upstream),
//! and challenges name the configured metadata URL whatever `Host` the request carries.

use crate::{bearer, request, tick_and_answer, vm, Outcome};
use keymesh_testkit::{fixture, SCENARIO_CONFIG};
use keymesh_wasm_host::{Action, HostError, HttpResponse, SharedStore, Vm};

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

fn config() -> String {
    let mut config: serde_json::Value = serde_json::from_str(SCENARIO_CONFIG).unwrap_or_default();
    config["resource_metadata"] = serde_json::json!({
        "authorization_servers": ["https://issuer.keymesh.test"],
        "base_url": "https://api.example.com",
        "resource_name": "Orders",
    });
    config.to_string()
}

fn send(vm: &mut Vm, headers: &[(&str, &str)]) -> Result<Outcome, HostError> {
    let mut stream = vm.new_http_stream()?;
    let action = stream.on_request_headers(headers, true)?;
    let local = stream.take_local_response();
    let upstream = stream.request_headers().to_pairs();
    stream.finish()?;
    Ok(Outcome {
        action,
        local,
        upstream,
    })
}

#[test]
fn the_document_is_served_locally_even_before_key_material() -> Result<(), HostError> {
    let mut vm = vm(&config(), &SharedStore::new())?;
    let got = request(&mut vm, WELL_KNOWN, &[])?;
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.action,
        Action::Pause,
        "a local reply must not continue upstream"
    );
    let local = got
        .local
        .as_ref()
        .ok_or(HostError::Expectation("no reply".into()))?;
    assert_eq!(
        local.headers.get("cache-control"),
        Some("public, max-age=3600")
    );
    assert_eq!(local.headers.get("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&got.body()).unwrap_or_default();
    assert_eq!(doc["resource"], "https://orders.local");
    assert_eq!(
        doc["authorization_servers"][0],
        "https://issuer.keymesh.test"
    );
    assert_eq!(doc["resource_name"], "Orders");
    assert_eq!(
        doc["scopes_supported"],
        serde_json::json!(["orders:read", "orders:admin"])
    );
    let post = send(
        &mut vm,
        &[
            (":method", "POST"),
            (":path", WELL_KNOWN),
            (":authority", "x"),
        ],
    )?;
    assert_eq!(post.status(), 405);
    // Anything else still goes through authorization: 503 before the first bundle.
    assert_eq!(
        request(&mut vm, &format!("{WELL_KNOWN}/other"), &[])?.status(),
        403
    );
    crate::finish(vm)
}

#[test]
fn challenges_name_the_configured_url_not_the_request_host() -> Result<(), HostError> {
    let mut vm = vm(&config(), &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    let expected = format!("resource_metadata=\"https://api.example.com{WELL_KNOWN}\"");
    let forged = [
        (":method", "GET"),
        (":path", "/orders/1"),
        (":authority", "evil.example"),
        ("host", "evil.example"),
        ("x-forwarded-host", "evil.example"),
    ];
    let missing = send(&mut vm, &forged)?;
    assert_eq!(missing.status(), 401);
    let challenge = missing.challenge().unwrap_or_default().to_owned();
    assert!(challenge.contains(&expected), "{challenge}");
    assert!(!challenge.contains("evil"), "{challenge}");
    let bad = request(&mut vm, "/orders/1", &[("authorization", &bearer("a.b.c"))])?;
    assert_eq!(bad.status(), 401);
    assert!(bad.challenge().unwrap_or_default().contains(&expected));
    let token = fixture().token(
        keymesh_testkit::Alg::EdDsa,
        &keymesh_testkit::claims(&["https://orders.local"], "orders:read"),
    );
    let forbidden = request(&mut vm, "/admin", &[("authorization", &bearer(&token))])?;
    assert_eq!(forbidden.status(), 403);
    assert!(forbidden
        .challenge()
        .unwrap_or_default()
        .contains(&expected));
    let allowed = request(&mut vm, "/orders/1", &[("authorization", &bearer(&token))])?;
    assert_eq!(allowed.status(), 200);
    crate::finish(vm)
}

#[test]
fn without_the_block_nothing_is_served_and_challenges_are_plain() -> Result<(), HostError> {
    let mut vm = vm(SCENARIO_CONFIG, &SharedStore::new())?;
    tick_and_answer(&mut vm, HttpResponse::new(200).body(fixture().bundle(1)))?;
    assert_eq!(request(&mut vm, WELL_KNOWN, &[])?.status(), 403);
    let missing = request(&mut vm, "/orders/1", &[])?;
    assert!(!missing
        .challenge()
        .unwrap_or_default()
        .contains("resource_metadata"));
    crate::finish(vm)
}
