//! The sidecar's authorization endpoint: the `Cookie` header line, then the query, checked against a native and a
//! web client. An accepted request stays within the client's registration and its redirect carries `state` and
//! `iss` back intact; a refusal goes to a registered redirect URI with an RFC 6749 §4.1.2.1 error, or to a page.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keymesh::fuzzing::authorization_request(data);
});
