//! The regression gate: is a run better, worse, or the same as its baseline?

use serde::{Deserialize, Serialize};

use super::error::{StatsError, check_open_unit, check_samples};
use super::mann_whitney::{mann_whitney_u, min_achievable_p_value};
use super::quantile::{median_sorted, sorted};

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Bigger is better, e.g. throughput.
    HigherIsBetter,
    /// Smaller is better, e.g. latency.
    LowerIsBetter,
}

/// The gate's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Significantly and materially better.
    Improved,
    /// No significant or no material difference.
    Unchanged,
    /// Significantly and materially worse.
    Regressed,
    /// The data cannot support a decision; [`Comparison::reason`] says why.
    NotComparable,
}

/// Result of [`compare`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Median of the baseline samples.
    pub baseline_median: f64,
    /// Median of the current samples.
    pub current_median: f64,
    /// Relative change of the median, `(current − baseline) / |baseline|`: +0.1 is
    /// 10% higher, whatever the [`Direction`]. `None` when the baseline median is 0.
    pub change: Option<f64>,
    /// Two-sided Mann–Whitney p-value of baseline against current.
    pub p_value: f64,
    /// The decision.
    pub verdict: Verdict,
    /// Why the verdict is `Unchanged` or `NotComparable`, in words for a report;
    /// `None` for `Improved` and `Regressed`.
    pub reason: Option<String>,
    /// Number of baseline samples.
    pub n_baseline: usize,
    /// Number of current samples.
    pub n_current: usize,
}

/// Compares `current` samples of a metric against `baseline` samples.
///
/// The verdict is decided by these rules, in order:
/// 1. `NotComparable` if no data of these sizes could be significant: the smallest
///    p-value the Mann–Whitney test can give for them
///    ([`min_achievable_p_value`]) exceeds `alpha`. For example 3 against 3 can do
///    no better than 0.1, while 4 against 4 reaches 0.029.
/// 2. `NotComparable` if the baseline median is 0 (no relative change exists).
/// 3. `Unchanged` if the Mann–Whitney p-value exceeds `alpha` (not significant).
/// 4. `Unchanged` if |change| < `min_effect` (significant, but too small to matter:
///    on a quiet machine many samples make even 0.5% shifts significant).
/// 5. `Unchanged` if the medians and the ranks disagree on the direction of the
///    shift (a difference in shape rather than a shift; no clear verdict).
/// 6. Otherwise `Improved` or `Regressed`, by the sign of the change and
///    `direction`.
///
/// Both a significant test and a material effect are required, so that neither
/// noise nor trivially small but well-measured shifts fail the gate.
///
/// Errors: empty or non-finite samples (named "baseline" or "current"), `alpha`
/// outside (0, 1), `min_effect` negative or not finite.
pub fn compare(
    baseline: &[f64],
    current: &[f64],
    direction: Direction,
    min_effect: f64,
    alpha: f64,
) -> Result<Comparison, StatsError> {
    check_samples("baseline", baseline)?;
    check_samples("current", current)?;
    check_open_unit("alpha", alpha)?;
    check_min_effect(min_effect)?;
    let test = mann_whitney_u(baseline, current)?;
    let baseline_median = median_sorted(&sorted(baseline));
    let current_median = median_sorted(&sorted(current));
    let change = (baseline_median != 0.0)
        .then(|| (current_median - baseline_median) / baseline_median.abs());
    let (verdict, reason) = decide(&Evidence {
        n_baseline: baseline.len(),
        n_current: current.len(),
        change,
        p_value: test.p_value,
        prob_current_greater: 1.0 - test.prob_a_greater,
        direction,
        min_effect,
        alpha,
    });
    Ok(Comparison {
        baseline_median,
        current_median,
        change,
        p_value: test.p_value,
        verdict,
        reason,
        n_baseline: baseline.len(),
        n_current: current.len(),
    })
}

fn check_min_effect(min_effect: f64) -> Result<(), StatsError> {
    if min_effect.is_finite() && min_effect >= 0.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name: "min_effect",
            reason: format!("must be a finite fraction ≥ 0, got {min_effect}"),
        })
    }
}

/// Everything the verdict rules look at.
struct Evidence {
    n_baseline: usize,
    n_current: usize,
    change: Option<f64>,
    p_value: f64,
    prob_current_greater: f64,
    direction: Direction,
    min_effect: f64,
    alpha: f64,
}

/// Applies the rules documented on [`compare`], in order.
fn decide(e: &Evidence) -> (Verdict, Option<String>) {
    let min_p = min_achievable_p_value(e.n_baseline, e.n_current);
    if min_p > e.alpha {
        let why = format!(
            "too few samples: with {} baseline and {} current samples the smallest \
             achievable p-value is {min_p:.3}, above alpha {}",
            e.n_baseline, e.n_current, e.alpha
        );
        return (Verdict::NotComparable, Some(why));
    }
    let Some(change) = e.change else {
        let why = "baseline median is 0, so there is no relative change".to_owned();
        return (Verdict::NotComparable, Some(why));
    };
    if e.p_value > e.alpha {
        let why = format!("not significant: p = {:.3} > alpha {}", e.p_value, e.alpha);
        return (Verdict::Unchanged, Some(why));
    }
    if change.abs() < e.min_effect {
        let why = format!(
            "significant but small: change {:+.2}% is below the minimum effect {:.2}%",
            change * 100.0,
            e.min_effect * 100.0
        );
        return (Verdict::Unchanged, Some(why));
    }
    if (change > 0.0) != (e.prob_current_greater > 0.5) {
        let why = "the medians and the ranks disagree on the direction of the shift".to_owned();
        return (Verdict::Unchanged, Some(why));
    }
    let better = match e.direction {
        Direction::HigherIsBetter => change > 0.0,
        Direction::LowerIsBetter => change < 0.0,
    };
    let verdict = if better {
        Verdict::Improved
    } else {
        Verdict::Regressed
    };
    (verdict, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::test_data::normal_samples;

    const ALPHA: f64 = 0.05;
    const MIN_EFFECT: f64 = 0.05;

    fn verdict(baseline: &[f64], current: &[f64], direction: Direction) -> Comparison {
        compare(baseline, current, direction, MIN_EFFECT, ALPHA).expect("valid input")
    }

    #[test]
    fn throughput_drop_is_a_regression_and_a_latency_drop_an_improvement() {
        let before = normal_samples(10, 1000.0, 10.0, 11);
        let after = normal_samples(10, 900.0, 10.0, 12);
        let throughput = verdict(&before, &after, Direction::HigherIsBetter);
        assert_eq!(throughput.verdict, Verdict::Regressed);
        assert_eq!(throughput.reason, None);
        let change = throughput.change.expect("baseline median != 0");
        assert!((change + 0.1).abs() < 0.02, "about -10%: {change}");
        assert!(throughput.p_value < 0.001);

        let latency = verdict(&before, &after, Direction::LowerIsBetter);
        assert_eq!(latency.verdict, Verdict::Improved);
    }

    #[test]
    fn latency_rise_is_a_regression() {
        let before = normal_samples(12, 50.0, 2.0, 13);
        let after = normal_samples(12, 60.0, 2.0, 14);
        let result = verdict(&before, &after, Direction::LowerIsBetter);
        assert_eq!(result.verdict, Verdict::Regressed);
    }

    #[test]
    fn significant_but_small_change_is_unchanged() {
        let before = normal_samples(20, 100.0, 0.1, 15);
        let after = normal_samples(20, 101.0, 0.1, 16);
        let result = verdict(&before, &after, Direction::HigherIsBetter);
        assert!(result.p_value < 1e-6);
        assert_eq!(result.verdict, Verdict::Unchanged);
        assert!(
            result
                .reason
                .expect("explained")
                .contains("below the minimum effect")
        );
    }

    #[test]
    fn large_but_noisy_change_is_unchanged() {
        let before = [100.0, 60.0, 140.0, 90.0, 120.0];
        let after = [110.0, 70.0, 150.0, 100.0, 130.0];
        let result = verdict(&before, &after, Direction::HigherIsBetter);
        assert!(result.change.expect("baseline median != 0") > MIN_EFFECT);
        assert_eq!(result.verdict, Verdict::Unchanged);
        assert!(
            result
                .reason
                .expect("explained")
                .starts_with("not significant")
        );
    }

    #[test]
    fn medians_and_ranks_pointing_opposite_ways_is_unchanged() {
        // Most current values beat most baseline values (ranks say "higher"), yet
        // the current median is lower: a change of shape, not a shift.
        let repeat = |pattern: &[f64]| pattern.repeat(4);
        let baseline = repeat(&[1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0, 5.0]);
        let current = repeat(&[4.0, 4.0, 4.0, 4.0, 4.0, 9.0, 9.0, 9.0, 9.0]);
        let result = verdict(&baseline, &current, Direction::HigherIsBetter);
        assert!(result.p_value < ALPHA, "{result:?}");
        assert!(result.change.expect("baseline median != 0") < -MIN_EFFECT);
        assert_eq!(result.verdict, Verdict::Unchanged);
        assert!(result.reason.expect("explained").contains("disagree"));
    }

    #[test]
    fn identical_samples_are_unchanged() {
        let samples = normal_samples(10, 5.0, 1.0, 17);
        let result = verdict(&samples, &samples, Direction::HigherIsBetter);
        assert_eq!(
            (result.verdict, result.change),
            (Verdict::Unchanged, Some(0.0))
        );
        assert_eq!(result.p_value, 1.0);
    }

    #[test]
    fn three_against_three_can_never_be_significant() {
        // Completely separated and 10x apart, yet the best possible p is 0.1.
        let result = verdict(
            &[1.0, 2.0, 3.0],
            &[10.0, 20.0, 30.0],
            Direction::LowerIsBetter,
        );
        assert_eq!(result.verdict, Verdict::NotComparable);
        let reason = result.reason.expect("explained");
        assert!(
            reason.contains("smallest achievable p-value is 0.100"),
            "{reason}"
        );
    }

    #[test]
    fn four_against_four_can_be_significant() {
        let result = verdict(
            &[1.0, 2.0, 3.0, 4.0],
            &[10.0, 20.0, 30.0, 40.0],
            Direction::LowerIsBetter,
        );
        assert_eq!(result.verdict, Verdict::Regressed);
        assert!((result.p_value - 2.0 / 70.0).abs() < 1e-12);
    }

    #[test]
    fn one_sample_against_many_is_not_comparable() {
        // Exact tests would allow 2/101 here, but sizes beyond the exact range use
        // the normal approximation, whose best p for 1 against 100 is about 0.09.
        let many: Vec<f64> = (0..100).map(f64::from).collect();
        let result = verdict(&[1000.0], &many, Direction::HigherIsBetter);
        assert_eq!(result.verdict, Verdict::NotComparable);
    }

    #[test]
    fn zero_baseline_median_is_not_comparable() {
        let result = verdict(&[0.0; 6], &[1.0; 6], Direction::HigherIsBetter);
        assert_eq!(
            (result.verdict, result.change),
            (Verdict::NotComparable, None)
        );
    }

    #[test]
    fn rejects_bad_input() {
        let ok = [1.0, 2.0, 3.0];
        let hi = Direction::HigherIsBetter;
        assert_eq!(
            compare(&[], &ok, hi, MIN_EFFECT, ALPHA),
            Err(StatsError::Empty { what: "baseline" })
        );
        assert!(matches!(
            compare(&ok, &[f64::NAN], hi, MIN_EFFECT, ALPHA),
            Err(StatsError::NonFinite {
                what: "current",
                ..
            })
        ));
        for alpha in [0.0, 1.0, f64::NAN] {
            assert!(compare(&ok, &ok, hi, MIN_EFFECT, alpha).is_err());
        }
        for min_effect in [-0.1, f64::INFINITY, f64::NAN] {
            assert!(compare(&ok, &ok, hi, min_effect, ALPHA).is_err());
        }
    }

    #[test]
    fn serializes_verdict_and_reason() {
        let result = verdict(
            &[1.0, 2.0, 3.0],
            &[10.0, 20.0, 30.0],
            Direction::LowerIsBetter,
        );
        let json = serde_json::to_value(&result).expect("serializable");
        assert_eq!(json["verdict"], "NotComparable");
        assert!(json["reason"].is_string());
    }
}
