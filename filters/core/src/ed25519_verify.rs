//! Ed25519 verification (RFC 8032, as ed25519-dalek 2's `VerifyingKey::verify` does it) with per-key precomputation.
//!
//! ed25519-dalek computes `[s]B − [k]A` with a double-scalar ladder: 253 doublings shared by both scalars, a small
//! table of A rebuilt for every signature, and, without curve25519-dalek's `precomputed-tables` feature (keymesh's
//! build), one of B as well. Here A and B each have a fixed-base table, A's built on the key's first verification and
//! B's once per process (per wasm VM). A scalar is read as 43 signed base-64 digits; digit `i = 4q + r` of both
//! scalars is added from row `q` of its table during round `r`, and 6 doublings separate the 4 rounds. That is about
//! 86 additions and 18 doublings where ed25519-dalek spends ~70 additions and 253 doublings. The final comparison
//! with R inverts a field element by divsteps (`invert.rs`) rather than by a 254-squaring exponentiation.
//!
//! The accept/reject rules are exactly ed25519-dalek's `verify` (not `verify_strict`):
//! - the signature is 64 bytes and its `s` is canonical (`s < ℓ`);
//! - the key is any 32 bytes curve25519-dalek decompresses: a non-canonical y and small-order points are accepted;
//! - `k = SHA-512(R ‖ A ‖ M) mod ℓ`, hashing the key bytes as they were given;
//! - the check is cofactorless: the encoding of `[s]B − [k]A` must equal R byte for byte, so a non-canonical R
//!   never verifies.
//!
//! Field arithmetic is fiat-crypto's (`field.rs`); point formulas are curve25519-dalek's (`point.rs`). Only
//! the order of operations is ours; everything here handles public values, so it is variable-time.

// Proof for the whole module (and `field`, `point`, `invert`): operators here are on field elements, scalars and
// points (modular, no overflow), on fiat-crypto's limbs (its generator proves the bounds), and on digit and table
// positions bounded by the constants below — a 32-byte scalar gives DIGITS digits of WINDOW bits, each table has
// ROWS × ROW_LEN entries and every index is `< ROWS·ROW_LEN` by construction. The Ed25519 differential and
// Wycheproof tests exercise every path against ed25519-dalek.
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

mod field;
mod invert;
mod point;

use curve25519_dalek::scalar::Scalar;
use point::{batch_to_affine_niels, AffineNiels, Extended};
use sha2::{Digest, Sha512};
use std::fmt;
use std::sync::OnceLock;

/// Bits per signed digit. Each table row holds the multiples 1‥2^(WINDOW−1) of its point.
///
/// Measured in V8 (µs per verification, table size per key): WINDOW 4 / ROUNDS 2 and 5 / 3 were 21 % and 7 % slower
/// with 30 and 32 KiB tables; 6 / 3 was 5 % faster with 56 KiB. 6 / 4 is 41 KiB.
const WINDOW: usize = 6;
/// Rounds of additions; `WINDOW` doublings separate consecutive rounds. More rounds, smaller tables.
const ROUNDS: usize = 4;
/// Digits of a scalar below 2^253 (both `s` and `k` are below ℓ < 2^253).
const DIGITS: usize = 253_usize.div_ceil(WINDOW);
/// Table rows: row `q` holds multiples of `2^(WINDOW·ROUNDS·q)·P`.
const ROWS: usize = DIGITS.div_ceil(ROUNDS);
/// Entries per row.
const ROW_LEN: usize = 1 << (WINDOW - 1);

/// The standard encoding of the base point B.
const BASEPOINT: [u8; 32] = [
    0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
    0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
];

/// Bytes of one fixed-base table (one per key): 11 rows of 32 affine points of three field elements.
pub const TABLE_BYTES: usize = ROWS * ROW_LEN * std::mem::size_of::<AffineNiels>();

/// An Ed25519 verifying key with a fixed-base table of −A.
#[derive(Clone)]
pub struct Ed25519Verifier {
    /// A as given, which is what `k` hashes.
    encoded: [u8; 32],
    /// −A.
    minus_a: Extended,
    /// The fixed-base table of −A ([`TABLE_BYTES`] bytes), built on the key's first verification rather than when
    /// it is parsed: building costs several verifications, every worker re-parses the whole key set on each new
    /// bundle version, and many keys of a set may not be used before the next one.
    table: OnceLock<FixedBaseTable>,
}

impl fmt::Debug for Ed25519Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ed25519Verifier")
    }
}

impl Ed25519Verifier {
    /// The verifier for the 32-byte public key `encoded`, or `None` where ed25519-dalek's
    /// `VerifyingKey::from_bytes` refuses it too (no point has that y).
    pub fn from_bytes(encoded: &[u8; 32]) -> Option<Self> {
        Some(Self {
            encoded: *encoded,
            minus_a: Extended::decompress(encoded)?.neg(),
            table: OnceLock::new(),
        })
    }

    /// Whether `signature` (`R‖s`, 64 bytes) is a valid Ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let (r, s) = signature.split_at(32);
        let (Ok(r), Ok(s)) = (<&[u8; 32]>::try_from(r), <[u8; 32]>::try_from(s)) else {
            return false;
        };
        if Option::<Scalar>::from(Scalar::from_canonical_bytes(s)).is_none() {
            return false;
        }
        let hash = Sha512::new()
            .chain_update(r)
            .chain_update(self.encoded)
            .chain_update(message)
            .finalize();
        let k = Scalar::from_bytes_mod_order_wide(&hash.into());
        let a_table = self.table.get_or_init(|| FixedBaseTable::new(self.minus_a));
        let point = double_scalar_mul(&s, basepoint_table(), &k.to_bytes(), a_table);
        point.has_encoding(r)
    }
}

/// Multiples of one point: entry `q·ROW_LEN + j` is `(j + 1)·2^(WINDOW·ROUNDS·q)·P`.
#[derive(Clone)]
struct FixedBaseTable(Vec<AffineNiels>);

impl FixedBaseTable {
    fn new(point: Extended) -> Self {
        let mut points = Vec::with_capacity(ROWS * ROW_LEN);
        let mut row_base = point;
        for q in 0..ROWS {
            if q > 0 {
                row_base = row_base.double_k((WINDOW * ROUNDS) as u32);
            }
            let addend = row_base.to_projective_niels();
            let mut multiple = row_base;
            points.push(multiple);
            for _ in 1..ROW_LEN {
                multiple = multiple.add(&addend);
                points.push(multiple);
            }
        }
        Self(batch_to_affine_niels(&points))
    }

    fn row(&self, q: usize) -> &[AffineNiels] {
        self.0
            .get(q * ROW_LEN..(q + 1) * ROW_LEN)
            .unwrap_or_default()
    }
}

/// B's table, computed on first use and shared by every key of the process (of the wasm VM, in a filter).
fn basepoint_table() -> &'static FixedBaseTable {
    static TABLE: OnceLock<FixedBaseTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        // The base point's encoding is a constant that decompresses.
        let b = Extended::decompress(&BASEPOINT).unwrap_or(Extended::IDENTITY);
        FixedBaseTable::new(b)
    })
}

/// `a·P + b·Q` given the tables of P and Q; `a` and `b` are little-endian and below 2^253. Variable time.
fn double_scalar_mul(
    a: &[u8; 32],
    p_table: &FixedBaseTable,
    b: &[u8; 32],
    q_table: &FixedBaseTable,
) -> Extended {
    let (a, b) = (signed_digits(a), signed_digits(b));
    let mut acc = Extended::IDENTITY;
    for round in (0..ROUNDS).rev() {
        for q in 0..ROWS {
            let i = q * ROUNDS + round;
            for (digits, table) in [(&a, p_table), (&b, q_table)] {
                let digit = digits.get(i).copied().unwrap_or(0);
                let row = table.row(q);
                // Digit 0 adds nothing: skipping it is a cheap test where an addition is not.
                if let Some(entry) = row.get(usize::from(digit.unsigned_abs()).wrapping_sub(1)) {
                    acc = if digit > 0 {
                        acc.add_affine(entry)
                    } else {
                        acc.sub_affine(entry)
                    };
                }
            }
        }
        if round > 0 {
            acc = acc.double_k(WINDOW as u32);
        }
    }
    acc
}

/// `scalar` (little-endian, below 2^253) as [`DIGITS`] digits `d_i ∈ [−2^(WINDOW−1), 2^(WINDOW−1)]` with
/// `scalar = Σ d_i·2^(WINDOW·i)`.
fn signed_digits(scalar: &[u8; 32]) -> [i8; DIGITS] {
    let mut digits = [0i8; DIGITS];
    let mut carry = 0u32;
    for (i, digit) in digits.iter_mut().enumerate() {
        let bit = i * WINDOW;
        let byte = |at: usize| u32::from(scalar.get(at).copied().unwrap_or(0));
        let window = ((byte(bit / 8) | byte(bit / 8 + 1) << 8) >> (bit % 8)) & ((1 << WINDOW) - 1);
        let value = window + carry;
        carry = u32::from(value > ROW_LEN as u32);
        *digit = (value as i32 - ((carry as i32) << WINDOW)) as i8;
    }
    // No carry is left over: the top digit covers at most WINDOW − 1 bits of a scalar below 2^253.
    digits
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::traits::IsIdentity;

    /// Deterministic scalars below ℓ, including the extremes and long runs of equal bits.
    fn scalars() -> Vec<Scalar> {
        let mut all = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, -Scalar::from(2u64)];
        let mut x = Scalar::from(0x1234_5678_9abc_def0u64);
        for i in 0..30u64 {
            x = x * x + Scalar::from(i);
            all.push(x);
        }
        let mut power = Scalar::ONE;
        for _ in 0..253 {
            all.push(power);
            all.push(power - Scalar::ONE);
            power += power;
        }
        all
    }

    fn digits_value(digits: &[i8; DIGITS]) -> Scalar {
        let radix = Scalar::from(1u64 << WINDOW);
        digits.iter().rev().fold(Scalar::ZERO, |acc, &d| {
            let magnitude = Scalar::from(u64::from(d.unsigned_abs()));
            acc * radix + if d < 0 { -magnitude } else { magnitude }
        })
    }

    #[test]
    fn shape_matches_the_documentation() {
        assert_eq!((DIGITS, ROWS, ROW_LEN), (43, 11, 32));
        assert_eq!(TABLE_BYTES, 11 * 32 * 3 * 40);
    }

    #[test]
    fn signed_digits_represent_the_scalar() {
        let mut max = [0xff; 32];
        max[31] = 0x1f; // 2^253 − 1, above every scalar that reaches here
        let bound = 1i8 << (WINDOW - 1);
        for scalar in scalars() {
            let digits = signed_digits(&scalar.to_bytes());
            assert!(digits.iter().all(|d| (-bound..=bound).contains(d)));
            assert_eq!(digits_value(&digits), scalar);
        }
        let digits = signed_digits(&max);
        let mut top = Scalar::from(1u64 << 63);
        for _ in 0..190 {
            top += top;
        }
        // 2^253 − 1 = 2^253 − 1 (mod ℓ), and the digits stay in range.
        assert_eq!(digits_value(&digits), top - Scalar::ONE);
        assert!(digits.iter().all(|d| (-bound..=bound).contains(d)));
    }

    fn dalek(point: &Extended) -> EdwardsPoint {
        CompressedEdwardsY(point.compress()).decompress().unwrap()
    }

    #[test]
    fn decompression_matches_curve25519_dalek() {
        let b = Extended::decompress(&BASEPOINT).unwrap();
        assert_eq!(
            dalek(&b),
            curve25519_dalek::constants::ED25519_BASEPOINT_POINT
        );
        for seed in 0u8..=255 {
            let mut bytes = [seed.wrapping_mul(97); 32];
            bytes[0] = seed;
            bytes[31] ^= seed << 4;
            let ours = Extended::decompress(&bytes);
            let theirs = CompressedEdwardsY(bytes).decompress();
            assert_eq!(ours.is_some(), theirs.is_some(), "{bytes:02x?}");
            if let (Some(ours), Some(theirs)) = (ours, theirs) {
                assert_eq!(ours.compress(), theirs.compress().0);
            }
        }
    }

    #[test]
    fn double_scalar_mul_matches_curve25519_dalek() {
        let b = Extended::decompress(&BASEPOINT).unwrap();
        // A point with a torsion component: [x]B plus a point of order 8.
        let order8 = CompressedEdwardsY([
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ])
        .decompress()
        .unwrap();
        assert!(order8.is_small_order() && !order8.is_identity());
        let x = Scalar::from(0xdead_beefu64);
        let q_dalek = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * x + order8;
        let q = Extended::decompress(&q_dalek.compress().0).unwrap();
        let (b_table, q_table) = (FixedBaseTable::new(b), FixedBaseTable::new(q));
        let all = scalars();
        for (a, c) in all.iter().zip(all.iter().rev().chain(all.iter())) {
            let want = EdwardsPoint::vartime_double_scalar_mul_basepoint(c, &q_dalek, a);
            let ours = double_scalar_mul(&a.to_bytes(), &b_table, &c.to_bytes(), &q_table);
            assert_eq!(ours.compress(), want.compress().0);
            assert!(ours.has_encoding(&want.compress().0));
        }
        assert!(std::ptr::eq(basepoint_table(), basepoint_table()));
        let five = Scalar::from(5u64);
        let zero = double_scalar_mul(&five.to_bytes(), &b_table, &(-five).to_bytes(), &b_table);
        assert_eq!(zero.compress(), EdwardsPoint::default().compress().0);
    }

    #[test]
    fn has_encoding_is_compress_equality() {
        let b = Extended::decompress(&BASEPOINT).unwrap();
        let p = b.double_k(3).add(&b.to_projective_niels());
        let good = p.compress();
        assert!(p.has_encoding(&good));
        // The other sign of x, another y, and y + p (a non-canonical encoding of the same y) are all refused.
        let mut flipped = good;
        flipped[31] ^= 0x80;
        assert!(!p.has_encoding(&flipped));
        let mut other = good;
        other[0] ^= 1;
        assert!(!p.has_encoding(&other));
        // The identity (0, 1): y = 1 is also encoded by p + 1, which compress never produces.
        let mut one = [0; 32];
        one[0] = 1;
        assert!(Extended::IDENTITY.has_encoding(&one));
        let mut p_plus_one = [0xff; 32];
        p_plus_one[0] = 0xee;
        p_plus_one[31] = 0x7f;
        assert!(!Extended::IDENTITY.has_encoding(&p_plus_one));
        // x = 0 with the sign bit set: not what compress produces.
        one[31] |= 0x80;
        assert!(!Extended::IDENTITY.has_encoding(&one));
    }
}
