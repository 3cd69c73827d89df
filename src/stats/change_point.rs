//! Change-point detection over a metric's history: E-divisive with means.
//!
//! Matteson & James, "A Nonparametric Approach for Multiple Change Point Analysis
//! of Multivariate Data", JASA 109 (2014), with the energy distance at α = 1. This
//! is the method MongoDB and Apache Otava (Hunter) run over CI performance
//! histories, chosen for the same reasons here: no assumption on the noise
//! distribution, any number of change points, and a significance level from a
//! permutation test rather than a hand-tuned threshold.
//!
//! One simplification, common in implementations for performance CI: a candidate
//! split of a segment compares everything before it with everything after it up
//! to the segment's end (the paper also searches for an earlier end point).
//! Recursive bisection finds the remaining change points inside the parts.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::DEFAULT_SEED;
use super::error::{StatsError, check_finite, check_open_unit};

/// Tuning of [`change_points`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChangePointConfig {
    /// Permutations per significance test (default 199). The smallest p-value
    /// possible is 1/(permutations + 1), so at least 1/significance − 1 are
    /// required (19 at 0.05). Cost is linear in it.
    pub permutations: usize,
    /// A split is accepted when its permutation p-value is at most this (default
    /// 0.05).
    pub significance: f64,
    /// Fewest points on each side of a change point (default 3, at least 2). Small
    /// values let a regression show within a few runs of landing, at the price of
    /// reacting to short bursts.
    pub min_segment: usize,
    /// Seed of the permutation shuffles (default [`DEFAULT_SEED`]): the same
    /// history always gives the same change points.
    pub seed: u64,
}

impl Default for ChangePointConfig {
    fn default() -> Self {
        Self {
            permutations: 199,
            significance: 0.05,
            min_segment: 3,
            seed: DEFAULT_SEED,
        }
    }
}

impl ChangePointConfig {
    fn validate(&self) -> Result<(), StatsError> {
        check_open_unit("significance", self.significance)?;
        if self.min_segment < 2 {
            return Err(invalid(
                "min_segment",
                "segments need at least 2 points".to_owned(),
            ));
        }
        let smallest_p = 1.0 / (self.permutations as f64 + 1.0);
        if smallest_p > self.significance {
            let reason = format!(
                "{} permutations can never reach significance {}",
                self.permutations, self.significance
            );
            return Err(invalid("permutations", reason));
        }
        Ok(())
    }
}

fn invalid(name: &'static str, reason: String) -> StatsError {
    StatsError::InvalidParameter { name, reason }
}

/// A point in the series where the mean shifted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChangePoint {
    /// Index of the first value after the shift.
    pub index: usize,
    /// Mean of the segment ending just before `index` (bounded by the neighbouring
    /// change point or the start of the series).
    pub before_mean: f64,
    /// Mean of the segment starting at `index` (bounded by the next change point
    /// or the end of the series).
    pub after_mean: f64,
    /// The energy statistic Q̂ of the split when it was accepted; larger is a
    /// stronger difference in distribution.
    pub statistic: f64,
    /// Permutation p-value of the split when it was accepted.
    pub p_value: f64,
}

/// Change points of a time-ordered `series` (e.g. one metric's run medians,
/// oldest first), sorted by index.
///
/// Procedure (E-divisive): find the split, over all current segments, with the
/// largest energy statistic Q̂; estimate its p-value by shuffling the values within
/// every segment `permutations` times and counting how often the best split of the
/// shuffled series scores at least as high; accept the split if p ≤
/// `significance` and repeat, stop at the first rejected split.
///
/// On a slow drift (many small steps, none significant alone) the stretch before
/// and after the middle of the drift differ clearly, so the drift is reported as
/// one or more change points inside it, each with before/after means in the
/// drift's direction; they mark where the evidence is strongest, not where the
/// drift began. A longer or steeper drift is cut into more pieces.
///
/// Returns no change points for a series shorter than 2·`min_segment` or with all
/// values equal. Errors: a NaN or infinite value, or an invalid `config`.
///
/// Cost: O(permutations · n²) for each split tested, n the series length; a
/// history of a few hundred runs takes well under a second with the defaults.
pub fn change_points(
    series: &[f64],
    config: &ChangePointConfig,
) -> Result<Vec<ChangePoint>, StatsError> {
    check_finite("series", series)?;
    config.validate()?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut bounds = vec![0, series.len()];
    let mut accepted = Vec::new();
    while let Some(best) = best_split(series, &bounds, config.min_segment) {
        let p_value = permutation_p(series, &bounds, best.statistic, config, &mut rng);
        if p_value > config.significance {
            break;
        }
        bounds.insert(bounds.partition_point(|&b| b < best.index), best.index);
        accepted.push((best, p_value));
    }
    accepted.sort_by_key(|(split, _)| split.index);
    Ok(describe(series, &bounds, &accepted))
}

/// A candidate change point: the index of the first value after it, and Q̂.
#[derive(Debug, Clone, Copy)]
struct Split {
    index: usize,
    statistic: f64,
}

/// The highest-scoring split over all segments delimited by `bounds` (sorted,
/// starting at 0 and ending at the series length); `None` if no segment is long
/// enough to split.
fn best_split(series: &[f64], bounds: &[usize], min_segment: usize) -> Option<Split> {
    bounds
        .windows(2)
        .filter_map(|w| {
            let split = best_split_of_segment(&series[w[0]..w[1]], min_segment)?;
            Some(Split {
                index: w[0] + split.index,
                statistic: split.statistic,
            })
        })
        .fold(None, |best: Option<Split>, split| match best {
            Some(b) if b.statistic >= split.statistic => Some(b),
            _ => Some(split),
        })
}

/// The best split of one segment, scanning every split point with at least
/// `min_segment` values on each side (the first one wins a tie).
///
/// Moving the split one step right moves one value from the right part to the
/// left, which updates the three distance sums in O(n); the whole scan is O(n²).
fn best_split_of_segment(segment: &[f64], min_segment: usize) -> Option<Split> {
    let n = segment.len();
    if n < 2 * min_segment {
        return None;
    }
    let mut sums = DistanceSums {
        within_left: 0.0,
        within_right: pairwise_distance_sum(segment),
        between: 0.0,
    };
    let mut best: Option<Split> = None;
    for (moved, &value) in segment.iter().enumerate().take(n - min_segment) {
        let to_left = distance_sum(value, &segment[..moved]);
        let to_right = distance_sum(value, &segment[moved + 1..]);
        sums.within_left += to_left;
        sums.within_right -= to_right;
        sums.between += to_right - to_left;
        let left_len = moved + 1;
        if left_len >= min_segment {
            let statistic = sums.energy_statistic(left_len, n - left_len);
            if best.is_none_or(|b| statistic > b.statistic) {
                best = Some(Split {
                    index: left_len,
                    statistic,
                });
            }
        }
    }
    best
}

/// Sums of |x − y| within the left part, within the right part, and across.
struct DistanceSums {
    within_left: f64,
    within_right: f64,
    between: f64,
}

impl DistanceSums {
    /// Q̂ = (m·k/(m + k)) · [ 2/(m·k)·Σ|x−y| − Σ|x−x'|/C(m,2) − Σ|y−y'|/C(k,2) ]
    /// for a left part of m ≥ 2 and a right part of k ≥ 2 values: the energy
    /// distance between the parts, scaled so that longer segments with the same
    /// shift score higher.
    fn energy_statistic(&self, m: usize, k: usize) -> f64 {
        let (m, k) = (m as f64, k as f64);
        let between = 2.0 * self.between / (m * k);
        let within_left = self.within_left / (m * (m - 1.0) / 2.0);
        let within_right = self.within_right / (k * (k - 1.0) / 2.0);
        m * k / (m + k) * (between - within_left - within_right)
    }
}

fn distance_sum(value: f64, others: &[f64]) -> f64 {
    others.iter().map(|other| (value - other).abs()).sum()
}

/// Σ_{i<j} |x_i − x_j|.
fn pairwise_distance_sum(values: &[f64]) -> f64 {
    values
        .iter()
        .enumerate()
        .map(|(i, &value)| distance_sum(value, &values[i + 1..]))
        .sum()
}

/// Permutation p-value of an observed best-split statistic: values are shuffled
/// within each segment (keeping the accepted change points), and the p-value is
/// (1 + #{shuffles scoring ≥ observed}) / (1 + permutations).
fn permutation_p(
    series: &[f64],
    bounds: &[usize],
    observed: f64,
    config: &ChangePointConfig,
    rng: &mut StdRng,
) -> f64 {
    let mut shuffled = series.to_vec();
    let at_least_as_high = (0..config.permutations)
        .filter(|_| {
            for w in bounds.windows(2) {
                shuffled[w[0]..w[1]].shuffle(rng);
            }
            best_split(&shuffled, bounds, config.min_segment)
                .is_some_and(|split| split.statistic >= observed)
        })
        .count();
    (1 + at_least_as_high) as f64 / (1 + config.permutations) as f64
}

/// Turns accepted splits into change points with the means of the final segments
/// on either side.
fn describe(series: &[f64], bounds: &[usize], accepted: &[(Split, f64)]) -> Vec<ChangePoint> {
    accepted
        .iter()
        .map(|&(split, p_value)| {
            let at = bounds.partition_point(|&b| b < split.index);
            ChangePoint {
                index: split.index,
                before_mean: mean(&series[bounds[at - 1]..split.index]),
                after_mean: mean(&series[split.index..bounds[at + 1]]),
                statistic: split.statistic,
                p_value,
            }
        })
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::test_data::normal_samples;

    fn detect(series: &[f64]) -> Vec<ChangePoint> {
        change_points(series, &ChangePointConfig::default()).expect("valid input")
    }

    /// `len` values of N(0, 1) noise from `seed` plus `mean_at(i)`.
    fn series(len: usize, seed: u64, mean_at: impl Fn(usize) -> f64) -> Vec<f64> {
        let noise = normal_samples(len, 0.0, 1.0, seed);
        noise
            .iter()
            .enumerate()
            .map(|(i, e)| mean_at(i) + e)
            .collect()
    }

    #[test]
    fn finds_a_planted_step_at_its_index() {
        let history = series(40, 21, |i| if i < 25 { 100.0 } else { 103.0 });
        let found = detect(&history);
        assert_eq!(found.len(), 1, "{found:?}");
        let step = found[0];
        assert_eq!(step.index, 25);
        assert!((step.before_mean - 100.0).abs() < 0.6, "{step:?}");
        assert!((step.after_mean - 103.0).abs() < 0.8, "{step:?}");
        assert!(step.p_value <= 0.05);
    }

    #[test]
    fn finds_a_step_in_the_last_few_runs() {
        let history = series(33, 22, |i| if i < 30 { 10.0 } else { 20.0 });
        let found = detect(&history);
        assert_eq!(found.iter().map(|c| c.index).collect::<Vec<_>>(), vec![30]);
    }

    #[test]
    fn finds_a_step_up_and_back_down() {
        let history = series(45, 23, |i| if (15..30).contains(&i) { 4.0 } else { 0.0 });
        let found = detect(&history);
        assert_eq!(
            found.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![15, 30]
        );
        assert!(found[0].after_mean > found[0].before_mean + 3.0);
        assert!(found[1].after_mean < found[1].before_mean - 3.0);
        // The means are of the final segments: the middle one is shared.
        assert_eq!(found[0].after_mean, found[1].before_mean);
    }

    #[test]
    fn finds_nothing_in_pure_noise() {
        assert!(detect(&series(40, 24, |_| 50.0)).is_empty());
        // Over many noise series the false-alarm rate stays near the 5% level:
        // with 20 series, 4 or more alarms would have probability under 2%.
        let alarms = (100..120)
            .filter(|&seed| !detect(&series(40, seed, |_| 50.0)).is_empty())
            .count();
        assert!(alarms <= 3, "{alarms} of 20 noise series had change points");
    }

    #[test]
    fn detects_a_slow_drift_of_small_steps() {
        // 60 runs, each 0.1 noise-sd slower than the last: no single step stands
        // out, but the drift totals 6 sd.
        let history = series(60, 25, |i| 0.1 * i as f64);
        let found = detect(&history);
        assert!(!found.is_empty(), "drift not detected");
        for point in &found {
            assert!(point.after_mean > point.before_mean, "{point:?}");
        }
    }

    #[test]
    fn detects_a_staircase_drift() {
        // Ten steps of 0.5 sd, six runs each.
        let history = series(60, 26, |i| 0.5 * (i / 6) as f64);
        let found = detect(&history);
        assert!(!found.is_empty(), "drift not detected");
        assert!(
            found.iter().all(|c| c.after_mean > c.before_mean),
            "{found:?}"
        );
    }

    #[test]
    fn nothing_to_find_in_short_empty_or_constant_series() {
        assert!(detect(&[]).is_empty());
        assert!(detect(&[1.0, 9.0, 9.0, 9.0, 9.0]).is_empty()); // < 2·min_segment
        assert!(detect(&[7.0; 30]).is_empty());
    }

    #[test]
    fn same_seed_same_answer() {
        let history = series(30, 27, |i| if i < 12 { 0.0 } else { 1.5 });
        let config = ChangePointConfig::default();
        let first = change_points(&history, &config).expect("valid input");
        let second = change_points(&history, &config).expect("valid input");
        assert_eq!(first, second);
    }

    #[test]
    fn energy_statistic_matches_direct_formula() {
        // Q̂ for [0, 1 | 4, 6] by hand: between = (4+6+3+5)·2/4 = 9, within left
        // = 1/1, within right = 2/1, scale 2·2/4 = 1, so Q̂ = 9 − 1 − 2 = 6.
        let split = best_split_of_segment(&[0.0, 1.0, 4.0, 6.0], 2).expect("long enough");
        assert_eq!(split.index, 2);
        assert!((split.statistic - 6.0).abs() < 1e-12, "{}", split.statistic);
    }

    #[test]
    fn rejects_bad_input() {
        let config = ChangePointConfig::default();
        assert!(matches!(
            change_points(&[1.0, f64::NAN], &config),
            Err(StatsError::NonFinite { index: 1, .. })
        ));
        for bad in [
            ChangePointConfig {
                permutations: 0,
                ..config
            },
            // The best possible p-value would be 1/19 > 0.05.
            ChangePointConfig {
                permutations: 18,
                ..config
            },
            ChangePointConfig {
                min_segment: 1,
                ..config
            },
            ChangePointConfig {
                significance: 0.0,
                ..config
            },
        ] {
            assert!(change_points(&[1.0, 2.0], &bad).is_err());
        }
    }
}
