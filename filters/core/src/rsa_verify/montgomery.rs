//! Montgomery arithmetic modulo a fixed odd modulus, on 32-bit limbs.
//!
//! Limbs are 32 bits because the filter runs as wasm32: a 32×32→64-bit product is one native `i64.mul`, while
//! 64-bit limbs would need 128-bit products, which wasm32 emulates in software. Only public-key operations on public
//! data use this, so nothing here is constant time.

/// Little-endian 32-bit limbs of a number.
pub(super) type Limbs = Vec<u32>;

/// An odd modulus `n > 1` of `k` limbs with its Montgomery constants for `R = 2^(32·k)`.
#[derive(Clone)]
pub(super) struct Modulus {
    /// `n`, little-endian, most significant limb non-zero.
    n: Limbs,
    /// `-n⁻¹ mod 2³²`: the multiplier that clears the low limb in each reduction step.
    n0_inv: u32,
    /// `R² mod n`: multiplying by it (Montgomery) brings a number into Montgomery form.
    r2: Limbs,
}

impl Modulus {
    /// Precomputes the constants for `n`; `None` unless `n` is odd and greater than 1.
    pub(super) fn new(mut n: Limbs) -> Option<Self> {
        while n.last() == Some(&0) {
            n.pop();
        }
        let low = *n.first()?;
        if low & 1 == 0 || n == [1] {
            return None;
        }
        let mut modulus = Self {
            n0_inv: neg_inv_mod_2_32(low),
            r2: Vec::new(),
            n,
        };
        modulus.r2 = modulus.r_squared();
        Some(modulus)
    }

    /// `R² mod n`, computed once per key. Doubling all the way from 1 would take 64·k modular doublings; instead
    /// double only up to `2^o·R mod n` (the Montgomery form of `2^o`, where `32·k = o·2^s` with `o` odd), then
    /// square `s` times in Montgomery form: `(2^o)^(2^s) = 2^(32·k) = R`, whose Montgomery form is `R² mod n`.
    /// For 2048 bits that is 2 doublings and 11 multiplications.
    fn r_squared(&self) -> Limbs {
        let n = self.n.as_slice();
        let k = n.len();
        let r_bits = 32 * k;
        let squarings = r_bits.trailing_zeros();
        let odd = r_bits >> squarings;
        let n_bits = r_bits - n.last().map_or(0, |top| top.leading_zeros() as usize);
        // 2^(bits−1) < n for odd n > 1, so it is a reduced starting point.
        let mut x = vec![0; k];
        x[(n_bits - 1) / 32] = 1 << ((n_bits - 1) % 32);
        for _ in 0..r_bits + odd + 1 - n_bits {
            // 2x < 2n: the bit shifted out of the top limb plus the comparison decide the one subtraction.
            let mut carry = 0;
            for limb in x.iter_mut() {
                let next = *limb >> 31;
                *limb = *limb << 1 | carry;
                carry = next;
            }
            if carry != 0 || !less_than(&x, n) {
                sub_in_place(&mut x, n);
            }
        }
        let mut square = vec![0; k];
        for _ in 0..squarings {
            self.mul_into(&mut square, &x, &x);
            std::mem::swap(&mut x, &mut square);
        }
        x
    }

    /// The number of limbs of `n`.
    pub(super) fn limbs(&self) -> usize {
        self.n.len()
    }

    /// Whether `a` (of [`Self::limbs`] limbs) is below `n`.
    pub(super) fn is_reduced(&self, a: &[u32]) -> bool {
        a.len() == self.n.len() && less_than(a, &self.n)
    }

    /// `base^exp mod n` for `base < n` (of [`Self::limbs`] limbs), by left-to-right square-and-multiply.
    pub(super) fn pow(&self, base: &[u32], exp: u64) -> Limbs {
        let k = self.n.len();
        let mut one = vec![0; k];
        one[0] = 1;
        if exp == 0 {
            // n > 1, so 1 is already reduced.
            return one;
        }
        let mut acc = vec![0; k];
        let mut tmp = vec![0; k];
        // base·R: the Montgomery form of the base.
        self.mul_into(&mut acc, base, &self.r2);
        let base_mont = acc.clone();
        let top = 63 - exp.leading_zeros();
        for bit in (0..top).rev() {
            self.mul_into(&mut tmp, &acc, &acc);
            if exp >> bit & 1 == 1 {
                if bit == 0 {
                    // The last multiplication takes the plain base: (x·R)·base·R⁻¹ = x·base leaves Montgomery form
                    // for free, saving the conversion back (for e = 65537: 18 multiplications instead of 19).
                    self.mul_into(&mut acc, &tmp, base);
                    return acc;
                }
                self.mul_into(&mut acc, &tmp, &base_mont);
            } else {
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        // Even exponent (or 1): convert back explicitly, x·R·1·R⁻¹ = x.
        self.mul_into(&mut tmp, &acc, &one);
        tmp
    }

    /// `out = a·b·R⁻¹ mod n` for `a, b < n` (each of [`Self::limbs`] limbs); the result is fully reduced.
    ///
    /// CIOS (Koç, Acar, Kaliski 1996) with the multiplication and the reduction fused into one inner loop: each
    /// outer step adds `a[i]·b` and a multiple `m·n` chosen to zero the low limb, then shifts one limb down. The
    /// running value stays below 2n, so its top limb `hi` is 0 or 1 and one final subtraction reduces it.
    pub(super) fn mul_into(&self, out: &mut [u32], a: &[u32], b: &[u32]) {
        let n = self.n.as_slice();
        let k = n.len();
        // Equal lengths up front let the compiler drop the bounds checks in the inner loop.
        let (out, a, b) = (&mut out[..k], &a[..k], &b[..k]);
        out.fill(0);
        let mut hi: u32 = 0;
        for &ai in a {
            let ai = u64::from(ai);
            let x = u64::from(out[0]) + ai * u64::from(b[0]);
            let m = u64::from((x as u32).wrapping_mul(self.n0_inv));
            // The low 32 bits of y are zero by the choice of m; only its carry matters.
            let y = u64::from(x as u32) + m * u64::from(n[0]);
            let mut carry_ab = x >> 32;
            let mut carry_mn = y >> 32;
            for j in 1..k {
                // Each sum is at most (2³²−1) + (2³²−1)² + (2³²−1) = 2⁶⁴−1: no overflow.
                let x = u64::from(out[j]) + ai * u64::from(b[j]) + carry_ab;
                carry_ab = x >> 32;
                let y = u64::from(x as u32) + m * u64::from(n[j]) + carry_mn;
                carry_mn = y >> 32;
                out[j - 1] = y as u32;
            }
            let x = u64::from(hi) + carry_ab + carry_mn;
            out[k - 1] = x as u32;
            hi = (x >> 32) as u32;
        }
        if hi != 0 || !less_than(out, n) {
            // The value is below 2n, so the borrow out of this subtraction cancels `hi` exactly.
            sub_in_place(out, n);
        }
    }
}

/// `-n⁻¹ mod 2³²` for odd `n`, by Newton iteration: each step doubles the number of correct low bits.
fn neg_inv_mod_2_32(n: u32) -> u32 {
    // n·n ≡ 1 (mod 8) for odd n, so n is its own inverse to 3 bits; 3 → 6 → 12 → 24 → 48 bits.
    let mut inv = n;
    for _ in 0..4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// `a < b` for equal-length little-endian limbs.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` modulo 2^(32·len), for equal-length little-endian limbs.
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(u32::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
}

/// Big-endian bytes to `limbs` little-endian limbs; `None` if the number does not fit.
pub(super) fn limbs_from_be(bytes: &[u8], limbs: usize) -> Option<Limbs> {
    let mut out = vec![0u32; limbs];
    for (i, chunk) in bytes.rchunks(4).enumerate() {
        let value = chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b));
        match out.get_mut(i) {
            Some(limb) => *limb = value,
            None if value == 0 => {}
            None => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rsa::BigUint;

    /// xorshift64*: a seeded source of test operands, nothing more.
    struct Operands(u64);

    impl Operands {
        fn next_u32(&mut self) -> u32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
        }
        fn limbs(&mut self, k: usize) -> Limbs {
            (0..k).map(|_| self.next_u32()).collect()
        }
        /// A random odd modulus of exactly `k` limbs, with a random top-limb size to vary the bit length.
        fn modulus(&mut self, k: usize) -> Limbs {
            let mut n = self.limbs(k);
            let shift = self.next_u32() % 32;
            n[k - 1] = (self.next_u32() >> shift).max(1);
            n[0] |= 1;
            if n == [1] {
                n[0] = 3;
            }
            n
        }
        /// A random number below `n`.
        fn below(&mut self, n: &Limbs) -> Limbs {
            let x = to_big(&self.limbs(n.len())) % to_big(n);
            from_big(&x, n.len())
        }
    }

    fn to_big(limbs: &[u32]) -> BigUint {
        BigUint::from_slice(limbs)
    }

    fn from_big(x: &BigUint, k: usize) -> Limbs {
        let mut bytes = x.to_bytes_le();
        bytes.resize(4 * k, 0);
        bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Moduli that stress carries: all-ones limbs, a lone top bit, tiny values, and random ones of RSA sizes.
    fn moduli(ops: &mut Operands) -> Vec<Limbs> {
        let mut all = vec![
            vec![3],
            vec![0xFFFF_FFFF],
            vec![0xFFFF_FFFF; 5],
            vec![0xFFFF_FFFF; 64],
            vec![1, 0, 0, 1],
            vec![1, 0, 0, 0x8000_0000],
            vec![0xFFFF_FFFF, 0, 0, 0, 0, 1],
        ];
        for k in [1, 2, 3, 7, 17, 64, 96, 128] {
            for _ in 0..3 {
                all.push(ops.modulus(k));
            }
        }
        all
    }

    #[test]
    fn constants_match_bignum() {
        let mut ops = Operands(0x9E37_79B9_7F4A_7C15);
        for n in moduli(&mut ops) {
            let m = Modulus::new(n.clone()).unwrap();
            let k = n.len();
            assert_eq!(m.n0_inv.wrapping_mul(n[0]), u32::MAX, "n0_inv for {n:x?}");
            let r2 = (BigUint::from(1u32) << (64 * k)) % to_big(&n);
            assert_eq!(to_big(&m.r2), r2, "R² for {n:x?}");
        }
    }

    #[test]
    fn montgomery_product_matches_bignum() {
        let mut ops = Operands(42);
        for n in moduli(&mut ops) {
            let m = Modulus::new(n.clone()).unwrap();
            let big_n = to_big(&n);
            let r = BigUint::from(1u32) << (32 * n.len());
            let mut edge = n.clone();
            edge[0] -= 1; // n − 1, the largest operand
            let mut cases = vec![(edge.clone(), edge.clone()), (vec![0; n.len()], edge)];
            for _ in 0..20 {
                cases.push((ops.below(&n), ops.below(&n)));
            }
            let mut out = vec![0; n.len()];
            for (a, b) in cases {
                m.mul_into(&mut out, &a, &b);
                // out = a·b·R⁻¹ mod n  ⇔  out < n and out·R ≡ a·b (mod n).
                assert!(to_big(&out) < big_n, "unreduced for n={n:x?}");
                assert_eq!(
                    (to_big(&out) * &r) % &big_n,
                    (to_big(&a) * to_big(&b)) % &big_n,
                    "n={n:x?} a={a:x?} b={b:x?}"
                );
            }
        }
    }

    #[test]
    fn pow_matches_bignum() {
        let mut ops = Operands(7);
        let exponents = [0, 1, 2, 3, 4, 17, 65_537, 65_536, (1 << 33) - 1, u64::MAX];
        for n in moduli(&mut ops) {
            let m = Modulus::new(n.clone()).unwrap();
            let big_n = to_big(&n);
            for &e in &exponents {
                for base in [
                    ops.below(&n),
                    vec![0; n.len()],
                    from_big(&BigUint::from(1u32), n.len()),
                ] {
                    let want = to_big(&base).modpow(&BigUint::from(e), &big_n);
                    assert_eq!(to_big(&m.pow(&base, e)), want, "n={n:x?} e={e}");
                }
            }
        }
    }

    #[test]
    fn refuses_even_and_trivial_moduli() {
        assert!(Modulus::new(vec![]).is_none());
        assert!(Modulus::new(vec![0, 0]).is_none());
        assert!(Modulus::new(vec![1]).is_none());
        assert!(Modulus::new(vec![1, 0]).is_none());
        assert!(Modulus::new(vec![4, 1]).is_none());
        // Leading zero limbs are dropped, not counted.
        assert_eq!(Modulus::new(vec![5, 0, 0]).unwrap().limbs(), 1);
    }

    #[test]
    fn big_endian_conversion() {
        assert_eq!(
            limbs_from_be(&[1, 2, 3, 4, 5], 2),
            Some(vec![0x0203_0405, 1])
        );
        assert_eq!(limbs_from_be(&[0, 0, 0, 0, 9], 1), Some(vec![9]));
        assert_eq!(limbs_from_be(&[1, 0, 0, 0, 9], 1), None);
        assert_eq!(limbs_from_be(&[], 2), Some(vec![0, 0]));
    }
}
