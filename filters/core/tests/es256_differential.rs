//! keymesh's ES256 verifier against p256's own ECDSA verification.
//!
//! Seeded keys and messages; for each, the honest signature, its high-S twin (ECDSA signatures are malleable and
//! neither side enforces low S), bit flips, swapped and out-of-range scalars, wrong lengths, another message and
//! another key. Both implementations must agree on every case, and the honest ones must verify.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_core::es256_verify::Es256Verifier;
use keymesh_core::jwk::parse_jwk;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::PrimeField;

/// SplitMix64: deterministic test randomness, not a cryptographic generator.
struct SeededRng(u64);

impl SeededRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

fn p256_verifies(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    Signature::from_slice(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
}

fn keymesh_key(key: &VerifyingKey) -> keymesh_core::jwk::PublicKey {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let point = key.to_encoded_point(false);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": "k",
        "x": Base64UrlUnpadded::encode_string(point.x().unwrap()),
        "y": Base64UrlUnpadded::encode_string(point.y().unwrap()),
    });
    parse_jwk(jwk.as_object().unwrap()).unwrap().key
}

#[test]
fn agrees_with_p256() {
    let mut rng = SeededRng(11);
    // The group order n, big-endian.
    let n: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let mut n_minus_1 = n;
    n_minus_1[31] -= 1;
    let other_key = SigningKey::from_slice(&[9u8; 32]).unwrap();
    let (mut total, mut accepted) = (0, 0);
    for _ in 0..16 {
        let signing = SigningKey::from_slice(&rng.bytes(32)).unwrap();
        let public = *signing.verifying_key();
        let keymesh = keymesh_key(&public);
        let direct = Es256Verifier::new(&public);
        for _ in 0..4 {
            let message_len = rng.below(300);
            let message = rng.bytes(message_len);
            let signature: Signature = signing.sign(&message);
            let bytes = signature.to_bytes().to_vec();
            let (r, s) = bytes.split_at(32);
            let high_s = {
                let mut repr = p256::FieldBytes::default();
                repr.copy_from_slice(s);
                let s_scalar = p256::Scalar::from_repr(repr).unwrap();
                [r, &(-s_scalar).to_repr()[..]].concat()
            };
            let mut cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
                ("honest", message.clone(), bytes.clone()),
                ("high S", message.clone(), high_s),
                (
                    "other message",
                    [&message[..], b"."].concat(),
                    bytes.clone(),
                ),
                ("other key", message.clone(), {
                    let other: Signature = other_key.sign(&message);
                    other.to_bytes().to_vec()
                }),
                ("swapped", message.clone(), [s, r].concat()),
                ("r = 0", message.clone(), [&[0; 32][..], s].concat()),
                ("s = 0", message.clone(), [r, &[0; 32][..]].concat()),
                ("r = n", message.clone(), [&n[..], s].concat()),
                ("s = n", message.clone(), [r, &n[..]].concat()),
                ("r = n - 1", message.clone(), [&n_minus_1[..], s].concat()),
                ("s = n - 1", message.clone(), [r, &n_minus_1[..]].concat()),
                ("63 bytes", message.clone(), bytes[1..].to_vec()),
                ("65 bytes", message.clone(), [&bytes[..], &[0]].concat()),
                ("empty", message.clone(), Vec::new()),
            ];
            for _ in 0..4 {
                let bit = rng.below(512);
                let mut flipped = bytes.clone();
                flipped[bit / 8] ^= 0x80 >> (bit % 8);
                cases.push(("bit flip", message.clone(), flipped));
            }
            for (name, message, signature) in &cases {
                let oracle = p256_verifies(&public, message, signature);
                let ours = keymesh.verify(message, signature);
                assert_eq!(ours, oracle, "{name}: keymesh {ours}, p256 {oracle}");
                assert_eq!(direct.verify(message, signature), ours, "{name}");
                assert_eq!(ours, matches!(*name, "honest" | "high S"), "{name}");
                accepted += usize::from(ours);
            }
            total += cases.len();
        }
    }
    eprintln!("{total} cases, {accepted} accepted");
    assert_eq!(accepted, 2 * 16 * 4);
}
