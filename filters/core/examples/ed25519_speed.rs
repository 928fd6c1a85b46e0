//! Times EdDSA (Ed25519) verification: jwt-compact's `Ed25519` (ed25519-dalek's `VerifyingKey::verify`) against
//! keymesh's [`PublicKey::verify`]. Build and run like `rsa_speed` (see there), with `ed25519_speed` in place of
//! `rsa_speed`:
//!
//! ```sh
//! cargo build --release --target wasm32-wasip1 --example ed25519_speed -p keymesh-core
//! node --no-warnings -e 'const {WASI}=require("node:wasi"),fs=require("fs");
//!   const w=new WASI({version:"preview1",args:["ed25519_speed",...process.argv.slice(1)]});
//!   w.start(new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(
//!   "target/wasm32-wasip1/release/examples/ed25519_speed.wasm")),w.getImportObject()))' 500
//! cargo run --release --example ed25519_speed -p keymesh-core -- 2000
//! ```
//!
//! The argument is the number of verifications timed per round (default 1000); five rounds run and the fastest and
//! median are printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ed25519_dalek::{Signer, SigningKey};
use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
use keymesh_core::jwk::{parse_jwk, PublicKey};
use sha2::{Digest, Sha512};
use std::hint::black_box;

#[path = "support/timing.rs"]
mod timing;

use timing::{micros, time, ROUNDS};

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map_or(1000, |n| n.parse().expect("iterations"));
    let target = timing::target();
    println!("EdDSA verification, {target}, {iterations} per round, {ROUNDS} rounds (µs per verification: fastest / median)");
    let signing = SigningKey::from_bytes(&[5u8; 32]);
    let verifying = signing.verifying_key();
    let message = b"eyJhbGciOiJFZERTQSIsImtpZCI6ImVkLTEifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5rZXltZXNoLnRlc3QiLCJzdWIiOiJhbGljZSIsImF1ZCI6Imh0dHBzOi8vYXBpLmtleW1lc2gudGVzdCIsImV4cCI6MTgwMDAwMzYwMH0";
    let signature = signing.sign(message).to_bytes().to_vec();

    // Before: what PublicKey::verify did for EdDSA.
    let alg = jwt_compact::alg::Ed25519;
    let old = time(iterations, || {
        <jwt_compact::alg::Ed25519 as jwt_compact::Algorithm>::Signature::try_from_slice(black_box(
            &signature,
        ))
        .is_ok_and(|sig| alg.verify_signature(&sig, &verifying, black_box(message)))
    });

    use base64ct::{Base64UrlUnpadded, Encoding};
    let jwk = serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "kid": "k",
        "x": Base64UrlUnpadded::encode_string(verifying.as_bytes()),
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
    let cold = time(iterations.div_ceil(5), || {
        parse_jwk(black_box(jwk.as_object().unwrap()))
            .is_ok_and(|entry| entry.key.verify(black_box(message), black_box(&signature)))
    });
    // The per-token hash, R‖A‖M, included in both verification timings above.
    let hash = time(iterations, || {
        let digest = Sha512::new()
            .chain_update(black_box(&signature[..32]))
            .chain_update(black_box(verifying.as_bytes()))
            .chain_update(black_box(message))
            .finalize();
        digest[0] != 0 || digest[1] != 0
    });
    println!(
        "Ed25519: ed25519-dalek {:7.1} / {:7.1}   PublicKey::verify {:7.1} / {:7.1}   speed-up {:4.1}x   (JWK parse {:.0} µs, parse + first verification {:.0} µs, table {} bytes per key, SHA-512 of R‖A‖M {:.1} µs)",
        micros(old.0),
        micros(old.1),
        micros(new.0),
        micros(new.1),
        old.1.as_secs_f64() / new.1.as_secs_f64(),
        micros(setup.1),
        micros(cold.1),
        keymesh_core::ed25519_verify::TABLE_BYTES,
        micros(hash.1),
    );
}
