//! Run-to-run noise: how far a new run's median may fall from earlier runs' medians by chance.
//!
//! Samples within one run share its VM, its boot and the host's load at the time, so they vary
//! less than runs do. A rank test over pooled samples treats them as independent and, on a host
//! where whole runs drift (TCG on a busy machine), calls such drift significant. The run is the
//! independent unit: this band is a prediction interval for one more run's median, from the
//! baseline runs' medians (Student's t, two-sided 95%).

use super::quantile::{median_sorted, sorted};

/// Where one more run's median is expected to fall, at 95%, given the baseline runs' medians.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunNoiseBand {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// Number of baseline runs it was made from.
    pub runs: usize,
}

impl RunNoiseBand {
    /// The band from each baseline run's samples; `None` with fewer than two runs (one run
    /// says nothing about how runs differ) or an empty run.
    pub fn of_runs<'a>(runs: impl IntoIterator<Item = &'a [f64]>) -> Option<RunNoiseBand> {
        let medians: Vec<f64> = runs
            .into_iter()
            .map(|r| (!r.is_empty()).then(|| median_sorted(&sorted(r))))
            .collect::<Option<_>>()?;
        if medians.len() < 2 {
            return None;
        }
        let k = medians.len() as f64;
        let mean = medians.iter().sum::<f64>() / k;
        let var = medians.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (k - 1.0);
        let half = t_975(medians.len() - 1) * var.sqrt() * (1.0 + 1.0 / k).sqrt();
        Some(RunNoiseBand {
            low: mean - half,
            high: mean + half,
            runs: medians.len(),
        })
    }

    /// Whether `value` lies inside the band.
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (df ≥ 1).
fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    TABLE.get(df.max(1) - 1).copied().unwrap_or(1.96)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(r: &[Vec<f64>]) -> impl Iterator<Item = &[f64]> {
        r.iter().map(Vec::as_slice)
    }

    #[test]
    fn one_run_gives_no_band() {
        assert_eq!(RunNoiseBand::of_runs(runs(&[vec![1.0, 2.0, 3.0]])), None);
    }

    #[test]
    fn runs_that_agree_give_a_narrow_band_and_runs_that_drift_a_wide_one() {
        let steady = RunNoiseBand::of_runs(runs(&[vec![2.80, 2.81], vec![2.79, 2.80], vec![2.80]]))
            .expect("three runs");
        assert!(
            steady.contains(2.80) && !steady.contains(2.70),
            "{steady:?}"
        );
        let drifting =
            RunNoiseBand::of_runs(runs(&[vec![2.2], vec![2.8], vec![2.5]])).expect("three");
        // A new run at 2.0 is well within what these runs do by themselves.
        assert!(drifting.contains(2.0), "{drifting:?}");
        assert!(!drifting.contains(0.5), "{drifting:?}");
    }

    #[test]
    fn the_band_is_a_t_prediction_interval() {
        // Medians 1, 2, 3: mean 2, sd 1, t(2) = 4.303, sqrt(1 + 1/3).
        let b = RunNoiseBand::of_runs(runs(&[vec![1.0], vec![2.0], vec![3.0]])).expect("band");
        let half = 4.303 * (4.0_f64 / 3.0).sqrt();
        assert!((b.high - (2.0 + half)).abs() < 1e-9 && (b.low - (2.0 - half)).abs() < 1e-9);
        assert_eq!(b.runs, 3);
    }
}
