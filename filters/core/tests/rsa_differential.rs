//! keymesh's RS256 verifier against the `rsa` crate's PKCS#1 v1.5 verification, on keys of every accepted size.
//!
//! Keys come from a seeded generator, so every run checks the same cases. For each key: honest signatures of random
//! messages, the same signatures tampered with (bit flips, wrong message, wrong length, `s ≥ n`, `s ∈ {0, 1}`), and
//! raw private-key operations on malformed encodings (missing NULL, other hash OIDs, short padding followed by
//! garbage, wrong block type). The two implementations must agree on every case, and the honest ones must verify.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keymesh_core::jwk::{parse_jwk, PublicKey};
use keymesh_core::rsa_verify::RsaVerifier;
use rsa::rand_core::{CryptoRng, RngCore};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// SplitMix64: deterministic test randomness (keys, messages, flip positions). Not a cryptographic generator; the
/// `CryptoRng` marker is only there because `rsa` key generation asks for one.
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

impl SeededRng {
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.fill_bytes(&mut out);
        out
    }
}

/// The scheme oracle: `rsa`'s own PKCS#1 v1.5 verification with its own SHA-256 DigestInfo.
fn rsa_crate_verifies(key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    key.verify(
        Pkcs1v15Sign::new::<Sha256>(),
        &Sha256::digest(message),
        signature,
    )
    .is_ok()
}

/// The key as keymesh sees it: a JWK, parsed (and size-checked) by keymesh.
fn keymesh_key(key: &RsaPublicKey) -> PublicKey {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let jwk = serde_json::json!({
        "kty": "RSA", "kid": "k", "alg": "RS256",
        "n": Base64UrlUnpadded::encode_string(&key.n().to_bytes_be()),
        "e": Base64UrlUnpadded::encode_string(&key.e().to_bytes_be()),
    });
    let key = parse_jwk(jwk.as_object().unwrap()).unwrap().key;
    assert_eq!(key.algorithm().name(), "RS256");
    key
}

/// Big-endian, left-padded to `len` bytes.
fn to_len(x: &BigUint, len: usize) -> Vec<u8> {
    let bytes = x.to_bytes_be();
    let mut out = vec![0; len.saturating_sub(bytes.len())];
    out.extend_from_slice(&bytes);
    out
}

/// `em^d mod n` for arbitrary blocks, to forge signatures of malformed encodings; by CRT, since a full-size `d`
/// exponentiation per case would dominate the test's run time.
struct RawSigner {
    p: BigUint,
    q: BigUint,
    dp: BigUint,
    dq: BigUint,
    q_inv: BigUint,
    n: BigUint,
    len: usize,
}

impl RawSigner {
    fn new(private: &RsaPrivateKey) -> Self {
        use rsa::traits::PrivateKeyParts;
        let [p, q] = [&private.primes()[0], &private.primes()[1]].map(Clone::clone);
        let one = BigUint::from(1u32);
        let two = BigUint::from(2u32);
        Self {
            dp: private.d() % (&p - &one),
            dq: private.d() % (&q - &one),
            // Fermat: q^(p−2) = q⁻¹ (mod p).
            q_inv: q.modpow(&(&p - &two), &p),
            n: private.n().clone(),
            len: private.size(),
            p,
            q,
        }
    }

    fn sign(&self, em: &[u8]) -> Option<Vec<u8>> {
        let c = BigUint::from_bytes_be(em);
        if c >= self.n {
            return None;
        }
        let sp = c.modpow(&self.dp, &self.p);
        let sq = c.modpow(&self.dq, &self.q);
        let h = (&self.q_inv * ((sp + &self.p) - (&sq % &self.p))) % &self.p;
        Some(to_len(&(sq + h * &self.q), self.len))
    }
}

const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Encoded blocks for `hash`, the first well formed and the rest each broken in one way.
fn encodings(len: usize, hash: &[u8], rng: &mut SeededRng) -> Vec<(&'static str, Vec<u8>)> {
    let block = |prefix: &[u8], tail: &[u8], pad: usize| {
        let mut em = vec![0x00, 0x01];
        em.extend(std::iter::repeat_n(0xff, pad));
        em.push(0x00);
        em.extend_from_slice(prefix);
        em.extend_from_slice(hash);
        em.extend_from_slice(tail);
        em
    };
    let pad = len - 3 - SHA256_PREFIX.len() - hash.len();
    let mut no_null = vec![0x30, 0x2f, 0x30, 0x0b];
    no_null.extend_from_slice(&SHA256_PREFIX[4..15]);
    no_null.extend_from_slice(&[0x04, 0x20]);
    let mut sha512_oid = SHA256_PREFIX.to_vec();
    sha512_oid[14] = 0x03;
    let mut long_form_length = vec![0x30, 0x81, 0x31];
    long_form_length.extend_from_slice(&SHA256_PREFIX[2..]);
    let garbage = rng.bytes(8);
    let mut cases = vec![
        ("well formed", block(SHA256_PREFIX, &[], pad)),
        ("missing NULL", block(&no_null, &[], pad + 2)),
        ("SHA-512 OID", block(&sha512_oid, &[], pad)),
        (
            "long-form DER length",
            block(&long_form_length, &[], pad - 1),
        ),
        (
            "garbage after hash",
            block(SHA256_PREFIX, &garbage, pad - 8),
        ),
        ("hash not last", block(SHA256_PREFIX, &[0; 8], pad - 8)),
        ("no DigestInfo", block(&[], &[], pad + SHA256_PREFIX.len())),
    ];
    let mut block_type_2 = cases[0].1.clone();
    block_type_2[1] = 0x02;
    cases.push(("block type 2", block_type_2));
    let mut zero_in_padding = cases[0].1.clone();
    zero_in_padding[2 + rng.below(pad)] = 0x00;
    cases.push(("zero in padding", zero_in_padding));
    let mut short_padding = cases[0].1.clone();
    short_padding[9] = 0x00; // only 7 bytes of FF, then 00 and garbage up to the DigestInfo
    cases.push(("padding shorter than 8", short_padding));
    cases.push(("random block", {
        let mut em = rng.bytes(len);
        em[0] = 0;
        em
    }));
    cases
}

/// Checks one key; returns (cases, accepted) for the caller's sanity bounds.
fn differential(bits: usize, exponent: u64, seed: u64, messages: usize) -> (usize, usize) {
    let mut rng = SeededRng(seed);
    let private = RsaPrivateKey::new_with_exp(&mut rng, bits, &BigUint::from(exponent)).unwrap();
    let public = private.to_public_key();
    let len = public.size();
    let keymesh = keymesh_key(&public);
    let direct = RsaVerifier::new(&public).unwrap();
    let raw = RawSigner::new(&private);
    assert_eq!(direct.modulus_len(), len);

    let mut cases: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    let n = public.n().clone();
    let one = BigUint::from(1u32);
    let fixed_message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0".to_vec();
    for (name, s) in [
        ("s = 0", BigUint::from(0u32)),
        ("s = 1", one.clone()),
        ("s = n - 1", &n - &one),
        ("s = n", n.clone()),
        ("s = n + 1", &n + &one),
        ("s = 2^(8·len) - 1", (&one << (8 * len)) - &one),
    ] {
        cases.push((name.into(), fixed_message.clone(), to_len(&s, len)));
    }
    cases.push(("empty".into(), fixed_message.clone(), Vec::new()));

    for i in 0..messages {
        let message_len = rng.below(300);
        let message = rng.bytes(message_len);
        let hash = Sha256::digest(&message);
        let signature = private.sign(Pkcs1v15Sign::new::<Sha256>(), &hash).unwrap();
        assert_eq!(signature.len(), len);
        let mut push = |name: String, m: &[u8], s: Vec<u8>| {
            cases.push((format!("#{i} {name}"), m.to_vec(), s))
        };

        push("honest".into(), &message, signature.clone());
        let mut other = message.clone();
        other.push(b'.');
        push("other message".into(), &other, signature.clone());
        for bit in [0, 7, 8 * len - 1, rng.below(8 * len), rng.below(8 * len)] {
            let mut flipped = signature.clone();
            flipped[bit / 8] ^= 0x80 >> (bit % 8);
            push(format!("bit {bit} flipped"), &message, flipped);
        }
        push(
            "leading zero".into(),
            &message,
            [&[0][..], &signature].concat(),
        );
        push(
            "trailing zero".into(),
            &message,
            [&signature[..], &[0]].concat(),
        );
        push(
            "first byte dropped".into(),
            &message,
            signature[1..].to_vec(),
        );
        // Adding n keeps s ≡ signature (mod n) but puts it out of range; it only fits when the top byte allows.
        let plus_n = BigUint::from_bytes_be(&signature) + &n;
        if plus_n.bits() <= 8 * len {
            push("s + n".into(), &message, to_len(&plus_n, len));
        }
        for (name, em) in encodings(len, &hash, &mut rng) {
            if let Some(forged) = raw.sign(&em) {
                push(format!("encoding: {name}"), &message, forged);
            }
        }
    }

    let mut accepted = 0;
    for (name, message, signature) in &cases {
        let oracle = rsa_crate_verifies(&public, message, signature);
        let ours = keymesh.verify(message, signature);
        assert_eq!(
            ours, oracle,
            "{bits}-bit e={exponent}: {name}: keymesh {ours}, rsa {oracle}"
        );
        assert_eq!(
            direct.verify_pkcs1v15_sha256(message, signature),
            ours,
            "{name}"
        );
        let must_verify = name.ends_with("honest") || name.ends_with("encoding: well formed");
        assert_eq!(ours, must_verify, "{bits}-bit e={exponent}: {name}");
        accepted += usize::from(ours);
    }
    eprintln!(
        "{bits}-bit e={exponent}: {} cases, {accepted} accepted",
        cases.len()
    );
    (cases.len(), accepted)
}

// Seeds are picked for quick key generation (it takes from 2 s to 30 s in a test build depending on the seed).
#[test]
fn agrees_with_rsa_crate_2048() {
    let (cases, accepted) = differential(2048, 65_537, 1, 12);
    assert_eq!(accepted, 2 * 12);
    assert!(cases > 12 * 20, "{cases}");
}

/// Small and large exponents exercise the general square-and-multiply path (e = 3 is what Bleichenbacher's 2006
/// forgery needs; 2³³ − 1 is the largest exponent the `rsa` crate accepts).
#[test]
fn agrees_with_rsa_crate_unusual_exponents() {
    for (exponent, seed) in [(3, 2), (17, 3), ((1 << 33) - 1, 4)] {
        let (_, accepted) = differential(2048, exponent, seed, 4);
        assert_eq!(accepted, 2 * 4, "e={exponent}");
    }
}

#[test]
fn agrees_with_rsa_crate_3072() {
    let (_, accepted) = differential(3072, 65_537, 8, 6);
    assert_eq!(accepted, 2 * 6);
}

#[test]
fn agrees_with_rsa_crate_4096() {
    let (_, accepted) = differential(4096, 65_537, 6, 4);
    assert_eq!(accepted, 2 * 4);
}
