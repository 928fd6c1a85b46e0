//! The sidecar's dynamic client registration (RFC 7591): the JSON client metadata under the anonymous and the
//! initial-access-token policy. What is accepted stays within the policy, and every accepted redirect URI can carry
//! a redirect; what is refused is `invalid_client_metadata` or `invalid_redirect_uri`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keymesh::fuzzing::client_registration(data);
});
