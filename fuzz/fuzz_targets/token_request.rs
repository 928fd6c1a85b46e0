//! The sidecar's token endpoint, and revocation and introspection on the same bytes: the form body (RFC 6749
//! Appendix B) and the client credentials (HTTP Basic or body). The input is the `Authorization` header line, then
//! the body. What parses must re-encode to itself; what is refused must be `invalid_request` or `invalid_client`
//! as RFC 6749 §5.2 JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keymesh::fuzzing::token_request(data);
});
