//! Judging each metric of one run against its baseline from the history.

use chrono::{DateTime, Utc};

use super::baseline::BaselineSpec;
use super::{ALPHA, ChangePointMark, GateReport, HistoryPoint, MetricVerdict, Options, WINDOW};
use crate::history::{
    ComparableConditions, History, HistoryError, MetricKey, MetricRun, MetricWindow, differences,
};
use crate::ids::RunId;
use crate::model::record::Direction;
use crate::model::record::{Conditions, MetricSamples, RunRecord};
use crate::stats::{self, ChangePointConfig, Comparison, RunNoiseBand, Verdict};

/// Judges every benchmark metric of `current` (which need not be in the history yet) against the
/// baseline `options` names. Fails only when the history cannot be read, or a `run:` baseline
/// names no run.
pub fn evaluate(
    history: &History,
    current: &RunRecord,
    options: &Options,
) -> Result<GateReport, HistoryError> {
    let baseline = match &options.baseline {
        BaselineSpec::Run(query) => BaselineSpec::Run(history.resolve(query)?.to_string()),
        other => other.clone(),
    };
    let (named_run, named_commit) = match &baseline {
        BaselineSpec::Run(id) => (Some(id.as_str()), None),
        BaselineSpec::Commit(sha) => (None, Some(sha.as_str())),
        BaselineSpec::Last(_) => (None, None),
    };
    judge_all(current, options, baseline.clone(), |key| {
        history.metric_history(&MetricWindow {
            key,
            until: current.started,
            runs: WINDOW,
            conditions: current.conditions.as_ref(),
            named_run,
            named_commit,
        })
    })
}

/// Every metric of `current` with no history at all, each `not comparable`: what the report
/// shows when the history cannot be read.
pub fn unjudged(current: &RunRecord, options: &Options) -> GateReport {
    let nothing = |_: &MetricKey| Ok::<_, HistoryError>(Vec::new());
    judge_all(current, options, options.baseline.clone(), nothing).unwrap_or_else(|_| GateReport {
        run_id: current.run_id.clone(),
        baseline: options.baseline.clone(),
        min_effect: options.min_effect,
        allow_different_conditions: options.allow_different_conditions,
        metrics: Vec::new(),
    })
}

fn judge_all(
    current: &RunRecord,
    options: &Options,
    baseline: BaselineSpec,
    mut history_of: impl FnMut(&MetricKey) -> Result<Vec<MetricRun>, HistoryError>,
) -> Result<GateReport, HistoryError> {
    let mut metrics = Vec::new();
    for b in current.benchmarks() {
        for m in b.metrics.iter().filter(|m| !m.samples.is_empty()) {
            let key = MetricKey {
                suite: b.suite.clone(),
                benchmark: b.name.clone(),
                metric: m.spec.name.clone(),
            };
            let past: Vec<MetricRun> = history_of(&key)?
                .into_iter()
                .filter(|r| r.run_id != current.run_id)
                .collect();
            let subject = Subject {
                record: current,
                key,
                metric: m,
            };
            metrics.push(judge(&subject, &past, &baseline, options));
        }
    }
    Ok(GateReport {
        run_id: current.run_id.clone(),
        baseline,
        min_effect: options.min_effect,
        allow_different_conditions: options.allow_different_conditions,
        metrics,
    })
}

/// The metric being judged.
struct Subject<'a> {
    record: &'a RunRecord,
    key: MetricKey,
    metric: &'a MetricSamples,
}

impl Subject<'_> {
    fn conditions(&self) -> Option<&Conditions> {
        self.record.conditions.as_ref()
    }
}

fn judge(
    subject: &Subject<'_>,
    past: &[MetricRun],
    spec: &BaselineSpec,
    options: &Options,
) -> MetricVerdict {
    let here = subject.conditions();
    let candidates = spec.candidates(past, subject.record.started);
    let (same, other): (Vec<&MetricRun>, Vec<&MetricRun>) = candidates
        .iter()
        .partition(|r| comparable(here, r.conditions.as_ref()));
    let chosen = spec.limit(if options.allow_different_conditions {
        candidates.clone()
    } else {
        same
    });
    let baseline: Vec<f64> = chosen.iter().flat_map(|r| r.samples.clone()).collect();
    let conditions_note = conditions_note(here, &chosen, &other, options);
    let (comparison, verdict, reason) = if baseline.is_empty() {
        (
            None,
            Verdict::NotComparable,
            Some(no_baseline(spec, &other, options, here)),
        )
    } else {
        let (comparison, verdict, reason) = compare(subject, &baseline, options.min_effect);
        within_run_noise(comparison, verdict, reason, &chosen)
    };
    let history = history_points(subject, past, &chosen);
    MetricVerdict {
        key: subject.key.clone(),
        unit: subject.metric.spec.unit.clone(),
        direction: subject.metric.spec.direction,
        current: subject.metric.samples.clone(),
        baseline_runs: chosen.iter().map(|r| r.run_id.clone()).collect(),
        baseline,
        comparison,
        verdict,
        reason,
        conditions_note,
        change_points: change_points(&history, options.min_effect),
        history,
    }
}

fn compare(
    subject: &Subject<'_>,
    baseline: &[f64],
    min_effect: f64,
) -> (Option<Comparison>, Verdict, Option<String>) {
    let direction = match subject.metric.spec.direction {
        Direction::Higher => stats::Direction::HigherIsBetter,
        Direction::Lower => stats::Direction::LowerIsBetter,
    };
    match stats::compare(
        baseline,
        &subject.metric.samples,
        direction,
        min_effect,
        ALPHA,
    ) {
        Ok(c) => {
            let (verdict, reason) = (c.verdict, c.reason.clone());
            (Some(c), verdict, reason)
        }
        Err(e) => (None, Verdict::NotComparable, Some(e.to_string())),
    }
}

/// A change the samples call significant is still `unchanged` when this run's median lies
/// where the baseline runs' own medians say one more run may fall by chance (see
/// [`RunNoiseBand`]): a drift between runs is not a regression.
fn within_run_noise(
    comparison: Option<Comparison>,
    verdict: Verdict,
    reason: Option<String>,
    chosen: &[&MetricRun],
) -> (Option<Comparison>, Verdict, Option<String>) {
    let decided = matches!(verdict, Verdict::Regressed | Verdict::Improved);
    let band = RunNoiseBand::of_runs(chosen.iter().map(|r| r.samples.as_slice()));
    match (comparison, band) {
        (Some(mut c), Some(band)) if decided && band.contains(c.current_median) => {
            let why = format!(
                "within the run-to-run noise: the {} baseline runs put one more run's median \
                 between {:.3} and {:.3} (95%)",
                band.runs, band.low, band.high
            );
            c.verdict = Verdict::Unchanged;
            c.reason = Some(why.clone());
            (Some(c), Verdict::Unchanged, Some(why))
        }
        (comparison, _) => (comparison, verdict, reason),
    }
}

/// Same known conditions. Runs that recorded none are comparable with nothing.
fn comparable(a: Option<&Conditions>, b: Option<&Conditions>) -> bool {
    let key = |c: Option<&Conditions>| c.map(|c| ComparableConditions::of(c).key());
    key(a).is_some() && key(a) == key(b)
}

/// What differs between a baseline run's conditions and this run's, baseline first.
fn what_differs(here: Option<&Conditions>, there: Option<&Conditions>) -> String {
    match (here, there) {
        (None, None) => "neither run recorded its conditions".to_string(),
        (None, Some(_)) => "this run recorded no conditions".to_string(),
        (Some(_), None) => "the baseline recorded no conditions".to_string(),
        (Some(a), Some(b)) => differences(b, a).join(", "),
    }
}

/// Says so when the baseline, as chosen, was measured under other conditions.
fn conditions_note(
    here: Option<&Conditions>,
    chosen: &[&MetricRun],
    other: &[&MetricRun],
    options: &Options,
) -> Option<String> {
    if options.allow_different_conditions {
        let differing = chosen
            .iter()
            .rev()
            .find(|r| !comparable(here, r.conditions.as_ref()))?;
        let what = what_differs(here, differing.conditions.as_ref());
        return Some(format!("compared across different conditions ({what})"));
    }
    if chosen.is_empty() {
        return None; // the verdict's reason already says why there is no baseline
    }
    let newest_other = other.last()?;
    let what = what_differs(here, newest_other.conditions.as_ref());
    Some(format!(
        "{} baseline run(s) left out: measured under different conditions ({what})",
        other.len()
    ))
}

fn no_baseline(
    spec: &BaselineSpec,
    other: &[&MetricRun],
    options: &Options,
    here: Option<&Conditions>,
) -> String {
    if let (Some(newest), false) = (other.last(), options.allow_different_conditions) {
        let what = what_differs(here, newest.conditions.as_ref());
        return format!(
            "different conditions ({what}); pass --allow-different-conditions to compare anyway"
        );
    }
    match spec {
        BaselineSpec::Last(_) => "no baseline: no earlier run has samples of this metric".into(),
        _ => format!(
            "no baseline: {} has no samples of this metric",
            spec.describe(false)
        ),
    }
}

/// The metric's run medians under this run's conditions, up to and including this run: the
/// newest [`WINDOW`].
fn history_points(
    subject: &Subject<'_>,
    past: &[MetricRun],
    chosen: &[&MetricRun],
) -> Vec<HistoryPoint> {
    let key = subject
        .conditions()
        .map(|c| ComparableConditions::of(c).key());
    let mut points: Vec<HistoryPoint> = past
        .iter()
        .filter(|r| r.started <= subject.record.started)
        .filter(|r| {
            r.conditions
                .as_ref()
                .map(|c| ComparableConditions::of(c).key())
                == key
        })
        .filter_map(|r| {
            let in_baseline = chosen.iter().any(|c| c.run_id == r.run_id);
            point(r.run_id.clone(), r.started, &r.samples, in_baseline, false)
        })
        .collect();
    let record = subject.record;
    points.extend(point(
        record.run_id.clone(),
        record.started,
        &subject.metric.samples,
        false,
        true,
    ));
    points.sort_by_key(|p| p.started);
    let older = points.len().saturating_sub(WINDOW);
    points.drain(..older);
    points
}

fn point(
    run_id: RunId,
    started: DateTime<Utc>,
    samples: &[f64],
    in_baseline: bool,
    is_current: bool,
) -> Option<HistoryPoint> {
    let median = stats::quantile(samples, 0.5).ok()?;
    Some(HistoryPoint {
        run_id,
        started,
        median,
        min: samples.iter().copied().fold(f64::INFINITY, f64::min),
        max: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        in_baseline,
        is_current,
    })
}

/// The shifts in a series of run medians (oldest first) that are significant and at least
/// `min_effect` (the gate's own threshold): a smaller shift, however certain, is not what the
/// gate calls a change.
pub fn shifts(medians: &[f64], min_effect: f64) -> Vec<stats::ChangePoint> {
    let found = stats::change_points(medians, &ChangePointConfig::default()).unwrap_or_default();
    found
        .into_iter()
        .filter(|cp| {
            let base = cp.before_mean.abs().max(f64::MIN_POSITIVE);
            (cp.after_mean - cp.before_mean).abs() / base >= min_effect
        })
        .collect()
}

fn change_points(history: &[HistoryPoint], min_effect: f64) -> Vec<ChangePointMark> {
    let medians: Vec<f64> = history.iter().map(|p| p.median).collect();
    shifts(&medians, min_effect)
        .into_iter()
        .filter_map(|cp| {
            let p = history.get(cp.index)?;
            Some(ChangePointMark {
                index: cp.index,
                run_id: p.run_id.clone(),
                started: p.started,
                before: cp.before_mean,
                after: cp.after_mean,
                p_value: cp.p_value,
            })
        })
        .collect()
}
