//! An external provider's JWK Set as the sidecar fetches it: every key is kept, skipped or refused with a reason, and
//! the kept keys are exactly the ones the filters will use.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    keymesh::fuzzing::issuer_jwks(data);
});
