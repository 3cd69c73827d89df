//! Mann–Whitney U test (Wilcoxon rank-sum), two-sided.
//!
//! A rank test suits benchmark samples: it needs no normality, and a single wild
//! sample moves it by one rank at most. The numbers follow SciPy's
//! `scipy.stats.mannwhitneyu(a, b, alternative="two-sided")` so results can be
//! checked against it.

use serde::{Deserialize, Serialize};

use super::error::{StatsError, check_samples};
use super::normal::normal_sf;

/// Largest size of *each* sample for which the exact null distribution is used
/// (when there are also no ties). Beyond it the normal approximation is already
/// close, and this is also the point where SciPy's `method="auto"` switches.
pub const EXACT_MAX_SIZE: usize = 8;

/// How the p-value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// From the exact permutation distribution of U: both samples have at most
    /// [`EXACT_MAX_SIZE`] values and no value occurs twice.
    Exact,
    /// From the normal approximation with tie-corrected variance and continuity
    /// correction.
    Asymptotic,
}

/// Result of [`mann_whitney_u`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U of the first sample `a`: the number of pairs (x from `a`, y from `b`) with
    /// x > y, a tied pair counting ½. It ranges over 0..=n_a·n_b; SciPy's
    /// `statistic` is the same number.
    pub u: f64,
    /// Two-sided p-value for "the two samples come from the same distribution";
    /// capped at 1.
    pub p_value: f64,
    /// Whether `p_value` is exact or approximate.
    pub method: Method,
    /// Number of samples in `a`.
    pub n_a: usize,
    /// Number of samples in `b`.
    pub n_b: usize,
    /// `u / (n_a·n_b)`: the probability that a random sample of `a` exceeds one of
    /// `b` (ties counting ½). 0.5 means no tendency either way; this is the
    /// direction and size of the effect that the p-value tests.
    pub prob_a_greater: f64,
}

/// Two-sided Mann–Whitney U test of `a` against `b`.
///
/// Ties get average ranks. With both samples of size ≤ [`EXACT_MAX_SIZE`] and no
/// ties, the p-value is exact: twice the chance of a U at least as far from its
/// mean as the observed one. Otherwise z = (max(U_a, U_b) − n_a·n_b/2 − ½)/σ, with
/// σ² = n_a·n_b/12 · ((n + 1) − Σ(t³ − t)/(n(n − 1))) over tie groups of size t,
/// and p = 2·P(Z > z). When every value is the same, σ = 0 and p = 1.
///
/// Errors: an empty or non-finite sample ([`StatsError::Empty`],
/// [`StatsError::NonFinite`], naming it "a" or "b").
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Result<MannWhitney, StatsError> {
    check_samples("a", a)?;
    check_samples("b", b)?;
    let (n_a, n_b) = (a.len(), b.len());
    let ranking = Ranking::of(a, b);
    let rank_sum_a: f64 = ranking.ranks[..n_a].iter().sum();
    let u = rank_sum_a - (n_a * (n_a + 1)) as f64 / 2.0;
    let pairs = (n_a * n_b) as f64;
    let extreme_u = u.max(pairs - u);
    let exact = n_a.max(n_b) <= EXACT_MAX_SIZE && ranking.tie_term == 0.0;
    let (method, p_value) = if exact {
        (Method::Exact, exact_p(extreme_u, n_a, n_b))
    } else {
        let p = asymptotic_p(extreme_u, n_a, n_b, ranking.tie_term);
        (Method::Asymptotic, p)
    };
    Ok(MannWhitney {
        u,
        p_value,
        method,
        n_a,
        n_b,
        prob_a_greater: u / pairs,
    })
}

/// The smallest two-sided p-value [`mann_whitney_u`] can return for samples of
/// these sizes without ties (reached when every value of one sample exceeds every
/// value of the other). If it is above a significance level, no data of these
/// sizes can be significant at that level: e.g. 3 against 3 gives at best 0.1.
///
/// With ties the approximate test can occasionally go slightly lower, because ties
/// shrink the variance. Returns 1 if either size is 0.
pub fn min_achievable_p_value(n_a: usize, n_b: usize) -> f64 {
    if n_a == 0 || n_b == 0 {
        return 1.0;
    }
    let separated = (n_a * n_b) as f64;
    if n_a.max(n_b) <= EXACT_MAX_SIZE {
        exact_p(separated, n_a, n_b)
    } else {
        asymptotic_p(separated, n_a, n_b, 0.0)
    }
}

/// Average ranks (1-based) of `a` followed by `b`, and Σ(t³ − t) over tie groups.
struct Ranking {
    ranks: Vec<f64>,
    tie_term: f64,
}

impl Ranking {
    fn of(a: &[f64], b: &[f64]) -> Self {
        let values: Vec<f64> = a.iter().chain(b).copied().collect();
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        let mut ranks = vec![0.0; values.len()];
        let mut tie_term = 0.0;
        let mut start = 0;
        while start < order.len() {
            let value = values[order[start]];
            let end = start + order[start..].partition_point(|&i| values[i] == value);
            // Positions start..end hold ranks start+1 ..= end; all get their mean.
            let average = (start + 1 + end) as f64 / 2.0;
            for &i in &order[start..end] {
                ranks[i] = average;
            }
            let t = (end - start) as f64;
            tie_term += t * t * t - t;
            start = end;
        }
        Self { ranks, tie_term }
    }
}

/// Exact two-sided p-value: 2·P(U ≥ `extreme_u`) under the null, where
/// `extreme_u` = max(U_a, U_b) is an integer (no ties), capped at 1.
fn exact_p(extreme_u: f64, n_a: usize, n_b: usize) -> f64 {
    let counts = u_counts(n_a, n_b);
    let total: u64 = counts.iter().sum();
    let from = extreme_u.round() as usize;
    let tail: u64 = counts.iter().skip(from).sum();
    (2.0 * tail as f64 / total as f64).min(1.0)
}

/// `counts[u]` = number of interleavings of `m` values from one sample and `n`
/// from the other (all distinct) for which the first sample's U equals u.
///
/// Recurrence on the largest value: if it belongs to the first sample it beats all
/// `n` values of the second, adding `n` to U; otherwise it adds nothing. Table
/// entry (i, j) has i·j + 1 counts; with both sizes ≤ [`EXACT_MAX_SIZE`] the
/// largest count is C(16, 8) = 12870, far from overflow.
fn u_counts(m: usize, n: usize) -> Vec<u64> {
    // `previous[j]` is the distribution for (i − 1, j); i = 0 has only U = 0.
    let mut previous: Vec<Vec<u64>> = vec![vec![1]; n + 1];
    for i in 1..=m {
        let mut current: Vec<Vec<u64>> = vec![vec![1]];
        for j in 1..=n {
            let mut counts = vec![0; i * j + 1];
            for (u, &c) in previous[j].iter().enumerate() {
                counts[u + j] += c;
            }
            for (u, &c) in current[j - 1].iter().enumerate() {
                counts[u] += c;
            }
            current.push(counts);
        }
        previous = current;
    }
    previous.swap_remove(n)
}

/// Normal-approximation two-sided p-value with continuity correction and the
/// tie-corrected variance; 1 when the variance is zero (all values equal).
fn asymptotic_p(extreme_u: f64, n_a: usize, n_b: usize, tie_term: f64) -> f64 {
    let (n_a, n_b) = (n_a as f64, n_b as f64);
    let n = n_a + n_b;
    let variance = n_a * n_b / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 {
        return 1.0;
    }
    let z = (extreme_u - n_a * n_b / 2.0 - 0.5) / variance.sqrt();
    (2.0 * normal_sf(z)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
            "got {got:e}, want {want:e}"
        );
    }

    /// Asserts `mann_whitney_u(a, b)` against SciPy and that swapping the samples
    /// mirrors U and keeps p.
    fn check(a: &[f64], b: &[f64], method: Method, u: f64, p: f64) {
        let result = mann_whitney_u(a, b).expect("valid input");
        assert_eq!(result.method, method);
        assert_eq!(result.u, u);
        assert_close(result.p_value, p);
        let swapped = mann_whitney_u(b, a).expect("valid input");
        assert_eq!(swapped.u, (a.len() * b.len()) as f64 - u);
        assert_close(swapped.p_value, p);
    }

    // Reference values below: scipy 1.17.1
    // `scipy.stats.mannwhitneyu(a, b, alternative="two-sided", method=M)` with M
    // the method named in each test (scripts/stats-reference.py).

    #[test]
    fn exact_without_ties() {
        let a = [1.1, 2.3, 3.5, 4.2, 5.0];
        let b = [3.9, 4.8, 6.1, 7.7, 8.2, 9.4];
        check(&a, &b, Method::Exact, 3.0, 0.030_303_030_303_030_304);
    }

    #[test]
    fn exact_fully_separated_three_against_three() {
        check(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], Method::Exact, 0.0, 0.1);
    }

    #[test]
    fn exact_at_largest_exact_size() {
        let a = [12.1, 13.4, 11.8, 14.2, 12.9, 13.1, 12.5, 15.0];
        let b = [13.9, 14.8, 15.5, 13.6, 16.1, 14.4, 15.2, 12.2];
        check(&a, &b, Method::Exact, 12.0, 0.037_917_637_917_637_914);
    }

    #[test]
    fn exact_at_centre_is_capped_at_one() {
        check(&[1.0, 4.0], &[2.0, 3.0], Method::Exact, 2.0, 1.0);
    }

    #[test]
    fn asymptotic_without_ties_for_larger_samples() {
        let a = [5.1, 4.9, 6.2, 5.8, 6.0, 5.5, 5.3, 6.4, 4.7, 5.9, 6.1, 5.0];
        let b = [6.3, 6.8, 7.1, 5.6, 6.6, 7.4, 6.9, 5.7, 7.0, 6.5];
        check(
            &a,
            &b,
            Method::Asymptotic,
            13.0,
            0.002_168_568_419_088_868_7,
        );
    }

    #[test]
    fn asymptotic_with_ties() {
        let a = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0];
        let b = [3.0, 4.0, 4.0, 5.0, 5.0, 6.0];
        check(&a, &b, Method::Asymptotic, 3.5, 0.012_999_854_364_387_305);
    }

    #[test]
    fn small_samples_with_ties_fall_back_to_asymptotic() {
        check(
            &[1.0, 1.0, 2.0],
            &[2.0, 3.0, 3.0],
            Method::Asymptotic,
            0.5,
            0.110_148_924_185_946_99,
        );
    }

    #[test]
    fn exact_distribution_is_symmetric_and_complete() {
        let counts = u_counts(4, 3);
        assert_eq!(counts.iter().sum::<u64>(), 35); // C(7, 3)
        let mirrored: Vec<u64> = counts.iter().rev().copied().collect();
        assert_eq!(counts, mirrored);
        assert_eq!(u_counts(2, 2), vec![1, 1, 2, 1, 1]);
    }

    #[test]
    fn all_values_equal_gives_p_one() {
        let result = mann_whitney_u(&[5.0; 4], &[5.0; 6]).expect("valid input");
        assert_eq!(
            (result.u, result.p_value, result.prob_a_greater),
            (12.0, 1.0, 0.5)
        );
    }

    #[test]
    fn prob_a_greater_shows_direction() {
        let result = mann_whitney_u(&[10.0, 11.0, 12.0], &[1.0, 2.0]).expect("valid input");
        assert_eq!(result.prob_a_greater, 1.0);
    }

    #[test]
    fn min_achievable_p_matches_separated_samples() {
        assert_close(min_achievable_p_value(3, 3), 0.1);
        assert_close(min_achievable_p_value(4, 4), 2.0 / 70.0);
        assert_eq!(min_achievable_p_value(0, 5), 1.0);
        let a: Vec<f64> = (0..12).map(f64::from).collect();
        let b: Vec<f64> = (100..103).map(f64::from).collect();
        let separated = mann_whitney_u(&a, &b).expect("valid input");
        assert_close(min_achievable_p_value(12, 3), separated.p_value);
    }

    #[test]
    fn rejects_empty_and_non_finite_samples() {
        assert_eq!(
            mann_whitney_u(&[], &[1.0]),
            Err(StatsError::Empty { what: "a" })
        );
        assert!(matches!(
            mann_whitney_u(&[1.0], &[2.0, f64::NAN]),
            Err(StatsError::NonFinite {
                what: "b",
                index: 1,
                ..
            })
        ));
    }
}
