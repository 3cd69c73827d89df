//! The gate's verdicts as JSON, for `metalab bench compare --json`: what the table says, in
//! fields a script reads instead of scraping the table (scripts/bench-calibrate does).
//!
//! The fields are those of [`ReportJson`], [`MetricJson`] and [`ChangePointMark`]; a value that
//! does not exist (no baseline, a baseline median of 0) is `null`. Samples and the metric's
//! history are left out: `metalab history export` has them.

use serde::{Serialize, Serializer};

use super::{ALPHA, ChangePointMark, GateReport, MetricVerdict};
use crate::ids::RunId;
use crate::model::record::Direction;
use crate::stats::Verdict;

/// A [`GateReport`] as JSON.
#[derive(Serialize)]
struct ReportJson<'a> {
    /// The run judged.
    run_id: &'a RunId,
    /// The baseline as given on the command line (`last:5`, `commit:16dbf78`), with a `run:`
    /// prefix resolved to the whole run id.
    baseline: String,
    /// The baseline in words, as the table's heading says it.
    baseline_description: String,
    /// Smallest relative change of a median that counts, as a fraction (0.05 is 5%).
    min_effect: f64,
    /// Significance level of each metric's Mann–Whitney U test.
    alpha: f64,
    /// Whether baseline runs measured under other conditions were compared too.
    allow_different_conditions: bool,
    /// One entry per benchmark metric of the run, in the table's order.
    metrics: Vec<MetricJson<'a>>,
}

/// A [`MetricVerdict`] as JSON: one row of the table with its notes.
#[derive(Serialize)]
struct MetricJson<'a> {
    /// The suite, benchmark and metric names; the table's first column is
    /// `suite/benchmark metric`.
    suite: &'a str,
    benchmark: &'a str,
    metric: &'a str,
    unit: &'a str,
    /// Which way is better: `higher` or `lower`.
    direction: Direction,
    /// Median of the baseline runs' pooled samples; `null` without a baseline.
    baseline_median: Option<f64>,
    /// Median of this run's samples.
    current_median: Option<f64>,
    /// Relative change of the median, `(current - baseline) / |baseline|`: -0.1 is 10% lower,
    /// whatever the direction; `null` without a baseline or with a baseline median of 0.
    change: Option<f64>,
    /// Two-sided Mann–Whitney p-value; `null` without a comparison.
    p_value: Option<f64>,
    /// `improved`, `unchanged`, `regressed` or `not_comparable` (the table's words, in lower
    /// case and with `_` for the space). Only `regressed` makes the exit status 4.
    #[serde(serialize_with = "verdict")]
    verdict: Verdict,
    /// Why the verdict is `unchanged` or `not_comparable`; `null` otherwise.
    reason: Option<&'a str>,
    /// What differs when the baseline was measured under other conditions than this run.
    conditions_note: Option<&'a str>,
    /// The runs whose samples make up the baseline, oldest first.
    baseline_runs: &'a [RunId],
    /// How many samples the baseline runs and this run have.
    baseline_samples: usize,
    current_samples: usize,
    /// Where the metric's history (runs under this run's conditions) shifted level, oldest first.
    change_points: &'a [ChangePointMark],
}

impl Serialize for GateReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ReportJson {
            run_id: &self.run_id,
            baseline: self.baseline.to_string(),
            baseline_description: self.baseline.describe(self.allow_different_conditions),
            min_effect: self.min_effect,
            alpha: ALPHA,
            allow_different_conditions: self.allow_different_conditions,
            metrics: self.metrics.iter().map(MetricJson::of).collect(),
        }
        .serialize(s)
    }
}

impl<'a> MetricJson<'a> {
    fn of(m: &'a MetricVerdict) -> Self {
        let c = m.comparison.as_ref();
        MetricJson {
            suite: &m.key.suite,
            benchmark: &m.key.benchmark,
            metric: &m.key.metric,
            unit: &m.unit,
            direction: m.direction,
            baseline_median: c.map(|c| c.baseline_median),
            current_median: m.current_median(),
            change: c.and_then(|c| c.change),
            p_value: c.map(|c| c.p_value),
            verdict: m.verdict,
            reason: m.reason.as_deref(),
            conditions_note: m.conditions_note.as_deref(),
            baseline_runs: &m.baseline_runs,
            baseline_samples: m.baseline.len(),
            current_samples: m.current.len(),
            change_points: &m.change_points,
        }
    }
}

fn verdict<S: Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::verdict_word(*v).replace(' ', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::BaselineSpec;
    use crate::history::MetricKey;
    use crate::stats::Comparison;

    fn report(comparison: Option<Comparison>, verdict: Verdict) -> GateReport {
        let id = RunId::parse("20261101-090000-0001").unwrap();
        GateReport {
            run_id: id.clone(),
            baseline: BaselineSpec::Last(3),
            min_effect: 0.05,
            allow_different_conditions: false,
            metrics: vec![MetricVerdict {
                key: MetricKey {
                    suite: "throughput".into(),
                    benchmark: "tcp-1-stream".into(),
                    metric: "throughput".into(),
                },
                unit: "Gbit/s".into(),
                direction: Direction::Higher,
                current: vec![2.0, 2.2, 2.4],
                baseline_runs: vec![id],
                baseline: vec![2.8; 4],
                comparison,
                verdict,
                reason: None,
                conditions_note: None,
                history: Vec::new(),
                change_points: Vec::new(),
            }],
        }
    }

    #[test]
    fn a_comparison_becomes_fields_and_its_absence_nulls() {
        let compared = Comparison {
            baseline_median: 2.8,
            current_median: 2.2,
            change: Some(-0.2),
            p_value: 0.01,
            verdict: Verdict::Regressed,
            reason: None,
            n_baseline: 4,
            n_current: 3,
        };
        let json = serde_json::to_value(report(Some(compared), Verdict::Regressed)).unwrap();
        assert_eq!(json["baseline"], "last:3");
        assert_eq!(
            json["baseline_description"],
            "the last 3 runs under the same conditions"
        );
        let m = &json["metrics"][0];
        assert_eq!(m["direction"], "higher");
        assert_eq!(m["verdict"], "regressed");
        assert_eq!(
            (m["baseline_median"].as_f64(), m["change"].as_f64()),
            (Some(2.8), Some(-0.2))
        );
        assert_eq!(
            (
                m["baseline_samples"].as_u64(),
                m["current_samples"].as_u64()
            ),
            (Some(4), Some(3))
        );

        let json = serde_json::to_value(report(None, Verdict::NotComparable)).unwrap();
        let m = &json["metrics"][0];
        assert_eq!(m["verdict"], "not_comparable");
        assert!(
            m["baseline_median"].is_null() && m["p_value"].is_null(),
            "{m}"
        );
        assert_eq!(
            m["current_median"].as_f64(),
            Some(2.2),
            "this run's median all the same"
        );
    }
}
