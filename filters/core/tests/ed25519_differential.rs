//! keymesh's Ed25519 verifier against the path it replaced: jwt-compact's `Ed25519`, i.e. ed25519-dalek 2's
//! `VerifyingKey::verify` (cofactorless, canonical `s`, any decompressible key, R compared byte for byte).
//!
//! Both must agree on every case, accepting and rejecting alike: seeded honest keys and signatures with mutated
//! signatures, messages and lengths; non-canonical `s`; every point of small order and every non-canonical point
//! encoding as key and as R; keys with a torsion component, whose honest signatures pass a cofactorless check only
//! sometimes; signatures that verify under a small-order key for any message; random 32-byte keys; and every
//! Wycheproof Ed25519 vector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
use keymesh_core::ed25519_verify::Ed25519Verifier;
use keymesh_core::jwk::{parse_jwk, PublicKey};
use sha2::{Digest, Sha512};

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
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.next_u64() as u8)
    }
    fn vec(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
    fn scalar(&mut self) -> Scalar {
        Scalar::from_bytes_mod_order_wide(&self.bytes())
    }
}

/// The old `PublicKey::verify` for EdDSA, verbatim.
fn oracle(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    let alg = jwt_compact::alg::Ed25519;
    <jwt_compact::alg::Ed25519 as jwt_compact::Algorithm>::Signature::try_from_slice(signature)
        .is_ok_and(|sig| alg.verify_signature(&sig, key, message))
}

fn jwk_key(encoded: &[u8; 32]) -> Result<PublicKey, keymesh_core::KeyError> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let jwk = serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "kid": "k",
        "x": Base64UrlUnpadded::encode_string(encoded),
    });
    parse_jwk(jwk.as_object().unwrap()).map(|entry| entry.key)
}

/// One key as both sides see it; `None` when both refuse it.
struct Key {
    dalek: VerifyingKey,
    ours: Ed25519Verifier,
    jwk: PublicKey,
}

fn key(encoded: &[u8; 32]) -> Option<Key> {
    let dalek = VerifyingKey::from_bytes(encoded).ok();
    let ours = Ed25519Verifier::from_bytes(encoded);
    let jwk = jwk_key(encoded).ok();
    assert_eq!(ours.is_some(), dalek.is_some(), "key {encoded:02x?}");
    assert_eq!(jwk.is_some(), dalek.is_some(), "JWK {encoded:02x?}");
    Some(Key {
        dalek: dalek?,
        ours: ours?,
        jwk: jwk?,
    })
}

/// Checks one case on every path and returns the verdict.
fn check(key: &Key, message: &[u8], signature: &[u8], name: &str) -> bool {
    let want = oracle(&key.dalek, message, signature);
    let ours = key.ours.verify(message, signature);
    assert_eq!(ours, want, "{name}: keymesh {ours}, ed25519-dalek {want}");
    assert_eq!(key.jwk.verify(message, signature), want, "{name} (JWK)");
    want
}

/// `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    Scalar::from_hash(
        Sha512::new()
            .chain_update(r)
            .chain_update(a)
            .chain_update(message),
    )
}

/// A signature with nonce point encoding `r` and `s = nonce + k·secret`, for keys with no `SigningKey`.
fn sign_raw(secret: Scalar, a: &[u8; 32], nonce: Scalar, r: &[u8; 32], message: &[u8]) -> Vec<u8> {
    let s = nonce + challenge(r, a, message) * secret;
    [&r[..], s.as_bytes()].concat()
}

/// The eight points of order dividing 8.
fn torsion() -> Vec<EdwardsPoint> {
    let order8 = CompressedEdwardsY([
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ])
    .decompress()
    .unwrap();
    let points: Vec<EdwardsPoint> = (0u64..8).map(|j| order8 * Scalar::from(j)).collect();
    assert_eq!(
        points
            .iter()
            .map(|p| p.compress().0)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        8
    );
    points
}

/// Encodings whose y is below 19 or from p to p + 18, with either sign bit: all the non-canonical encodings of a
/// y that fit in 255 bits, and the canonical ones next to them (including the identity, y = 1, and y = 0).
fn edge_encodings() -> Vec<[u8; 32]> {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut all = Vec::new();
    for v in 0u8..19 {
        let mut small = [0; 32];
        small[0] = v;
        let mut above_p = p;
        above_p[0] += v;
        for mut bytes in [small, above_p] {
            all.push(bytes);
            bytes[31] |= 0x80;
            all.push(bytes);
        }
    }
    // y = p − 1 (= −1) with both signs.
    let mut minus_one = p;
    minus_one[0] -= 1;
    all.push(minus_one);
    minus_one[31] |= 0x80;
    all.push(minus_one);
    all
}

#[test]
fn agrees_with_ed25519_dalek_on_honest_and_mutated_signatures() {
    let mut rng = SeededRng(25519);
    let ell_bytes = (Scalar::ZERO - Scalar::ONE).to_bytes();
    let other = SigningKey::from_bytes(&[9; 32]);
    let (mut total, mut accepted) = (0, 0);
    for _ in 0..24 {
        let signing = SigningKey::from_bytes(&rng.bytes());
        let k = key(signing.verifying_key().as_bytes()).unwrap();
        for _ in 0..4 {
            let len = rng.below(400);
            let message = rng.vec(len);
            let honest = signing.sign(&message).to_bytes();
            let (r, s) = honest.split_at(32);
            let s_scalar = Scalar::from_canonical_bytes(s.try_into().unwrap()).unwrap();
            // s + ℓ: the same value mod ℓ, not canonical. ℓ = (ℓ − 1) + 1.
            let s_plus_ell = {
                let mut sum = [0u8; 32];
                let mut carry = 1u16;
                for i in 0..32 {
                    let v = u16::from(s[i]) + u16::from(ell_bytes[i]) + carry;
                    sum[i] = v as u8;
                    carry = v >> 8;
                }
                sum
            };
            let ell = {
                let mut ell = ell_bytes;
                ell[0] += 1;
                ell
            };
            let mut cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
                ("honest", message.clone(), honest.to_vec()),
                ("s + ℓ", message.clone(), [r, &s_plus_ell].concat()),
                ("s = ℓ", message.clone(), [r, &ell].concat()),
                ("s = ℓ − 1", message.clone(), [r, &ell_bytes].concat()),
                ("s = 0", message.clone(), [r, &[0; 32]].concat()),
                ("−s", message.clone(), [r, (-s_scalar).as_bytes()].concat()),
                ("s with top bit", message.clone(), {
                    let mut sig = honest;
                    sig[63] |= 0x80;
                    sig.to_vec()
                }),
                ("R with sign flipped", message.clone(), {
                    let mut sig = honest;
                    sig[31] ^= 0x80;
                    sig.to_vec()
                }),
                ("swapped", message.clone(), [s, r].concat()),
                (
                    "other message",
                    [&message[..], b"."].concat(),
                    honest.to_vec(),
                ),
                (
                    "other key",
                    message.clone(),
                    other.sign(&message).to_bytes().to_vec(),
                ),
                ("63 bytes", message.clone(), honest[1..].to_vec()),
                ("65 bytes", message.clone(), [&honest[..], &[0]].concat()),
                ("empty", message.clone(), Vec::new()),
            ];
            if !message.is_empty() {
                let mut changed = message.clone();
                let at = rng.below(changed.len());
                changed[at] ^= 1 << rng.below(8);
                cases.push(("message bit flip", changed, honest.to_vec()));
                cases.push((
                    "truncated message",
                    message[..message.len() - 1].to_vec(),
                    honest.to_vec(),
                ));
            }
            for _ in 0..6 {
                let bit = rng.below(512);
                let mut flipped = honest;
                flipped[bit / 8] ^= 0x80 >> (bit % 8);
                cases.push(("signature bit flip", message.clone(), flipped.to_vec()));
            }
            for (name, message, signature) in &cases {
                let ours = check(&k, message, signature, name);
                assert_eq!(ours, *name == "honest", "{name}");
                accepted += usize::from(ours);
            }
            total += cases.len();
        }
    }
    eprintln!("{total} cases, {accepted} accepted");
    assert_eq!(accepted, 24 * 4);
}

#[test]
fn agrees_on_small_order_and_non_canonical_points() {
    let mut rng = SeededRng(8);
    let torsion = torsion();
    let mut keys: Vec<[u8; 32]> = torsion.iter().map(|t| t.compress().0).collect();
    keys.extend(edge_encodings());
    let edges = edge_encodings();
    let (mut total, mut accepted, mut usable) = (0, 0, 0);
    for encoded in &keys {
        let Some(k) = key(encoded) else { continue };
        usable += 1;
        let a = CompressedEdwardsY(*encoded).decompress().unwrap();
        for _ in 0..3 {
            let len = rng.below(100);
            let message = rng.vec(len);
            let s = rng.scalar();
            let sb = B * s;
            let mut cases: Vec<Vec<u8>> = Vec::new();
            // R = [s]B − T for every torsion point T: whichever T equals [k]A (k depends on R) verifies.
            for t in &torsion {
                cases.push([&(sb - t).compress().0[..], s.as_bytes()].concat());
            }
            // R = [s]B: verifies when [k]A is the identity (always, for the identity key).
            cases.push([&sb.compress().0[..], s.as_bytes()].concat());
            // Edge encodings as R, with s chosen so that [s]B − [k]A is the point R decodes to, if any.
            for r in &edges {
                let Some(r_point) = CompressedEdwardsY(*r).decompress() else {
                    cases.push([&r[..], s.as_bytes()].concat());
                    continue;
                };
                // [s]B − [k]A = R needs [s]B = R + [k]A; only possible with a torsion-free difference, so try the
                // obvious candidate s = 0 (R + [k]A = identity) and a random s.
                let k_challenge = challenge(r, encoded, &message);
                let rhs = r_point + a * k_challenge;
                let s0 = if rhs == EdwardsPoint::default() {
                    Scalar::ZERO
                } else {
                    s
                };
                cases.push([&r[..], s0.as_bytes()].concat());
            }
            for signature in &cases {
                accepted += usize::from(check(&k, &message, signature, "small order"));
            }
            total += cases.len();
        }
    }
    eprintln!(
        "{usable} usable of {} keys, {total} cases, {accepted} accepted",
        keys.len()
    );
    // The identity key alone accepts the R = [s]B cases for every message.
    assert!(accepted >= 3 && usable >= 8);
}

#[test]
fn agrees_on_keys_with_a_torsion_component() {
    let mut rng = SeededRng(77);
    let torsion = torsion();
    let (mut total, mut accepted) = (0, 0);
    for t in &torsion {
        for _ in 0..3 {
            let secret = rng.scalar();
            let a_point = B * secret + t;
            let a = a_point.compress().0;
            let k = key(&a).unwrap();
            for _ in 0..8 {
                let len = rng.below(200);
                let message = rng.vec(len);
                let nonce = rng.scalar();
                // Honest for the prime-order part: [s]B − [k]A = R − [k]T, so R only when [k]T is the identity.
                let r = (B * nonce).compress().0;
                let signature = sign_raw(secret, &a, nonce, &r, &message);
                accepted += usize::from(check(&k, &message, &signature, "mixed-order key"));
                // R with a torsion component as well.
                let which = rng.below(8);
                let r = (B * nonce + torsion[which]).compress().0;
                let signature = sign_raw(secret, &a, nonce, &r, &message);
                accepted += usize::from(check(&k, &message, &signature, "mixed-order R"));
                total += 2;
            }
        }
    }
    eprintln!("{total} cases, {accepted} accepted");
    // About one in eight (the identity T: all of its honest cases) passes; neither none nor all.
    assert!(accepted > 24 && accepted < total);
}

#[test]
fn agrees_on_random_keys_and_signatures() {
    let mut rng = SeededRng(3);
    let (mut keys, mut total) = (0, 0);
    for _ in 0..400 {
        let encoded: [u8; 32] = rng.bytes();
        let Some(k) = key(&encoded) else { continue };
        keys += 1;
        if keys > 40 {
            continue;
        }
        for _ in 0..2 {
            let len = rng.below(64);
            let message = rng.vec(len);
            let mut signature = rng.vec(64);
            signature[63] &= 0x0f; // mostly canonical s, so the curve arithmetic runs
            assert!(!check(&k, &message, &signature, "random signature"));
            total += 1;
        }
    }
    eprintln!("{keys} of 400 random strings are keys; {total} random signatures");
    assert!(keys > 100);
}

#[test]
fn agrees_on_wycheproof_vectors() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/testdata/wycheproof/ed25519_test.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let mut checked = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let public: [u8; 32] = hex(group["publicKey"]["pk"].as_str().unwrap())
            .try_into()
            .unwrap();
        let k = key(&public).unwrap();
        for t in group["tests"].as_array().unwrap() {
            let message = hex(t["msg"].as_str().unwrap());
            let signature = hex(t["sig"].as_str().unwrap());
            let ok = check(&k, &message, &signature, &format!("tc {}", t["tcId"]));
            assert_eq!(ok, t["result"] == "valid", "tc {}", t["tcId"]);
            checked += 1;
        }
    }
    assert!(checked > 140);
}
