//! Bundle and delta parsing and apply, as the filter does them: up to three bundles (separated by a NUL byte) are
//! parsed and applied in order to one in-memory shared data, then the workers' view is read and a request
//! decided with it.
#![no_main]

use keymesh_core::delivery::{InMemorySharedData, ReceivedBundle, SharedKeyMaterial};
use keymesh_core::{authorize, KeyMaterial};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let material =
        SharedKeyMaterial::new(InMemorySharedData::new(), "keymesh_sidecar", "/v1/bundle");
    let mut now_ms = 1_800_000_000_000;
    for body in data.split(|b| *b == 0).take(3) {
        if let Ok(received) = ReceivedBundle::parse(body) {
            let _ = material.apply(received, now_ms);
        }
        now_ms += 1_000;
    }
    let snapshot = material.snapshot();
    let (config, _) = keymesh_fuzz::fixed();
    let auth = format!("Bearer {}", keymesh_fuzz::TOKEN);
    let req = keymesh_fuzz::request("/orders/1");
    let req = keymesh_core::RequestParts {
        authorization: vec![&auth],
        ..req
    };
    let _ = authorize(
        config,
        &req,
        &KeyMaterial {
            keys: snapshot.keys(),
            age_secs: 0,
            directory: &snapshot,
            cache: None,
        },
        keymesh_fuzz::now(),
    );
});
