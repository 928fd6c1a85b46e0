//! An external provider's discovery document (OIDC Discovery, RFC 8414): a `jwks_uri` is taken only from a document
//! naming the registered issuer, and checked like a registered URL.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keymesh::fuzzing::issuer_discovery(data);
});
