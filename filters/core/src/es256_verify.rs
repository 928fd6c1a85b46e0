//! ES256 verification (ECDSA over P-256 with SHA-256, raw `r‖s` signatures) with per-key precomputation.
//!
//! p256 0.13 computes `u1·G + u2·Q` as two independent constant-time scalar multiplications, each rebuilding a
//! 16-entry table of its point and running 256 doublings: constant time protects secret scalars, but verification
//! only handles public ones. Here each point has a fixed-base comb table (Lim–Lee): Q's is built on the key's first
//! verification, G's once per process. One loop then shares 43 doublings between both scalars and adds at most one
//! table entry per scalar and step, about 43 doublings and 85 additions where p256 spends 512 and 156.
//!
//! Point and scalar arithmetic stay p256's (complete formulas, so no special cases); only the order of operations
//! is ours. The checks are those of `ecdsa::hazmat::verify_prehashed`: `r, s ∈ [1, n−1]`, `R = u1·G + u2·Q ≠ O`,
//! `x(R) mod n = r`.

// Proof for the whole module: `*`, `+`, `+=` here are p256's scalar and point operations (modular, complete
// formulas, no overflow); comb positions are `< TEETH·SPACING ≤ 258` and table indices `< 2^TEETH`, the table's
// length. The ES256 differential and Wycheproof tests exercise every path against p256's own verifier.
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::point::AffineCoordinates;
use p256::{ProjectivePoint, Scalar, U256};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::OnceLock;

/// Comb teeth: a scalar is read as `TEETH` rows of `SPACING` bits, and each step adds the table entry selected by
/// one column. 6 teeth make a 64-entry table (6 KB per key) and 43 steps.
const TEETH: usize = 6;
/// Bits per row: ⌈256 / TEETH⌉.
const SPACING: usize = 256_usize.div_ceil(TEETH);

/// An ES256 verifying key with a comb table of its point.
#[derive(Clone)]
pub struct Es256Verifier {
    /// The public point Q.
    q: ProjectivePoint,
    /// `q_comb[j] = Σ 2^(i·SPACING)·Q` over the bits `i` set in `j`. Built on the key's first verification, not
    /// when it is parsed: building costs more than a verification, every worker re-parses the whole key set on
    /// each new bundle version, and many keys of a set may not be used before the next one.
    q_comb: OnceLock<Vec<ProjectivePoint>>,
}

impl fmt::Debug for Es256Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Es256Verifier")
    }
}

impl Es256Verifier {
    /// Prepares `key` (already validated by p256: on the curve, not the identity) for verification.
    pub fn new(key: &VerifyingKey) -> Self {
        Self {
            q: ProjectivePoint::from(*key.as_affine()),
            q_comb: OnceLock::new(),
        }
    }

    /// Whether `signature` (`r‖s`, 64 bytes) is a valid ECDSA P-256 SHA-256 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        // Refuses lengths other than 64 and r or s outside [1, n−1].
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        let (r, s) = signature.split_scalars();
        let z = <Scalar as Reduce<U256>>::reduce_bytes(&Sha256::digest(message));
        let s_inv = *s.invert_vartime();
        let u1 = z * s_inv;
        let u2 = *r * s_inv;
        let q_comb = self.q_comb.get_or_init(|| comb_table(self.q));
        let point = double_scalar_mul(&u1, g_comb(), &u2, q_comb);
        if bool::from(point.is_identity()) {
            return false;
        }
        <Scalar as Reduce<U256>>::reduce_bytes(&point.to_affine().x()) == *r
    }
}

/// The comb table of `point`: entry `j` is `Σ 2^(i·SPACING)·point` over the bits `i` of `j`.
fn comb_table(point: ProjectivePoint) -> Vec<ProjectivePoint> {
    let mut teeth = vec![point];
    let mut tooth = point;
    for _ in 1..TEETH {
        for _ in 0..SPACING {
            tooth = tooth.double();
        }
        teeth.push(tooth);
    }
    let mut table = vec![ProjectivePoint::IDENTITY; 1 << TEETH];
    for j in 1..table.len() {
        // Entry j is entry j-without-its-top-bit plus that bit's tooth.
        let top = j.ilog2() as usize;
        table[j] = table[j ^ (1 << top)] + teeth[top];
    }
    table
}

/// The comb table of the generator, computed on first use and shared by every key of the process.
fn g_comb() -> &'static [ProjectivePoint] {
    static G_COMB: OnceLock<Vec<ProjectivePoint>> = OnceLock::new();
    G_COMB.get_or_init(|| comb_table(ProjectivePoint::GENERATOR))
}

/// `a·P + b·Q` given the comb tables of P and Q. Variable time.
fn double_scalar_mul(
    a: &Scalar,
    p_comb: &[ProjectivePoint],
    b: &Scalar,
    q_comb: &[ProjectivePoint],
) -> ProjectivePoint {
    let (a, b) = (words(a), words(b));
    let mut acc = ProjectivePoint::IDENTITY;
    for column in (0..SPACING).rev() {
        acc = acc.double();
        // p256's addition formulas are complete: doubling and the identity need no special case.
        for (scalar, comb) in [(&a, p_comb), (&b, q_comb)] {
            // Index 0 (the identity) is skipped: a cheap test where an addition is not.
            match comb_index(scalar, column) {
                0 => {}
                index => {
                    if let Some(entry) = comb.get(index) {
                        acc += entry;
                    }
                }
            }
        }
    }
    acc
}

/// A scalar as little-endian 64-bit words.
fn words(k: &Scalar) -> [u64; 4] {
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().zip(k.to_bytes().rchunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_be_bytes(bytes);
    }
    words
}

/// The table index for one column: bit `i·SPACING + column` of the scalar becomes bit `i` of the index.
fn comb_index(words: &[u64; 4], column: usize) -> usize {
    (0..TEETH).fold(0, |index, tooth| {
        let bit = tooth * SPACING + column;
        let set = words
            .get(bit / 64)
            .is_some_and(|w| w >> (bit % 64) & 1 == 1);
        index | usize::from(set) << tooth
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use p256::elliptic_curve::ops::LinearCombination;

    /// Deterministic scalars, including the extremes.
    fn scalars() -> Vec<Scalar> {
        let mut all = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, -Scalar::from(2u64)];
        let mut x = Scalar::from(0x1234_5678_9abc_def0u64);
        for i in 0..40u64 {
            x = x * x + Scalar::from(i);
            all.push(x);
        }
        // 2^k for every k: long runs of zeros and a single digit.
        let mut power = Scalar::ONE;
        for _ in 0..256 {
            all.push(power);
            power = power.double();
        }
        all
    }

    #[test]
    fn double_scalar_mul_matches_p256() {
        let q = ProjectivePoint::GENERATOR * Scalar::from(0xdead_beefu64);
        let q_comb = comb_table(q);
        let all = scalars();
        for (a, b) in all.iter().zip(all.iter().rev().chain(all.iter())) {
            let want = ProjectivePoint::lincomb(&ProjectivePoint::GENERATOR, a, &q, b);
            assert_eq!(double_scalar_mul(a, g_comb(), b, &q_comb), want);
        }
        // Q = G and a = −b: the sum is the identity.
        let five = Scalar::from(5u64);
        assert!(bool::from(
            double_scalar_mul(&five, g_comb(), &-five, g_comb()).is_identity()
        ));
    }
}
