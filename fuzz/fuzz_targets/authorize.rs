//! The whole per-request decision, `keymesh_core::authorize`, with arbitrary paths and credential headers against
//! the fixture bundle: token extraction, the JWS layer, every signature algorithm, claims and policy. Run with and
//! without the token cache; both must give the same answer.
#![no_main]

use keymesh_core::{authorize, EmptyDirectory, KeyMaterial, TokenCache, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (config, keys) = keymesh_fuzz::fixed();
    let req = keymesh_fuzz::request(input);
    let material = KeyMaterial {
        keys: Some(keys),
        age_secs: 0,
        directory: &EmptyDirectory,
        cache: None,
    };
    let now = keymesh_fuzz::now();
    let plain = authorize(config, &req, &material, now);
    let cache = TokenCache::new(4);
    let cached = KeyMaterial {
        cache: Some(&cache),
        ..material
    };
    for _ in 0..2 {
        let again = authorize(config, &req, &cached, now);
        assert_eq!(
            matches!(plain, Verdict::Allow(_)),
            matches!(again, Verdict::Allow(_)),
            "the cache changed the verdict"
        );
    }
    let _ = keymesh_core::policy::unknown_external_kid(config, &req, keys);
});
