//! The quantile definition shared by every statistic in this module.
//!
//! We use Hyndman & Fan's type 7 (linear interpolation between order statistics),
//! the default of NumPy's `np.quantile`, R's `quantile` and most spreadsheets, so
//! numbers here can be checked against those tools without translation.

use super::error::{StatsError, check_samples};

/// The `p`-quantile of `samples` (0 ≤ p ≤ 1), type 7.
///
/// With the samples sorted as x₀ ≤ … ≤ xₙ₋₁, let h = (n − 1)·p; the result is
/// x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋). So p = 0 is the minimum, p = 1 the maximum and
/// p = 0.5 the usual median (the mean of the two middle values for even n). A
/// single sample is every quantile of itself.
///
/// Errors: empty input, a NaN or infinite sample, or `p` outside [0, 1].
pub fn quantile(samples: &[f64], p: f64) -> Result<f64, StatsError> {
    check_samples("samples", samples)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(StatsError::InvalidParameter {
            name: "p",
            reason: format!("quantile level must lie in [0, 1], got {p}"),
        });
    }
    Ok(quantile_sorted(&sorted(samples), p))
}

/// A sorted copy of finite samples (callers have rejected NaN already).
pub(crate) fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut copy = samples.to_vec();
    copy.sort_by(f64::total_cmp);
    copy
}

/// Type 7 quantile of an already sorted, non-empty slice; `p` in [0, 1].
pub(crate) fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(!sorted.is_empty() && (0.0..=1.0).contains(&p));
    let last = sorted.len().saturating_sub(1);
    let h = last as f64 * p;
    let lower = (h.floor() as usize).min(last);
    let upper = (lower + 1).min(last);
    let weight = h - lower as f64;
    sorted[lower] + weight * (sorted[upper] - sorted[lower])
}

/// Median (type 7 at p = 0.5) of an already sorted, non-empty slice.
pub(crate) fn median_sorted(sorted: &[f64]) -> f64 {
    quantile_sorted(sorted, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: [f64; 7] = [3.1, 1.2, 7.5, 4.4, 2.0, 9.9, 5.5];

    /// Reference values: numpy 2.4.6 `np.quantile(X, p)` (default method 'linear'),
    /// printed by scripts/stats-reference.py.
    #[test]
    fn matches_numpy_linear_quantiles() {
        let expected = [
            (0.0, 1.2),
            (0.1, 1.680_000_000_000_000_2),
            (0.25, 2.55),
            (0.5, 4.4),
            (0.75, 6.5),
            (0.9, 8.46),
            (1.0, 9.9),
        ];
        for (p, want) in expected {
            let got = quantile(&X, p).expect("valid input");
            assert!((got - want).abs() < 1e-12, "p={p}: got {got}, want {want}");
        }
    }

    /// numpy 2.4.6 `np.median([10, 2, 8, 4])` = 6.0: even n averages the middle pair.
    #[test]
    fn even_length_median_averages_middle_pair() {
        assert_eq!(quantile(&[10.0, 2.0, 8.0, 4.0], 0.5), Ok(6.0));
    }

    #[test]
    fn single_sample_is_every_quantile() {
        for p in [0.0, 0.3, 1.0] {
            assert_eq!(quantile(&[42.0], p), Ok(42.0));
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            quantile(&[], 0.5),
            Err(StatsError::Empty { what: "samples" })
        );
        assert!(matches!(
            quantile(&[1.0, f64::NAN], 0.5),
            Err(StatsError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            quantile(&[1.0], 1.5),
            Err(StatsError::InvalidParameter { name: "p", .. })
        ));
    }
}
