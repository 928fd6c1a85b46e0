//! Summaries of repeated measurements: medians, and ratios taken pair by pair (same repetition) so that a slow
//! moment of a shared machine hits both sides of a ratio instead of one.

use serde::Serialize;

/// Median, minimum and maximum of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    /// How many values.
    pub(crate) n: usize,
}

/// The spread of `values`, ignoring NaN; `None` when nothing is left.
pub(crate) fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// The spread of `a / b` over pairs measured together; pairs whose `b` is zero are skipped.
pub(crate) fn pairwise_ratio(pairs: &[(f64, f64)]) -> Option<Spread> {
    let ratios: Vec<f64> = pairs
        .iter()
        .filter(|(_, b)| *b != 0.0)
        .map(|(a, b)| a / b)
        .collect();
    spread(&ratios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(spread(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[f64::NAN]), None);
    }

    #[test]
    fn ratios_are_taken_within_each_pair() {
        // Repetition 2 ran while the machine was busy: both sides are halved and the ratio is unchanged.
        let pairs = [(900.0, 1000.0), (450.0, 500.0), (1100.0, 1000.0)];
        let r = pairwise_ratio(&pairs).unwrap();
        assert!((r.median - 0.9).abs() < 1e-12);
        assert!((r.min - 0.9).abs() < 1e-12);
        assert!((r.max - 1.1).abs() < 1e-12);
        assert_eq!(r.n, 3);
        // Ratio of medians would be 900/1000 too here, but the pairing is what matters: not 1100/500.
        assert_eq!(pairwise_ratio(&[(1.0, 0.0)]), None);
        assert_eq!(
            pairwise_ratio(&[(1.0, 0.0), (3.0, 2.0)]).unwrap().median,
            1.5
        );
    }
}
