//! The request header map as the filter reads it: raw, in one host call, including values that are not UTF-8.

use crate::{bearer, ready_vm};
use keymesh_testkit::{claims, fixture, Alg};
use keymesh_wasm_host::{Action, HeaderMap, HostError, Vm};

/// Sends a GET to `/orders/1` with `extra` headers (values as bytes) through a new stream; returns the action,
/// the local reply's status (200 if none) and the upstream's `x-keymesh-subject`.
fn send(vm: &mut Vm, extra: &[(&str, &[u8])]) -> Result<(Action, u16, Option<String>), HostError> {
    let base: [(&str, &[u8]); 3] = [
        (":method", b"GET"),
        (":path", b"/orders/1"),
        (":authority", b"orders.local"),
    ];
    let map: HeaderMap = base.iter().chain(extra).copied().collect();
    let mut stream = vm.new_http_stream()?;
    let action = stream.on_request_header_map(map, true)?;
    let status = stream.take_local_response().map_or(200, |l| l.status_code);
    let subject = stream
        .request_headers()
        .get("x-keymesh-subject")
        .map(str::to_owned);
    stream.finish()?;
    Ok((action, status, subject))
}

/// HTTP allows bytes 0x80–0xFF in a header value (`obs-text`), and Envoy passes them on. The proxy-wasm SDK's
/// `get_map` panics on such a value (it decodes every value as UTF-8), which would take down the worker's VM on
/// one request; the filter reads the map raw and decides as on the lossy text.
#[test]
fn a_header_value_that_is_not_utf8_is_no_crash() -> Result<(), HostError> {
    let mut vm = ready_vm()?;
    let token = bearer(&fixture().token(
        Alg::EdDsa,
        &claims(&["https://orders.local"], "orders:read"),
    ));
    let token = token.as_bytes();
    // In another header: ignored, the request is allowed.
    let allowed = send(&mut vm, &[("x-note", b"caf\xe9"), ("authorization", token)])?;
    assert_eq!(
        allowed,
        (Action::Continue, 200, Some("client-a".to_owned()))
    );
    // In the credential: a malformed bearer token, 401, and the VM keeps serving.
    for value in [&b"Bearer \xff\xfe"[..], b"Bearer abc\xe9def"] {
        let refused = send(&mut vm, &[("authorization", value)])?;
        assert_eq!((refused.0, refused.1), (Action::Pause, 401));
    }
    // A spoofed identity header that is not UTF-8 is still replaced.
    let spoofed = send(
        &mut vm,
        &[("x-keymesh-subject", b"\xff"), ("authorization", token)],
    )?;
    assert_eq!(spoofed.2.as_deref(), Some("client-a"));
    crate::finish(vm)
}
