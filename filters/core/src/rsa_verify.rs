//! RS256 verification (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 §8.2.2) with per-key precomputation.
//!
//! The `rsa` crate's `s^e mod n` (num-bigint-dig's `monty_modpow`) redoes per signature what depends only on the key:
//! `R² mod n` by a long division and a 16-entry window table, then a fixed 4-bit window over all 32 bits of the
//! exponent's digit, about 53 Montgomery multiplications for e = 65537, each into freshly allocated numbers. Here the
//! Montgomery constants are computed once, when the JWK is parsed, and plain square-and-multiply needs 18
//! multiplications for e = 65537, on 32-bit limbs that wasm multiplies natively (`i64.mul`).
//!
//! The decrypted block is never parsed: the one valid encoding `00 01 FF…FF 00 ‖ DigestInfo(SHA-256) ‖ H(m)` is
//! rebuilt and compared in full, as RFC 8017 prescribes. Parsing it instead is what Bleichenbacher-style forgeries
//! for small exponents exploit (garbage after the hash, short padding, lenient ASN.1 lengths).

// Proof for the whole module (and `montgomery`): limb arithmetic is on u32 limbs widened to u64, where a product of
// two limbs plus two limb-sized carries is below 2^64; lengths and positions are derived from a modulus of at least
// MIN_MODULUS_LEN bytes (checked before any of them is computed) and limb counts `len.div_ceil(4)` of it, so no
// subtraction underflows and no index passes the buffers sized from the same numbers. The RSA differential and
// Wycheproof tests exercise every path against the `rsa` crate.
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

mod montgomery;

use montgomery::{limbs_from_be, Limbs, Modulus};
use sha2::{Digest, Sha256};
use std::fmt;

/// DER of `DigestInfo { AlgorithmIdentifier { id-sha256, NULL }, OCTET STRING (32 bytes) }` up to the hash
/// (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Length of a SHA-256 hash: a whole number of limbs, so the hash fills exactly the low 8 limbs of the encoding.
const HASH_LEN: usize = 32;
const HASH_LIMBS: usize = HASH_LEN / 4;

/// RFC 8017 §9.2 step 5: at least 8 bytes of `FF` padding, so `emLen ≥ tLen + 11`.
const MIN_MODULUS_LEN: usize = SHA256_DIGEST_INFO.len() + HASH_LEN + 11;

/// Why an RSA public key cannot back an [`RsaVerifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RsaKeyError {
    /// The modulus is even or too short to hold a PKCS#1 v1.5 SHA-256 encoding.
    #[error("RSA modulus must be odd and at least {MIN_MODULUS_LEN} bytes")]
    Modulus,
    /// The public exponent is even, below 3 or wider than 64 bits (e = 1 would make every encoding a signature).
    #[error("RSA public exponent must be odd, at least 3 and at most 64 bits")]
    Exponent,
}

/// An RS256 verifying key with its modulus prepared for Montgomery exponentiation.
///
/// Only the arithmetic lives here; which moduli are acceptable (2048, 3072, 4096 bits) is decided when the JWK is
/// parsed ([`crate::jwk::parse_jwk`]).
#[derive(Clone)]
pub struct RsaVerifier {
    modulus: Modulus,
    exponent: u64,
    /// The modulus length in bytes, which every signature must have.
    len: usize,
    /// The encoding above the hash, `00 01 FF…FF 00 ‖ DigestInfo`, as the top limbs of a number: the same for every
    /// message under this key.
    encoding_prefix: Limbs,
}

impl fmt::Debug for RsaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaVerifier({} bytes, e={})", self.len, self.exponent)
    }
}

impl RsaVerifier {
    /// Prepares `key` for verification.
    pub fn new(key: &rsa::RsaPublicKey) -> Result<Self, RsaKeyError> {
        use rsa::traits::PublicKeyParts;
        Self::from_be_bytes(&key.n().to_bytes_be(), &key.e().to_bytes_be())
    }

    /// Prepares the key with big-endian modulus `n` and public exponent `e`.
    fn from_be_bytes(n: &[u8], e: &[u8]) -> Result<Self, RsaKeyError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        if e.len() > 8 {
            return Err(RsaKeyError::Exponent);
        }
        let exponent = e.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        if exponent < 3 || exponent & 1 == 0 {
            return Err(RsaKeyError::Exponent);
        }
        let len = n.len();
        if len < MIN_MODULUS_LEN {
            return Err(RsaKeyError::Modulus);
        }
        let limbs = len.div_ceil(4);
        let modulus = limbs_from_be(n, limbs)
            .and_then(Modulus::new)
            .ok_or(RsaKeyError::Modulus)?;
        let mut prefix = vec![0xff; len - HASH_LEN];
        prefix[0] = 0x00;
        prefix[1] = 0x01;
        let digest_info_at = prefix.len() - SHA256_DIGEST_INFO.len();
        prefix[digest_info_at - 1] = 0x00;
        prefix[digest_info_at..].copy_from_slice(&SHA256_DIGEST_INFO);
        let encoding_prefix =
            limbs_from_be(&prefix, limbs - HASH_LIMBS).ok_or(RsaKeyError::Modulus)?;
        Ok(Self {
            modulus,
            exponent,
            len,
            encoding_prefix,
        })
    }

    /// The modulus length in bytes: the length of every valid signature.
    pub fn modulus_len(&self) -> usize {
        self.len
    }

    /// Whether `signature` is a valid RSASSA-PKCS1-v1_5 SHA-256 signature of `message` under this key.
    ///
    /// A signature must be exactly the modulus length and, as a number, below the modulus.
    pub fn verify_pkcs1v15_sha256(&self, message: &[u8], signature: &[u8]) -> bool {
        if signature.len() != self.len {
            return false;
        }
        let Some(s) = limbs_from_be(signature, self.modulus.limbs()) else {
            return false;
        };
        if !self.modulus.is_reduced(&s) {
            return false;
        }
        let m = self.modulus.pow(&s, self.exponent);
        let hash = Sha256::digest(message);
        // m is below n, so comparing limbs is comparing the modulus-length big-endian encodings byte for byte.
        let Some((low, high)) = m.split_at_checked(HASH_LIMBS) else {
            return false;
        };
        high == self.encoding_prefix.as_slice()
            && low.iter().zip(hash.rchunks_exact(4)).all(|(&limb, chunk)| {
                chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) == limb
            })
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// RFC 8017 §9.2 built the obvious way, byte by byte, as an oracle for the limb-level comparison.
    fn encoding(len: usize, message: &[u8]) -> Vec<u8> {
        let mut em = vec![0x00, 0x01];
        em.resize(len - HASH_LEN - SHA256_DIGEST_INFO.len() - 1, 0xff);
        em.push(0x00);
        em.extend_from_slice(&SHA256_DIGEST_INFO);
        em.extend_from_slice(&Sha256::digest(message));
        em
    }

    /// A toy key over a 512-bit modulus (below RSA sizes, but the encoding fits): n = p·q with the primes
    /// p = 2^256 − 189 and q = 2^256 − 357, e = 65537, and d computed here; signatures are made by raw
    /// exponentiation, so the test needs no key generation.
    fn toy_key() -> (rsa::BigUint, rsa::BigUint, rsa::BigUint) {
        use rsa::BigUint;
        let one = BigUint::from(1u32);
        let p = (&one << 256usize) - BigUint::from(189u32);
        let q = (&one << 256usize) - BigUint::from(357u32);
        let n = &p * &q;
        let e = BigUint::from(65_537u32);
        let phi = (&p - &one) * (&q - &one);
        // d = e⁻¹ mod φ via Fermat would need φ's factorisation; search d = (k·φ + 1)/e instead.
        let mut k = BigUint::from(1u32);
        let d = loop {
            let candidate = &k * &phi + &one;
            if (&candidate % &e) == BigUint::from(0u32) {
                break candidate / &e;
            }
            k += &one;
        };
        (n, e, d)
    }

    fn sign(n: &rsa::BigUint, d: &rsa::BigUint, em: &[u8]) -> Vec<u8> {
        let s = rsa::BigUint::from_bytes_be(em).modpow(d, n);
        let mut out = s.to_bytes_be();
        let len = n.to_bytes_be().len();
        let mut padded = vec![0; len - out.len()];
        padded.append(&mut out);
        padded
    }

    #[test]
    fn accepts_exactly_the_encoding() {
        let (n, e, d) = toy_key();
        let verifier = RsaVerifier::from_be_bytes(&n.to_bytes_be(), &e.to_bytes_be()).unwrap();
        let len = verifier.modulus_len();
        assert_eq!(len, 64);
        let good = encoding(len, b"hello");
        assert!(verifier.verify_pkcs1v15_sha256(b"hello", &sign(&n, &d, &good)));
        assert!(!verifier.verify_pkcs1v15_sha256(b"hellp", &sign(&n, &d, &good)));

        // Every single-byte change of the encoding, including the padding and the DigestInfo, is refused.
        for i in 0..len {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            if rsa::BigUint::from_bytes_be(&bad) >= n {
                continue;
            }
            assert!(
                !verifier.verify_pkcs1v15_sha256(b"hello", &sign(&n, &d, &bad)),
                "byte {i}"
            );
        }
    }

    #[test]
    fn refuses_bad_keys() {
        let (n, _, _) = toy_key();
        let n = n.to_bytes_be();
        for e in [
            &[][..],
            &[1],
            &[2],
            &[1, 0, 0],
            &[1, 0, 0, 0, 0, 0, 0, 0, 1],
        ] {
            assert_eq!(
                RsaVerifier::from_be_bytes(&n, e).unwrap_err(),
                RsaKeyError::Exponent,
                "e={e:?}"
            );
        }
        assert!(RsaVerifier::from_be_bytes(&n, &[0, 0, 3]).is_ok());
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert_eq!(
            RsaVerifier::from_be_bytes(&even, &[3]).unwrap_err(),
            RsaKeyError::Modulus
        );
        assert_eq!(
            RsaVerifier::from_be_bytes(&n[..MIN_MODULUS_LEN - 1], &[3]).unwrap_err(),
            RsaKeyError::Modulus
        );
    }
}
