//! Times ES256 verification: jwt-compact's `Es256` (p256's `VerifyingKey`) against keymesh's
//! [`PublicKey::verify`]. Build and run like `rsa_speed` (see there), with `es256_speed` in place of `rsa_speed`:
//!
//! ```sh
//! cargo build --release --target wasm32-wasip1 --example es256_speed -p keymesh-core
//! cargo run --release --example es256_speed -p keymesh-core -- 2000
//! ```
//!
//! The argument is the number of verifications timed per round (default 1000); five rounds run and the fastest and
//! median are printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
use keymesh_core::jwk::{parse_jwk, PublicKey};
use std::hint::black_box;

#[path = "support/timing.rs"]
mod timing;

use timing::{micros, time, ROUNDS};

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map_or(1000, |n| n.parse().expect("iterations"));
    let target = timing::target();
    println!("ES256 verification, {target}, {iterations} per round, {ROUNDS} rounds (µs per verification: fastest / median)");
    let signing = p256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
    let verifying = *signing.verifying_key();
    let message = b"eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzLTEifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5rZXltZXNoLnRlc3QiLCJzdWIiOiJhbGljZSIsImF1ZCI6Imh0dHBzOi8vYXBpLmtleW1lc2gudGVzdCIsImV4cCI6MTgwMDAwMzYwMH0";
    let alg = jwt_compact::alg::Es256;
    let signature = alg.sign(&signing, message).as_bytes().into_owned();

    // Before: what PublicKey::verify did for ES256.
    let old = time(iterations, || {
        <jwt_compact::alg::Es256 as jwt_compact::Algorithm>::Signature::try_from_slice(black_box(
            &signature,
        ))
        .is_ok_and(|sig| alg.verify_signature(&sig, &verifying, black_box(message)))
    });

    use base64ct::{Base64UrlUnpadded, Encoding};
    let point = verifying.to_encoded_point(false);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": "k",
        "x": Base64UrlUnpadded::encode_string(point.x().unwrap()),
        "y": Base64UrlUnpadded::encode_string(point.y().unwrap()),
    });
    let key: PublicKey = parse_jwk(jwk.as_object().unwrap()).unwrap().key;
    // The timings are only worth something if the verifier is right on this platform too.
    let mut tampered = signature.clone();
    tampered[40] ^= 1;
    assert!(!key.verify(message, &tampered) && !key.verify(&message[1..], &signature));
    let new = time(iterations, || {
        key.verify(black_box(message), black_box(&signature))
    });
    let setup = time(iterations.div_ceil(20), || {
        parse_jwk(black_box(jwk.as_object().unwrap())).is_ok()
    });
    // A key's first verification after a (re-)parse, which builds its table.
    let cold = time(iterations.div_ceil(20), || {
        parse_jwk(black_box(jwk.as_object().unwrap()))
            .is_ok_and(|entry| entry.key.verify(black_box(message), black_box(&signature)))
    });
    println!(
        "P-256: jwt-compact {:7.1} / {:7.1}   PublicKey::verify {:7.1} / {:7.1}   speed-up {:4.1}x   (JWK parse {:.0} µs, parse + first verification {:.0} µs)",
        micros(old.0),
        micros(old.1),
        micros(new.0),
        micros(new.1),
        old.1.as_secs_f64() / new.1.as_secs_f64(),
        micros(setup.1),
        micros(cold.1),
    );
}
