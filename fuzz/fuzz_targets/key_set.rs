//! JWK and JWK Set parsing: one JWK object through `parse_jwk`, and the input as a JWK Set through the key-set
//! builder the filter and the sidecar use (private material, repeated kids, bad points, weak moduli).
#![no_main]

use keymesh_core::bundle::{BundleDto, IssuerKeysDto, JwksDto};
use keymesh_core::KeySet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(jwk) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
        let _ = keymesh_core::jwk::parse_jwk(&jwk);
    }
    if let Ok(jwks) = serde_json::from_slice::<JwksDto>(data) {
        let _ = KeySet::single_issuer(1, "https://issuer.fuzz", &jwks);
        let bundle = BundleDto {
            version: 1,
            since: None,
            issuers: vec![IssuerKeysDto {
                issuer: "https://issuer.fuzz".into(),
                jwks,
                audiences: None,
                external: true,
                accept_typ: vec!["JWT".into()],
                accept_missing_typ: false,
            }],
            api_keys: Default::default(),
            revoked_tokens: vec![],
        };
        let _ = KeySet::from_bundle(&bundle);
    }
});
