//! Tukey's fences: flag samples far outside the middle half of the data.
//!
//! Fences are robust (they come from quartiles, which a few wild samples barely
//! move), so one bad run — a VM migrating mid-benchmark, a noisy neighbour — is
//! flagged instead of dragging the fences out to include itself.

use serde::{Deserialize, Serialize};

use super::quantile::quantile_sorted;

/// Multiple of the interquartile range beyond the quartiles at which a sample
/// counts as an outlier (Tukey's "inner fences").
const TUKEY_K: f64 = 1.5;

/// The interval outside which a sample is an outlier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TukeyFences {
    /// Q1 − 1.5·IQR (quartiles by type 7, see [`crate::stats::quantile`]).
    pub lower: f64,
    /// Q3 + 1.5·IQR.
    pub upper: f64,
}

/// One sample outside the fences.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outlier {
    /// Position of the sample in the input as given (not in sorted order).
    pub index: usize,
    /// The sample itself.
    pub value: f64,
}

impl TukeyFences {
    /// Fences for already sorted, non-empty, finite samples.
    ///
    /// With identical middle quartiles (IQR = 0) both fences sit on that value, so
    /// any sample that differs from it at all is flagged: with most samples equal,
    /// a different one really is unusual.
    pub(crate) fn of_sorted(sorted: &[f64]) -> Self {
        let q1 = quantile_sorted(sorted, 0.25);
        let q3 = quantile_sorted(sorted, 0.75);
        let reach = TUKEY_K * (q3 - q1);
        Self {
            lower: q1 - reach,
            upper: q3 + reach,
        }
    }

    /// Whether `value` lies strictly outside the fences (a sample exactly on a
    /// fence is not an outlier).
    pub fn excludes(&self, value: f64) -> bool {
        value < self.lower || value > self.upper
    }

    /// The samples strictly outside the fences, in input order.
    pub(crate) fn outliers(&self, samples: &[f64]) -> Vec<Outlier> {
        samples
            .iter()
            .enumerate()
            .filter(|(_, value)| self.excludes(**value))
            .map(|(index, &value)| Outlier { index, value })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::quantile::sorted;

    /// Reference: numpy 2.4.6 `np.percentile(Y, [25, 75])` = [9.975, 10.225], so the
    /// fences are 9.6 and 10.6 (scripts/stats-reference.py).
    const Y: [f64; 8] = [10.1, 9.8, 10.3, 10.0, 9.9, 10.2, 25.0, 10.1];

    #[test]
    fn fences_match_numpy_quartiles() {
        let fences = TukeyFences::of_sorted(&sorted(&Y));
        assert!((fences.lower - 9.6).abs() < 1e-12, "{fences:?}");
        assert!((fences.upper - 10.6).abs() < 1e-12, "{fences:?}");
    }

    #[test]
    fn flags_the_obvious_outlier_by_its_input_index() {
        let fences = TukeyFences::of_sorted(&sorted(&Y));
        assert_eq!(
            fences.outliers(&Y),
            vec![Outlier {
                index: 6,
                value: 25.0
            }]
        );
    }

    #[test]
    fn flags_low_outliers_too() {
        let samples = [10.1, 9.8, 10.3, 10.0, 0.5, 9.9, 10.2, 10.1];
        let fences = TukeyFences::of_sorted(&sorted(&samples));
        assert_eq!(
            fences.outliers(&samples),
            vec![Outlier {
                index: 4,
                value: 0.5
            }]
        );
    }

    #[test]
    fn equal_samples_have_no_outliers_but_a_lone_different_one_is_flagged() {
        let equal = [3.0; 6];
        assert!(TukeyFences::of_sorted(&equal).outliers(&equal).is_empty());

        let one_off = [3.0, 3.0, 3.0, 3.5, 3.0, 3.0];
        let fences = TukeyFences::of_sorted(&sorted(&one_off));
        assert_eq!(
            fences.outliers(&one_off),
            vec![Outlier {
                index: 3,
                value: 3.5
            }]
        );
    }

    #[test]
    fn two_samples_are_never_outliers_of_each_other() {
        let pair = [1.0, 100.0];
        assert!(TukeyFences::of_sorted(&pair).outliers(&pair).is_empty());
    }
}
