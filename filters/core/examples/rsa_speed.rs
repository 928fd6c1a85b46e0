//! Times RS256 verification: the `rsa` crate path keymesh used before (jwt-compact `Rsa::rs256()`) against
//! keymesh's [`RsaVerifier`] as wired into [`PublicKey::verify`].
//!
//! What matters is the speed inside Envoy's V8, so build for wasm and run on node, which embeds V8 too:
//!
//! ```sh
//! cargo build --release --target wasm32-wasip1 --example rsa_speed -p keymesh-core
//! node --no-warnings -e 'const {WASI}=require("node:wasi"),fs=require("fs");
//!   const w=new WASI({version:"preview1",args:["rsa_speed",...process.argv.slice(1)]});
//!   w.start(new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(
//!   "target/wasm32-wasip1/release/examples/rsa_speed.wasm")),w.getImportObject()))' 2000
//! ```
//!
//! or natively: `cargo run --release --example rsa_speed -p keymesh-core -- 2000`. The first argument is the number
//! of verifications timed per round (default 1000), any further ones the modulus sizes to time (default all of
//! 2048, 3072, 4096); five rounds run and the fastest and median are printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
use keymesh_core::jwk::{parse_jwk, PublicKey};
use keymesh_core::rsa_verify::RsaVerifier;
use rsa::rand_core::{CryptoRng, RngCore};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use std::hint::black_box;

/// SplitMix64, seeded so every run (native or wasm) times the same keys. Not a cryptographic generator.
struct SeededRng(u64);

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SeededRng {}

#[path = "support/timing.rs"]
mod timing;

use timing::{micros, time, ROUNDS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iterations: u32 = args
        .first()
        .map_or(1000, |n| n.parse().expect("iterations"));
    let sizes: Vec<usize> = args[args.len().min(1)..]
        .iter()
        .map(|b| b.parse().expect("modulus bits"))
        .collect();
    let target = timing::target();
    println!("RS256 verification, {target}, {iterations} per round, {ROUNDS} rounds (µs per verification: fastest / median)");
    // Seeds chosen for quick key generation.
    for (bits, seed) in [(2048, 1), (3072, 8), (4096, 6)] {
        if !sizes.is_empty() && !sizes.contains(&bits) {
            continue;
        }
        let private = RsaPrivateKey::new(&mut SeededRng(seed), bits).unwrap();
        let public: RsaPublicKey = private.to_public_key();
        let message = b"eyJhbGciOiJSUzI1NiIsImtpZCI6InJzLTEifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5rZXltZXNoLnRlc3QiLCJzdWIiOiJhbGljZSIsImF1ZCI6Imh0dHBzOi8vYXBpLmtleW1lc2gudGVzdCIsImV4cCI6MTgwMDAwMzYwMH0";
        let alg = jwt_compact::alg::Rsa::rs256();
        let signature = alg.sign(&private, message).as_bytes().into_owned();

        // Before: what PublicKey::verify did for RS256 (length check, then jwt-compact → rsa).
        let old = time(iterations, || {
            signature.len() == public.size()
                && <jwt_compact::alg::Rsa as jwt_compact::Algorithm>::Signature::try_from_slice(
                    black_box(&signature),
                )
                .is_ok_and(|sig| alg.verify_signature(&sig, &public, black_box(message)))
        });

        use base64ct::{Base64UrlUnpadded, Encoding};
        let jwk = serde_json::json!({
            "kty": "RSA", "kid": "k",
            "n": Base64UrlUnpadded::encode_string(&public.n().to_bytes_be()),
            "e": Base64UrlUnpadded::encode_string(&public.e().to_bytes_be()),
        });
        let key: PublicKey = parse_jwk(jwk.as_object().unwrap()).unwrap().key;
        // The timings are only worth something if the verifier is right on this platform too.
        let mut tampered = signature.clone();
        tampered[signature.len() / 2] ^= 1;
        assert!(!key.verify(message, &tampered) && !key.verify(&message[1..], &signature));
        let new = time(iterations, || {
            key.verify(black_box(message), black_box(&signature))
        });
        let setup = time(iterations.div_ceil(20), || {
            RsaVerifier::new(black_box(&public)).is_ok()
        });
        println!(
            "{bits}-bit: rsa crate {:8.1} / {:8.1}   RsaVerifier {:7.1} / {:7.1}   speed-up {:4.1}x   (per-key setup {:.0} µs)",
            micros(old.0),
            micros(old.1),
            micros(new.0),
            micros(new.1),
            old.1.as_secs_f64() / new.1.as_secs_f64(),
            micros(setup.1),
        );
    }
}
