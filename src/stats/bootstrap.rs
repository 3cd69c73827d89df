//! Percentile-bootstrap confidence interval for the median.
//!
//! The bootstrap makes no assumption about the shape of the distribution, which
//! matters for benchmark samples: they are often skewed (latency) or bimodal
//! (throughput with and without a noisy neighbour), where normal-theory intervals
//! mislead.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::DEFAULT_SEED;
use super::error::{StatsError, check_open_unit};
use super::quantile::{median_sorted, quantile_sorted};

/// How to bootstrap: the number of resamples, the confidence level and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Resamples drawn (default 2000). More gives steadier interval ends at a cost
    /// linear in this number; below a few hundred the ends jitter noticeably.
    pub resamples: usize,
    /// Confidence level in (0, 1) (default 0.95).
    pub confidence: f64,
    /// Seed of the random generator (default [`DEFAULT_SEED`]), so that a rerun on
    /// the same samples reports the same interval.
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 2000,
            confidence: 0.95,
            seed: DEFAULT_SEED,
        }
    }
}

impl BootstrapConfig {
    /// Rejects zero resamples or a confidence level outside (0, 1).
    pub(crate) fn validate(&self) -> Result<(), StatsError> {
        if self.resamples == 0 {
            return Err(StatsError::InvalidParameter {
                name: "resamples",
                reason: "at least one resample is needed".to_owned(),
            });
        }
        check_open_unit("confidence", self.confidence)
    }
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    /// Lower end.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
    /// The level it was computed at, e.g. 0.95.
    pub confidence: f64,
}

impl ConfidenceInterval {
    /// Whether `value` lies in the closed interval.
    pub fn contains(&self, value: f64) -> bool {
        self.lower <= value && value <= self.upper
    }

    /// `upper − lower`.
    pub fn width(&self) -> f64 {
        self.upper - self.lower
    }
}

/// Percentile bootstrap interval for the median of non-empty, finite `samples`
/// under a validated `config`.
///
/// Each resample draws n samples with replacement and takes its median; the
/// interval's ends are the (1 − c)/2 and (1 + c)/2 type 7 quantiles of those
/// medians. Known limits: with very few samples (n < ~10) the resampled medians
/// take only a handful of distinct values, so the interval is coarse and tends to
/// be too narrow; n = 1 gives the degenerate interval [x, x].
pub(crate) fn median_ci(samples: &[f64], config: &BootstrapConfig) -> ConfidenceInterval {
    let mut medians = resampled_medians(samples, config);
    medians.sort_by(f64::total_cmp);
    let tail = (1.0 - config.confidence) / 2.0;
    ConfidenceInterval {
        lower: quantile_sorted(&medians, tail),
        upper: quantile_sorted(&medians, 1.0 - tail),
        confidence: config.confidence,
    }
}

fn resampled_medians(samples: &[f64], config: &BootstrapConfig) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut resample = vec![0.0; samples.len()];
    (0..config.resamples)
        .map(|_| {
            for slot in resample.iter_mut() {
                *slot = samples[rng.random_range(0..samples.len())];
            }
            resample.sort_by(f64::total_cmp);
            median_sorted(&resample)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::test_data::normal_samples;

    #[test]
    fn interval_contains_the_sample_median() {
        let samples = normal_samples(40, 100.0, 5.0, 1);
        let sorted = crate::stats::quantile::sorted(&samples);
        let ci = median_ci(&samples, &BootstrapConfig::default());
        assert!(ci.contains(median_sorted(&sorted)), "{ci:?}");
        assert!(ci.width() > 0.0);
    }

    #[test]
    fn interval_narrows_with_more_samples() {
        let config = BootstrapConfig::default();
        let few = median_ci(&normal_samples(15, 100.0, 5.0, 2), &config);
        let many = median_ci(&normal_samples(600, 100.0, 5.0, 2), &config);
        // The width shrinks like 1/sqrt(n): a 40-fold increase in n should shrink it
        // about 6-fold; demand at least 3-fold.
        assert!(many.width() * 3.0 < few.width(), "{few:?} vs {many:?}");
    }

    #[test]
    fn same_seed_same_resamples_other_seed_other_resamples() {
        let samples = normal_samples(30, 10.0, 1.0, 3);
        let config = BootstrapConfig::default();
        assert_eq!(median_ci(&samples, &config), median_ci(&samples, &config));
        // The interval ends are order statistics, so another seed may well give the
        // same interval; the resampled medians themselves must differ.
        let reseeded = BootstrapConfig { seed: 7, ..config };
        assert_ne!(
            resampled_medians(&samples, &config),
            resampled_medians(&samples, &reseeded)
        );
    }

    #[test]
    fn two_samples_span_both() {
        // Resampled medians are a, (a+b)/2 or b with probabilities 1/4, 1/2, 1/4,
        // so the 2.5% and 97.5% points are the samples themselves.
        let ci = median_ci(&[4.0, 6.0], &BootstrapConfig::default());
        assert_eq!((ci.lower, ci.upper), (4.0, 6.0));
    }

    #[test]
    fn rejects_bad_config() {
        let zero = BootstrapConfig {
            resamples: 0,
            ..BootstrapConfig::default()
        };
        assert!(zero.validate().is_err());
        let certain = BootstrapConfig {
            confidence: 1.0,
            ..BootstrapConfig::default()
        };
        assert!(certain.validate().is_err());
    }
}
