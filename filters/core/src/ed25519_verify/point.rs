//! Points of edwards25519 (−x² + y² = 1 + d·x²·y²) in the coordinate systems of Hisil–Wong–Carter–Dawson, with the
//! formulas curve25519-dalek uses. They are complete on this curve: no input needs a special case, including the
//! identity, doubling and points of small order.

use super::field::{Fe, Loose};

/// Extended coordinates: x = X/Z, y = Y/Z, x·y = T/Z.
#[derive(Clone, Copy)]
pub(super) struct Extended {
    x: Fe,
    y: Fe,
    z: Fe,
    t: Fe,
}

/// Projective coordinates: x = X/Z, y = Y/Z. Enough for doubling.
#[derive(Clone, Copy)]
struct Projective {
    x: Fe,
    y: Fe,
    z: Fe,
}

/// The output of an addition or doubling before its final multiplications: x = X/Z, y = Y/T.
struct Completed {
    x: Loose,
    y: Loose,
    z: Loose,
    t: Loose,
}

/// A point prepared as the right-hand side of an addition: (Y + X, Y − X, Z, 2d·T).
pub(super) struct ProjectiveNiels {
    y_plus_x: Fe,
    y_minus_x: Fe,
    z: Fe,
    t2d: Fe,
}

/// An affine point prepared as the right-hand side of an addition: (y + x, y − x, 2d·x·y). Adding one costs seven
/// multiplications, against eight for a [`ProjectiveNiels`]; this is what the fixed-base tables hold.
#[derive(Clone, Copy)]
pub(super) struct AffineNiels {
    y_plus_x: Fe,
    y_minus_x: Fe,
    xy2d: Fe,
}

impl Extended {
    pub(super) const IDENTITY: Extended = Extended {
        x: Fe::ZERO,
        y: Fe::ONE,
        z: Fe::ONE,
        t: Fe::ZERO,
    };

    /// The point encoded by `bytes` (RFC 8032 §5.1.3), decoded exactly as curve25519-dalek 4's
    /// `CompressedEdwardsY::decompress` does: y is taken modulo p (a non-canonical y is accepted), and a sign bit
    /// of 1 on x = 0 is ignored rather than refused. `None` when no x fits the y.
    pub(super) fn decompress(bytes: &[u8; 32]) -> Option<Extended> {
        let y = Fe::from_bytes(bytes);
        let yy = y.square();
        let u = yy.sub(&Fe::ONE).carry();
        let v = yy.mul(&Fe::D).add(&Fe::ONE).carry();
        let mut x = Fe::sqrt_ratio(&u, &v)?;
        if bytes[31] >> 7 == 1 {
            x = x.neg();
        }
        Some(Extended {
            x,
            y,
            z: Fe::ONE,
            t: x.mul(&y),
        })
    }

    pub(super) fn neg(&self) -> Extended {
        Extended {
            x: self.x.neg(),
            y: self.y,
            z: self.z,
            t: self.t.neg(),
        }
    }

    fn to_projective(self) -> Projective {
        Projective {
            x: self.x,
            y: self.y,
            z: self.z,
        }
    }

    pub(super) fn to_projective_niels(self) -> ProjectiveNiels {
        ProjectiveNiels {
            y_plus_x: self.y.add(&self.x).carry(),
            y_minus_x: self.y.sub(&self.x).carry(),
            z: self.z,
            t2d: self.t.mul(&Fe::D2),
        }
    }

    /// `self + other`, for building tables.
    pub(super) fn add(&self, other: &ProjectiveNiels) -> Extended {
        let pp = self.y.add(&self.x).mul(&other.y_plus_x.loose());
        let mm = self.y.sub(&self.x).mul(&other.y_minus_x.loose());
        let tt2d = self.t.mul(&other.t2d);
        let zz = self.z.mul(&other.z);
        let zz2 = zz.add(&zz).carry();
        Completed {
            x: pp.sub(&mm),
            y: pp.add(&mm),
            z: zz2.add(&tt2d),
            t: zz2.sub(&tt2d),
        }
        .to_extended()
    }

    /// `self + other`.
    pub(super) fn add_affine(&self, other: &AffineNiels) -> Extended {
        let pp = self.y.add(&self.x).mul(&other.y_plus_x.loose());
        let mm = self.y.sub(&self.x).mul(&other.y_minus_x.loose());
        let txy2d = self.t.mul(&other.xy2d);
        let z2 = self.z.add(&self.z).carry();
        Completed {
            x: pp.sub(&mm),
            y: pp.add(&mm),
            z: z2.add(&txy2d),
            t: z2.sub(&txy2d),
        }
        .to_extended()
    }

    /// `self − other`: the same as adding (−x, y), whose niels form is (y − x, y + x, −2d·x·y).
    pub(super) fn sub_affine(&self, other: &AffineNiels) -> Extended {
        let pm = self.y.add(&self.x).mul(&other.y_minus_x.loose());
        let mp = self.y.sub(&self.x).mul(&other.y_plus_x.loose());
        let txy2d = self.t.mul(&other.xy2d);
        let z2 = self.z.add(&self.z).carry();
        Completed {
            x: pm.sub(&mp),
            y: pm.add(&mp),
            z: z2.sub(&txy2d),
            t: z2.add(&txy2d),
        }
        .to_extended()
    }

    /// `2^k · self`, `k ≥ 1`. Intermediate results skip T, which only an addition needs.
    pub(super) fn double_k(&self, k: u32) -> Extended {
        let mut point = self.to_projective();
        for _ in 1..k {
            point = point.double().to_projective();
        }
        point.double().to_extended()
    }

    /// Whether `bytes` is the encoding of this point, i.e. whether curve25519-dalek's `compress()` of it would
    /// equal `bytes`. Checks y first, projectively, so most mismatches cost no inversion.
    pub(super) fn has_encoding(&self, bytes: &[u8; 32]) -> bool {
        let y = Fe::from_bytes(bytes);
        let mut canonical = y.to_bytes();
        // The encoding of a point has a canonical y (below p); the top bit holds the sign of x.
        canonical[31] |= bytes[31] & 0x80;
        if canonical != *bytes || !y.mul(&self.z).equals(&self.y) {
            return false;
        }
        let x = self.x.mul(&self.z.invert_vartime());
        x.is_negative() == (bytes[31] >> 7 == 1)
    }

    /// The encoding (curve25519-dalek's `compress()`), for tests.
    #[cfg(test)]
    pub(super) fn compress(&self) -> [u8; 32] {
        let recip = self.z.invert();
        let mut bytes = self.y.mul(&recip).to_bytes();
        bytes[31] |= u8::from(self.x.mul(&recip).is_negative()) << 7;
        bytes
    }
}

impl Projective {
    fn double(&self) -> Completed {
        let xx = self.x.square();
        let yy = self.y.square();
        let zz = self.z.square();
        let zz2 = zz.add(&zz).carry();
        let x_plus_y_sq = self.x.add(&self.y).square();
        let yy_plus_xx = yy.add(&xx).carry();
        let yy_minus_xx = yy.sub(&xx).carry();
        Completed {
            x: x_plus_y_sq.sub(&yy_plus_xx),
            y: yy_plus_xx.loose(),
            z: yy_minus_xx.loose(),
            t: zz2.sub(&yy_minus_xx),
        }
    }
}

impl Completed {
    fn to_projective(&self) -> Projective {
        Projective {
            x: self.x.mul(&self.t),
            y: self.y.mul(&self.z),
            z: self.z.mul(&self.t),
        }
    }

    fn to_extended(&self) -> Extended {
        Extended {
            x: self.x.mul(&self.t),
            y: self.y.mul(&self.z),
            z: self.z.mul(&self.t),
            t: self.x.mul(&self.y),
        }
    }
}

/// The affine niels forms of `points`, with one inversion for all of them (Montgomery's trick).
pub(super) fn batch_to_affine_niels(points: &[Extended]) -> Vec<AffineNiels> {
    // products[i] = z_0 · … · z_(i−1)
    let mut products = Vec::with_capacity(points.len());
    let mut acc = Fe::ONE;
    for point in points {
        products.push(acc);
        acc = acc.mul(&point.z);
    }
    // Every z is non-zero: extended coordinates of a curve point never have Z = 0.
    let mut inverse = acc.invert_vartime();
    let mut niels = vec![
        AffineNiels {
            y_plus_x: Fe::ONE,
            y_minus_x: Fe::ONE,
            xy2d: Fe::ZERO,
        };
        points.len()
    ];
    for ((point, product), out) in points.iter().zip(products).zip(&mut niels).rev() {
        // inverse = 1 / (z_0 · … · z_i)
        let z_inv = inverse.mul(&product);
        inverse = inverse.mul(&point.z);
        let x = point.x.mul(&z_inv);
        let y = point.y.mul(&z_inv);
        *out = AffineNiels {
            y_plus_x: y.add(&x).carry(),
            y_minus_x: y.sub(&x).carry(),
            xy2d: x.mul(&y).mul(&Fe::D2),
        };
    }
    niels
}
