//! Descriptive statistics for one metric's samples.

use serde::{Deserialize, Serialize};

use super::bootstrap::{self, BootstrapConfig, ConfidenceInterval};
use super::error::{StatsError, check_samples};
use super::outliers::{Outlier, TukeyFences};
use super::quantile::{median_sorted, sorted};

/// What a set of benchmark samples looks like: centre, spread, how sure we are of
/// the median, and which samples look wrong.
///
/// The median (not the mean) is the headline number: on shared machines a few runs
/// hit by a noisy neighbour drag the mean, but barely move the median.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (type 7 quantile at 0.5, see [`crate::stats::quantile`]).
    pub median: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divisor n − 1); `None` for n = 1, where it is
    /// undefined. Exactly 0 when all samples are equal.
    pub std_dev: Option<f64>,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Coefficient of variation, `std_dev / |mean|`: spread relative to size, so
    /// metrics in different units can be judged alike. `None` when the standard
    /// deviation is undefined or the mean is 0.
    pub cv: Option<f64>,
    /// Percentile-bootstrap confidence interval for the median; `None` for n = 1,
    /// where a single sample says nothing about its own uncertainty.
    pub median_ci: Option<ConfidenceInterval>,
    /// Tukey's fences (quartiles ∓ 1.5·IQR).
    pub fences: TukeyFences,
    /// Samples strictly outside the fences, in input order. They are reported,
    /// not removed: every statistic above includes them.
    pub outliers: Vec<Outlier>,
}

impl Summary {
    /// Summarises `samples` with the default bootstrap (2000 resamples, 95%,
    /// [`crate::stats::DEFAULT_SEED`]).
    ///
    /// Errors: [`StatsError::Empty`] for no samples, [`StatsError::NonFinite`] for
    /// a NaN or infinite sample. n = 1 and n = 2 are summarised (with the `None`s
    /// documented on the fields); equal samples give zero spread and no outliers.
    pub fn of(samples: &[f64]) -> Result<Self, StatsError> {
        Self::with_bootstrap(samples, &BootstrapConfig::default())
    }

    /// As [`Summary::of`], with the bootstrap configured by `config`; also errors
    /// with [`StatsError::InvalidParameter`] for an invalid `config`.
    pub fn with_bootstrap(samples: &[f64], config: &BootstrapConfig) -> Result<Self, StatsError> {
        check_samples("samples", samples)?;
        config.validate()?;
        let sorted = sorted(samples);
        let min = sorted[0];
        let max = sorted[sorted.len() - 1];
        let mean = mean_from_min(samples, min);
        let std_dev = sample_std_dev(samples, mean);
        let fences = TukeyFences::of_sorted(&sorted);
        Ok(Self {
            n: samples.len(),
            median: median_sorted(&sorted),
            mean,
            std_dev,
            min,
            max,
            cv: std_dev.filter(|_| mean != 0.0).map(|sd| sd / mean.abs()),
            median_ci: (samples.len() > 1).then(|| bootstrap::median_ci(samples, config)),
            outliers: fences.outliers(samples),
            fences,
        })
    }
}

/// Mean computed as `min + mean(x − min)`: algebraically the plain mean, but equal
/// samples give exactly that value (no rounding residue), so their standard
/// deviation comes out exactly 0.
fn mean_from_min(samples: &[f64], min: f64) -> f64 {
    min + samples.iter().map(|x| x - min).sum::<f64>() / samples.len() as f64
}

/// Two-pass sample standard deviation; `None` below two samples.
fn sample_std_dev(samples: &[f64], mean: f64) -> Option<f64> {
    let n = samples.len();
    (n > 1).then(|| {
        let squares: f64 = samples.iter().map(|x| (x - mean).powi(2)).sum();
        (squares / (n - 1) as f64).sqrt()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    /// Reference: numpy 2.4.6 on X — `np.median` 4.4, `np.mean` 4.8,
    /// `np.std(X, ddof=1)` 3.099462318962221, cv 0.6457213164504627
    /// (scripts/stats-reference.py).
    #[test]
    fn matches_numpy_reference() {
        let x = [3.1, 1.2, 7.5, 4.4, 2.0, 9.9, 5.5];
        let s = Summary::of(&x).expect("valid input");
        assert_eq!(s.n, 7);
        assert!(close(s.median, 4.4));
        assert!(close(s.mean, 4.8));
        assert!(close(s.std_dev.expect("n > 1"), 3.099_462_318_962_221));
        assert!(close(s.cv.expect("mean != 0"), 0.645_721_316_450_462_7));
        assert_eq!((s.min, s.max), (1.2, 9.9));
        assert!(s.outliers.is_empty());
        let ci = s.median_ci.expect("n > 1");
        assert!(ci.contains(s.median) && ci.lower >= s.min && ci.upper <= s.max);
    }

    #[test]
    fn reports_outlier_but_keeps_it_in_the_statistics() {
        let y = [10.1, 9.8, 10.3, 10.0, 9.9, 10.2, 25.0, 10.1];
        let s = Summary::of(&y).expect("valid input");
        assert_eq!(
            s.outliers,
            vec![Outlier {
                index: 6,
                value: 25.0
            }]
        );
        assert_eq!(s.max, 25.0);
        assert!(
            s.mean > 11.0,
            "the outlier still pulls the mean: {}",
            s.mean
        );
        assert!(close(s.median, 10.1), "but not the median: {}", s.median);
    }

    #[test]
    fn empty_and_non_finite_input_are_errors() {
        assert_eq!(Summary::of(&[]), Err(StatsError::Empty { what: "samples" }));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                Summary::of(&[1.0, 2.0, bad]),
                Err(StatsError::NonFinite { index: 2, .. })
            ));
        }
    }

    #[test]
    fn single_sample() {
        let s = Summary::of(&[7.0]).expect("valid input");
        assert_eq!(
            (s.n, s.median, s.mean, s.min, s.max),
            (1, 7.0, 7.0, 7.0, 7.0)
        );
        assert_eq!((s.std_dev, s.cv, s.median_ci), (None, None, None));
        assert!(s.outliers.is_empty());
    }

    #[test]
    fn two_samples() {
        let s = Summary::of(&[1.0, 3.0]).expect("valid input");
        assert_eq!((s.median, s.mean), (2.0, 2.0));
        assert!(close(s.std_dev.expect("n > 1"), 2f64.sqrt()));
        let ci = s.median_ci.expect("n > 1");
        assert_eq!((ci.lower, ci.upper), (1.0, 3.0));
    }

    #[test]
    fn equal_samples_have_exactly_zero_spread() {
        let s = Summary::of(&[0.1; 5]).expect("valid input");
        assert_eq!(
            (s.mean, s.median, s.std_dev, s.cv),
            (0.1, 0.1, Some(0.0), Some(0.0))
        );
        let ci = s.median_ci.expect("n > 1");
        assert_eq!((ci.lower, ci.upper), (0.1, 0.1));
        assert!(s.outliers.is_empty());
    }

    #[test]
    fn zero_mean_has_no_cv() {
        let s = Summary::of(&[-1.0, 1.0]).expect("valid input");
        assert_eq!(s.cv, None);
    }

    #[test]
    fn serializes_to_json() {
        let s = Summary::of(&[1.0, 2.0, 3.0]).expect("valid input");
        let json = serde_json::to_value(&s).expect("serializable");
        assert_eq!(json["median"], 2.0);
        assert_eq!(json["median_ci"]["confidence"], 0.95);
    }
}
