//! Variable-time inversion modulo p = 2^255 − 19 by Bernstein–Yang divsteps ("Fast constant-time gcd computation
//! and modular inversion", 2019, §11–12), batched 30 at a time on signed 30-bit limbs so that every product fits
//! in 64 bits, which wasm32 multiplies natively.
//!
//! Fermat inversion (`z^(p−2)`, 254 squarings) is a sixth of an Ed25519 verification; this takes a fraction of
//! that. It runs in variable time, which is fine for verification: every input is public.
//!
//! Outline: with `f = p`, `g = z`, `d = 0`, `e = 1`, the invariants `f ≡ d·z` and `g ≡ e·z (mod p)` hold
//! throughout. Each batch computes, from the low 30 bits of f and g alone, the 2×2 matrix `t` of the next 30
//! divsteps (scaled by 2^30), then sets `(f, g) ← t·(f, g) / 2^30` (exact) and `(d, e) ← t·(d, e) / 2^30 (mod p)`.
//! When g reaches 0, f is ±gcd(p, z) = ±1, so ±d is the inverse.

use super::field::Fe;

/// Bits per limb and per batch of divsteps.
const BITS: u32 = 30;
const MASK: i64 = (1 << BITS) - 1;
const LIMBS: usize = 9;

/// p = 2^255 − 19 as signed 30-bit limbs: −19 + 2^15·2^240. Sparse, so most of its products vanish.
const P: [i64; LIMBS] = [-19, 0, 0, 0, 0, 0, 0, 0, 1 << 15];

/// p^(−1) mod 2^30, i.e. (−19)^(−1): Newton's iteration doubles the correct low bits from 3 (any odd x is its own
/// inverse mod 8).
const P_INV: i64 = {
    let p0 = (-19i64) as u64;
    let mut x = p0;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(p0.wrapping_mul(x)));
        i += 1;
    }
    (x & MASK as u64) as i64
};

/// A 30-divstep transition matrix `[[u, v], [q, r]]`: `2^30·f' = u·f + v·g`, `2^30·g' = q·f + r·g`.
struct Transition {
    u: i64,
    v: i64,
    q: i64,
    r: i64,
}

/// `1/z` for `z ≠ 0`, computed in variable time; `0` for `0`.
pub(super) fn invert_vartime(z: &Fe) -> Fe {
    let mut f = P;
    let mut g = to_limbs(&z.to_bytes());
    let (mut d, mut e) = ([0i64; LIMBS], {
        let mut one = [0i64; LIMBS];
        one[0] = 1;
        one
    });
    // eta = −delta of the paper; delta starts at 1.
    let mut eta = -1i32;
    // 0 < z < p needs at most ~740 divsteps (the paper's bound for 256 bits); the loop ends far sooner on average.
    for _ in 0..25 {
        let t;
        (eta, t) = divsteps(eta, low_bits(&f), low_bits(&g));
        update_de(&mut d, &mut e, &t);
        update_fg(&mut f, &mut g, &t);
        if g.iter().all(|&limb| limb == 0) {
            break;
        }
    }
    // f = ±1: the sign is that of its top limb (lower limbs are kept in [0, 2^30)).
    if f[LIMBS - 1] < 0 {
        for limb in &mut d {
            *limb = -*limb;
        }
    }
    Fe::from_bytes(&to_bytes(reduce(d)))
}

/// The low 32 bits of a limb vector, as a divstep batch needs them (only the low 30 are used).
fn low_bits(x: &[i64; LIMBS]) -> u32 {
    x[0].wrapping_add(x[1] << BITS) as u32
}

/// The transition matrix of 30 divsteps from `eta` and the low bits of f (odd) and g, and the new eta.
///
/// In a divstep, with f odd: if `eta < 0` and g is odd, `(eta, f, g) ← (−eta − 1, g, (g − f)/2)`; else if g is
/// odd, `(eta, f, g) ← (eta − 1, f, (g + f)/2)`; else `(eta, f, g) ← (eta − 1, f, g/2)`. Here runs of even g are
/// done at once by counting trailing zeros, and so are up to `eta + 1` steps without a swap, by adding the multiple
/// of f that clears the low bits of g. Instead of halving g, the row of f in the matrix is doubled, so all values
/// stay integers: `2^n·f_n = u·f + v·g` and `2^n·g_n = q·f + r·g`, each entry at most 2^30 in magnitude after 30
/// steps. Arithmetic is modulo 2^32, which is exact for those final entries.
fn divsteps(mut eta: i32, f0: u32, g0: u32) -> (i32, Transition) {
    let (mut u, mut v, mut q, mut r) = (1u32, 0u32, 0u32, 1u32);
    let (mut f, mut g) = (f0, g0);
    let mut f_inv = neg_inverse(f);
    // Divsteps left in this batch.
    let mut left = BITS;
    loop {
        // g's trailing zeros, at most `left` of them (a sentinel bit at `left`).
        let zeros = (g | u32::MAX << left).trailing_zeros();
        g >>= zeros;
        u <<= zeros;
        v <<= zeros;
        eta -= zeros as i32;
        left -= zeros;
        if left == 0 {
            break;
        }
        // g is odd.
        if eta < 0 {
            eta = -eta;
            (f, g) = (g, f.wrapping_neg());
            (u, q) = (q, u.wrapping_neg());
            (v, r) = (r, v.wrapping_neg());
            f_inv = neg_inverse(f);
        }
        // The next min(eta + 1, left) divsteps do not swap: clear that many low bits of g with g += w·f.
        let limit = (eta as u32 + 1).min(left);
        let w = g.wrapping_mul(f_inv) & (u32::MAX >> (32 - limit));
        g = g.wrapping_add(f.wrapping_mul(w));
        q = q.wrapping_add(u.wrapping_mul(w));
        r = r.wrapping_add(v.wrapping_mul(w));
    }
    let signed = |x: u32| i64::from(x as i32);
    (
        eta,
        Transition {
            u: signed(u),
            v: signed(v),
            q: signed(q),
            r: signed(r),
        },
    )
}

/// `−1/f mod 2^32` for odd f, by Newton's iteration (3 → 6 → 12 → 24 → 48 correct bits).
fn neg_inverse(f: u32) -> u32 {
    let mut x = f;
    for _ in 0..4 {
        x = x.wrapping_mul(2u32.wrapping_sub(f.wrapping_mul(x)));
    }
    x.wrapping_neg()
}

/// `(f, g) ← t·(f, g) / 2^30`, exact: t was built so that the low 30 bits of both sums are zero.
fn update_fg(f: &mut [i64; LIMBS], g: &mut [i64; LIMBS], t: &Transition) {
    let mut cf = t.u * f[0] + t.v * g[0];
    let mut cg = t.q * f[0] + t.r * g[0];
    cf >>= BITS;
    cg >>= BITS;
    for i in 1..LIMBS {
        cf += t.u * f[i] + t.v * g[i];
        cg += t.q * f[i] + t.r * g[i];
        f[i - 1] = cf & MASK;
        g[i - 1] = cg & MASK;
        cf >>= BITS;
        cg >>= BITS;
    }
    f[LIMBS - 1] = cf;
    g[LIMBS - 1] = cg;
}

/// `(d, e) ← (t·(d, e) + p·(md, me)) / 2^30` with md, me making the sums divisible, so the results are congruent
/// to `t·(d, e) / 2^30 (mod p)`. Keeps d and e in (−2p, p): first d and e are moved into (−p, p) by adding p to a
/// negative one (folded into md, me), which bounds `|t·(d, e)|` by 2^30·p; the correction then subtracts less
/// than 2^30·p.
fn update_de(d: &mut [i64; LIMBS], e: &mut [i64; LIMBS], t: &Transition) {
    let d_negative = i64::from(d[LIMBS - 1] < 0);
    let e_negative = i64::from(e[LIMBS - 1] < 0);
    let mut md = t.u * d_negative + t.v * e_negative;
    let mut me = t.q * d_negative + t.r * e_negative;
    let mut cd = t.u * d[0] + t.v * e[0];
    let mut ce = t.q * d[0] + t.r * e[0];
    // Subtract from md the c in [0, 2^30) with cd + (md − c)·p ≡ 0 (mod 2^30), i.e. c = (cd·p⁻¹ + md) mod 2^30.
    md -= (cd.wrapping_mul(P_INV) + md) & MASK;
    me -= (ce.wrapping_mul(P_INV) + me) & MASK;
    cd += md * P[0];
    ce += me * P[0];
    cd >>= BITS;
    ce >>= BITS;
    for i in 1..LIMBS {
        cd += t.u * d[i] + t.v * e[i] + md * P[i];
        ce += t.q * d[i] + t.r * e[i] + me * P[i];
        d[i - 1] = cd & MASK;
        e[i - 1] = ce & MASK;
        cd >>= BITS;
        ce >>= BITS;
    }
    d[LIMBS - 1] = cd;
    e[LIMBS - 1] = ce;
}

/// Little-endian bytes (a value below 2^256) as 30-bit limbs.
fn to_limbs(bytes: &[u8; 32]) -> [i64; LIMBS] {
    let mut limbs = [0i64; LIMBS];
    for (i, limb) in limbs.iter_mut().enumerate() {
        let mut value = 0u64;
        // Limb i is bits 30i .. 30i + 29, inside bytes 30i/8 .. 30i/8 + 4.
        let first = i * BITS as usize / 8;
        for (k, byte) in bytes.iter().skip(first).take(5).enumerate() {
            value |= u64::from(*byte) << (8 * k);
        }
        *limb = ((value >> (i * BITS as usize % 8)) as i64) & MASK;
    }
    limbs
}

/// Carries so that limbs 0‥7 are in [0, 2^30) and the top limb holds the sign.
fn carry(x: &mut [i64; LIMBS]) {
    for i in 0..LIMBS - 1 {
        x[i + 1] += x[i] >> BITS;
        x[i] &= MASK;
    }
}

/// `x mod p` in [0, p), for x in (−2p, 2p) with limbs below 2^31 in magnitude.
fn reduce(mut x: [i64; LIMBS]) -> [i64; LIMBS] {
    carry(&mut x);
    while x[LIMBS - 1] < 0 {
        x[0] += P[0];
        x[LIMBS - 1] += P[LIMBS - 1];
        carry(&mut x);
    }
    // x ≥ p exactly when x + 19 ≥ 2^255, i.e. when bit 15 of the top limb of x + 19 is set.
    loop {
        let mut plus19 = x;
        plus19[0] += 19;
        carry(&mut plus19);
        if plus19[LIMBS - 1] < 1 << 15 {
            return x;
        }
        plus19[LIMBS - 1] -= 1 << 15;
        x = plus19;
    }
}

/// Limbs of a value in [0, 2^255) as little-endian bytes.
fn to_bytes(limbs: [i64; LIMBS]) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    let (mut acc, mut acc_bits, mut out) = (0u64, 0u32, 0usize);
    for limb in limbs {
        acc |= (limb as u64) << acc_bits;
        acc_bits += BITS;
        while acc_bits >= 8 {
            if let Some(byte) = bytes.get_mut(out) {
                *byte = acc as u8;
            }
            out += 1;
            acc >>= 8;
            acc_bits -= 8;
        }
    }
    if let Some(byte) = bytes.get_mut(out) {
        *byte = acc as u8;
    }
    bytes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn from_u64(n: u64) -> Fe {
        let mut bytes = [0; 32];
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        Fe::from_bytes(&bytes)
    }

    fn check(z: &Fe) {
        let inverse = invert_vartime(z);
        assert_eq!(
            inverse.to_bytes(),
            z.invert().to_bytes(),
            "{:02x?}",
            z.to_bytes()
        );
    }

    #[test]
    fn p_inv() {
        assert_eq!((P_INV * -19) & MASK, 1);
    }

    #[test]
    fn limbs_round_trip() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37) ^ 0x5a;
        }
        bytes[31] &= 0x7f;
        assert_eq!(to_bytes(to_limbs(&bytes)), bytes);
    }

    #[test]
    fn matches_fermat_inversion() {
        assert_eq!(invert_vartime(&Fe::ZERO).to_bytes(), [0; 32]);
        for n in 1..300u64 {
            check(&from_u64(n));
            check(&from_u64(n).neg());
        }
        // Powers of two and their neighbours: long runs of zero or one bits.
        let mut power = Fe::ONE;
        for _ in 0..256 {
            check(&power);
            check(&power.add(&Fe::ONE).carry());
            check(&power.sub(&Fe::ONE).carry());
            power = power.add(&power).carry();
        }
        // Pseudo-random elements.
        let mut x = from_u64(0x0123_4567_89ab_cdef);
        for _ in 0..3000 {
            x = x.square().add(&Fe::SQRT_M1).carry();
            check(&x);
        }
    }
}
