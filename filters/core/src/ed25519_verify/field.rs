//! Arithmetic modulo p = 2^255 − 19 on fiat-crypto's 32-bit code: ten limbs of 26 and 25 bits, 32×32→64-bit
//! products. wasm32 has 64-bit multiplication but no 64×64→128, which is why curve25519-dalek's 64-bit backend runs
//! at half the speed of its 32-bit one there.
//!
//! fiat-crypto's routines are machine-checked and track limb bounds in two types: [`Fe`] (tight, the result of a
//! multiplication or a carry) and [`Loose`] (the sum or difference of two tight elements). A multiplication takes
//! loose inputs, so `(a + b)·c` needs no carry; adding a loose element to anything needs one first.

use fiat_crypto::curve25519_32::{
    fiat_25519_add, fiat_25519_carry, fiat_25519_carry_mul, fiat_25519_carry_square,
    fiat_25519_from_bytes, fiat_25519_loose_field_element, fiat_25519_opp, fiat_25519_sub,
    fiat_25519_tight_field_element, fiat_25519_to_bytes,
};

/// A field element with tight limb bounds.
#[derive(Clone, Copy)]
pub(super) struct Fe(fiat_25519_tight_field_element);

/// A field element with loose limb bounds: a sum, difference or negation not yet carried.
#[derive(Clone, Copy)]
pub(super) struct Loose(fiat_25519_loose_field_element);

impl Fe {
    pub(super) const ZERO: Fe = Fe(fiat_25519_tight_field_element([0; 10]));
    pub(super) const ONE: Fe = Fe(fiat_25519_tight_field_element([
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]));
    /// The curve constant d = −121665/121666.
    pub(super) const D: Fe = Fe(fiat_25519_tight_field_element([
        56195235, 13857412, 51736253, 6949390, 114729, 24766616, 60832955, 30306712, 48412415,
        21499315,
    ]));
    /// 2·d.
    pub(super) const D2: Fe = Fe(fiat_25519_tight_field_element([
        45281625, 27714825, 36363642, 13898781, 229458, 15978800, 54557047, 27058993, 29715967,
        9444199,
    ]));
    /// A square root of −1.
    pub(super) const SQRT_M1: Fe = Fe(fiat_25519_tight_field_element([
        34513072, 25610706, 9377949, 3500415, 12389472, 33281959, 41962654, 31548777, 326685,
        11406482,
    ]));

    /// The element whose little-endian encoding is `bytes`, ignoring the top bit; values from p to 2^255 − 1 are
    /// taken modulo p, as curve25519-dalek does.
    pub(super) fn from_bytes(bytes: &[u8; 32]) -> Fe {
        let mut masked = *bytes;
        masked[31] &= 0x7f;
        let mut out = fiat_25519_tight_field_element([0; 10]);
        fiat_25519_from_bytes(&mut out, &masked);
        Fe(out)
    }

    /// The canonical (fully reduced) little-endian encoding.
    pub(super) fn to_bytes(self) -> [u8; 32] {
        let mut out = [0; 32];
        fiat_25519_to_bytes(&mut out, &self.0);
        out
    }

    /// Whether the canonical value is odd, RFC 8032's sign of x.
    pub(super) fn is_negative(self) -> bool {
        self.to_bytes()[0] & 1 == 1
    }

    /// The same value as a loose element (free).
    pub(super) fn loose(self) -> Loose {
        Loose(fiat_25519_loose_field_element(self.0 .0))
    }

    pub(super) fn add(&self, rhs: &Fe) -> Loose {
        let mut out = fiat_25519_loose_field_element([0; 10]);
        fiat_25519_add(&mut out, &self.0, &rhs.0);
        Loose(out)
    }

    pub(super) fn sub(&self, rhs: &Fe) -> Loose {
        let mut out = fiat_25519_loose_field_element([0; 10]);
        fiat_25519_sub(&mut out, &self.0, &rhs.0);
        Loose(out)
    }

    pub(super) fn neg(&self) -> Fe {
        let mut out = fiat_25519_loose_field_element([0; 10]);
        fiat_25519_opp(&mut out, &self.0);
        Loose(out).carry()
    }

    pub(super) fn mul(&self, rhs: &Fe) -> Fe {
        self.loose().mul(&rhs.loose())
    }

    pub(super) fn square(&self) -> Fe {
        self.loose().square()
    }

    /// `self^(2^k)`.
    fn pow2k(&self, k: u32) -> Fe {
        let mut x = *self;
        for _ in 0..k {
            x = x.square();
        }
        x
    }

    /// `(self^(2^250 − 1), self^11)`, the shared head of inversion and square roots (ref10's addition chain).
    fn pow22501(&self) -> (Fe, Fe) {
        let t0 = self.square();
        let t1 = t0.square().square();
        let t2 = self.mul(&t1);
        let t3 = t0.mul(&t2);
        let t4 = t3.square();
        let t5 = t2.mul(&t4);
        let t6 = t5.pow2k(5);
        let t7 = t6.mul(&t5);
        let t8 = t7.pow2k(10);
        let t9 = t8.mul(&t7);
        let t10 = t9.pow2k(20);
        let t11 = t10.mul(&t9);
        let t12 = t11.pow2k(10);
        let t13 = t12.mul(&t7);
        let t14 = t13.pow2k(50);
        let t15 = t14.mul(&t13);
        let t16 = t15.pow2k(100);
        let t17 = t16.mul(&t15);
        let t18 = t17.pow2k(50);
        let t19 = t18.mul(&t13);
        (t19, t3)
    }

    /// `self^(p − 2)`: the inverse, or zero for zero.
    pub(super) fn invert(&self) -> Fe {
        let (t19, t3) = self.pow22501();
        t19.pow2k(5).mul(&t3)
    }

    /// The inverse of a public value, in variable time (see [`super::invert`]). One multiplication checks it;
    /// should that ever fail, Fermat's inversion answers instead.
    pub(super) fn invert_vartime(&self) -> Fe {
        let inverse = super::invert::invert_vartime(self);
        if inverse.mul(self).equals(&Fe::ONE) {
            inverse
        } else {
            self.invert()
        }
    }

    /// `self^((p − 5)/8)`.
    fn pow_p58(&self) -> Fe {
        let (t19, _) = self.pow22501();
        self.mul(&t19.pow2k(2))
    }

    /// Whether the two elements are equal modulo p.
    pub(super) fn equals(&self, rhs: &Fe) -> bool {
        self.to_bytes() == rhs.to_bytes()
    }

    /// `sqrt(u/v)` with a non-negative (even) result, or `None` when u/v is not a square; curve25519-dalek's
    /// `sqrt_ratio_i` restricted to the case decompression uses (`v ≠ 0`).
    pub(super) fn sqrt_ratio(u: &Fe, v: &Fe) -> Option<Fe> {
        let v3 = v.square().mul(v);
        let v7 = v3.square().mul(v);
        let mut r = u.mul(&v3).mul(&u.mul(&v7).pow_p58());
        let check = v.mul(&r.square());
        let minus_u = u.neg();
        let correct_sign = check.equals(u);
        let flipped_sign = check.equals(&minus_u);
        let flipped_sign_i = check.equals(&minus_u.mul(&Fe::SQRT_M1));
        if flipped_sign || flipped_sign_i {
            r = r.mul(&Fe::SQRT_M1);
        }
        if r.is_negative() {
            r = r.neg();
        }
        (correct_sign || flipped_sign).then_some(r)
    }
}

impl Loose {
    pub(super) fn mul(&self, rhs: &Loose) -> Fe {
        let mut out = fiat_25519_tight_field_element([0; 10]);
        fiat_25519_carry_mul(&mut out, &self.0, &rhs.0);
        Fe(out)
    }

    pub(super) fn square(&self) -> Fe {
        let mut out = fiat_25519_tight_field_element([0; 10]);
        fiat_25519_carry_square(&mut out, &self.0);
        Fe(out)
    }

    pub(super) fn carry(&self) -> Fe {
        let mut out = fiat_25519_tight_field_element([0; 10]);
        fiat_25519_carry(&mut out, &self.0);
        Fe(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn small(n: u32) -> Fe {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        Fe::from_bytes(&bytes)
    }

    /// p − 1 = −1, little-endian.
    const MINUS_ONE: [u8; 32] = {
        let mut b = [0xff; 32];
        b[0] = 0xec;
        b[31] = 0x7f;
        b
    };

    #[test]
    fn constants() {
        // d·121666 = −121665, 2d = d + d, i² = −1.
        assert!(Fe::D.mul(&small(121666)).equals(&small(121665).neg()));
        assert!(Fe::D.add(&Fe::D).carry().equals(&Fe::D2));
        assert_eq!(Fe::SQRT_M1.square().to_bytes(), MINUS_ONE);
        assert_eq!(Fe::ONE.neg().to_bytes(), MINUS_ONE);
    }

    #[test]
    fn encoding_reduces_modulo_p() {
        // p encodes 0 and p + 1 encodes 1; the top bit is ignored.
        let mut p = MINUS_ONE;
        p[0] += 1;
        assert_eq!(Fe::from_bytes(&p).to_bytes(), [0; 32]);
        p[0] += 1;
        assert_eq!(Fe::from_bytes(&p).to_bytes(), Fe::ONE.to_bytes());
        let mut top = [0; 32];
        top[31] = 0x80;
        assert_eq!(Fe::from_bytes(&top).to_bytes(), [0; 32]);
    }

    #[test]
    fn inversion_and_square_roots() {
        let mut x = small(7);
        for _ in 0..50 {
            x = x.square().add(&Fe::ONE).carry();
            assert!(x.mul(&x.invert()).equals(&Fe::ONE));
            // x² has a root; its root is the even one of ±x.
            let root = Fe::sqrt_ratio(&x.square(), &Fe::ONE).unwrap();
            assert!(root.equals(&x) || root.equals(&x.neg()));
            assert!(!root.is_negative());
        }
        assert!(Fe::ZERO.invert().equals(&Fe::ZERO));
        // 2 is not a square modulo p (p ≡ 5 mod 8).
        assert!(Fe::sqrt_ratio(&small(2), &Fe::ONE).is_none());
        // −1 is: its root is i (or −i).
        let i = Fe::sqrt_ratio(&Fe::ONE.neg(), &Fe::ONE).unwrap();
        assert!(i.square().equals(&Fe::ONE.neg()));
    }
}
