//! The regression gate: each benchmark metric of a run against a baseline taken from the history.
//!
//! A verdict needs both a significant Mann–Whitney U test and a change of at least the minimum
//! effect ([`crate::stats::compare`]), and, with two or more baseline runs, a median outside what
//! those runs do by themselves ([`crate::stats::RunNoiseBand`]). Numbers measured under
//! different conditions (the machine, VM shape, accelerator, box) are never compared silently: such a
//! metric is `not comparable` unless the caller allows it, and the comparison then says what
//! differed.
//!
//! The same verdicts serve `metalab bench compare`, `metalab run --baseline` (through the
//! [`crate::report::gate`] reporter) and the HTML report, which also plots each metric's history
//! with its change points.

mod baseline;
mod evaluate;
mod json;
pub mod junit;
mod table;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use baseline::BaselineSpec;
pub use evaluate::{evaluate, shifts, unjudged};
pub use table::render;

use crate::exit::Status;
use crate::history::MetricKey;
use crate::ids::RunId;
use crate::model::record::Direction;
use crate::stats::{Comparison, Verdict};

/// Significance level of every comparison.
pub const ALPHA: f64 = 0.05;

/// How far back the gate looks: the newest this many runs of a metric (and as many under the
/// judged run's conditions), before the judged run; the history plot and its change points
/// cover as many. The runs a `run:` or `commit:` baseline names count whatever their age. A
/// bounded window keeps the gate's cost flat however long the history grows (Apache Otava
/// analyses windows too).
pub const WINDOW: usize = 100;

/// Smallest relative change of a median that counts, unless configured: 5%.
pub use crate::config::DEFAULT_MIN_EFFECT;

/// How to judge a run.
#[derive(Debug, Clone)]
pub struct Options {
    pub baseline: BaselineSpec,
    /// Smallest relative change that counts, as a fraction (0.05 is 5%).
    pub min_effect: f64,
    /// Compare with baseline runs measured under other conditions (and say so).
    pub allow_different_conditions: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            baseline: BaselineSpec::default(),
            min_effect: DEFAULT_MIN_EFFECT,
            allow_different_conditions: false,
        }
    }
}

/// The verdicts of one run. As JSON (`metalab bench compare --json`) it has the fields
/// documented in the `json` module.
#[derive(Debug, Clone)]
pub struct GateReport {
    pub run_id: RunId,
    pub baseline: BaselineSpec,
    pub min_effect: f64,
    pub allow_different_conditions: bool,
    pub metrics: Vec<MetricVerdict>,
}

impl GateReport {
    pub fn regressed(&self) -> bool {
        self.metrics.iter().any(|m| m.verdict == Verdict::Regressed)
    }

    /// The exit status of the comparison alone.
    pub fn status(&self) -> Status {
        if self.regressed() {
            Status::Regressed
        } else {
            Status::Passed
        }
    }
}

/// One metric's verdict, with what it was decided from.
#[derive(Debug, Clone)]
pub struct MetricVerdict {
    pub key: MetricKey,
    pub unit: String,
    pub direction: Direction,
    /// This run's samples.
    pub current: Vec<f64>,
    /// The runs whose samples make up the baseline, oldest first.
    pub baseline_runs: Vec<RunId>,
    /// Their samples, pooled.
    pub baseline: Vec<f64>,
    /// `None` when there was nothing to compare with.
    pub comparison: Option<Comparison>,
    pub verdict: Verdict,
    /// Why the verdict is `unchanged` or `not comparable`.
    pub reason: Option<String>,
    /// Set when the baseline was measured under other conditions than this run: what differs.
    pub conditions_note: Option<String>,
    /// The metric's run medians under this run's conditions, oldest first, ending with this run.
    pub history: Vec<HistoryPoint>,
    pub change_points: Vec<ChangePointMark>,
}

impl MetricVerdict {
    /// This run's median: the comparison's, or the samples' own when there was nothing to
    /// compare with.
    pub fn current_median(&self) -> Option<f64> {
        match &self.comparison {
            Some(c) => Some(c.current_median),
            None => crate::stats::quantile(&self.current, 0.5).ok(),
        }
    }
}

/// One run in a metric's history.
#[derive(Debug, Clone)]
pub struct HistoryPoint {
    pub run_id: RunId,
    pub started: DateTime<Utc>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub in_baseline: bool,
    pub is_current: bool,
}

/// A change point of a metric's history: the run from which the level shifted. In JSON without
/// `index` (the history is not there): `run_id`, `started` (RFC 3339), `before`, `after`, `p_value`.
#[derive(Debug, Clone, Serialize)]
pub struct ChangePointMark {
    /// Index into [`MetricVerdict::history`].
    #[serde(skip)]
    pub index: usize,
    /// The first run at the new level.
    pub run_id: RunId,
    pub started: DateTime<Utc>,
    /// Mean of the run medians before the shift (back to the previous change point or the start
    /// of the history) and from it on (to the next one or the end), in the metric's unit.
    pub before: f64,
    pub after: f64,
    /// Permutation p-value of the split (see [`crate::stats::change_points`]).
    pub p_value: f64,
}

/// A verdict as people read it.
pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Improved => "improved",
        Verdict::Unchanged => "unchanged",
        Verdict::Regressed => "regressed",
        Verdict::NotComparable => "not comparable",
    }
}

/// Parses a minimum effect written as a percentage (`5%`) or a fraction (`0.05`).
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (trimmed, 1.0),
    };
    let value = number
        .parse::<f64>()
        .map_err(|_| format!("`{text}` is not a percentage (5%) or a fraction (0.05)"))?
        / scale;
    if value.is_finite() && (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{text}` must be at least 0% and below 100%"))
    }
}

/// A fraction as a percentage: `5%`, `2.5%`.
pub fn format_percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// A number with about four significant digits: enough to see a 0.1% change, short enough to
/// read in a table.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_and_percentages() {
        assert_eq!(parse_fraction("5%"), Ok(0.05));
        assert_eq!(parse_fraction("0.1"), Ok(0.1));
        assert_eq!(parse_fraction(" 2.5 % "), Ok(0.025));
        assert!(parse_fraction("150%").is_err());
        assert!(parse_fraction("-1%").is_err());
        assert!(parse_fraction("lots").is_err());
    }
}
