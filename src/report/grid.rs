//! The tests against the newest runs, as the dashboard shows them: a cell a run, and what people
//! ask of a test's history (does it flake, since when has it failed, when did it last pass); and
//! each benchmark metric's run medians with the shifts the gate would call changes. Pure: made
//! from the history's rows, read by the HTML view.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::history::{RunSummary, SampleRow, TestResult};
use crate::ids::RunId;
use crate::model::record::TestOutcome;

/// How many runs the dashboard shows, newest first.
pub const RUNS: usize = 30;

/// One test in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Passed,
    /// Passed on a retry.
    Flaky,
    /// Failed, timed out or errored, by the test's own doing.
    Failed,
    /// Failed by the infrastructure's (a lost VM, a failed setup).
    Infra,
    /// Not in the run, or skipped.
    NotRun,
}

impl Cell {
    fn of(r: &TestResult) -> Cell {
        match r.outcome {
            TestOutcome::Skipped => Cell::NotRun,
            _ if r.infra => Cell::Infra,
            TestOutcome::Passed => Cell::Passed,
            TestOutcome::Flaky => Cell::Flaky,
            TestOutcome::Failed | TestOutcome::TimedOut | TestOutcome::Error => Cell::Failed,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Cell::Passed => "passed",
            Cell::Flaky => "flaky",
            Cell::Failed => "failed",
            Cell::Infra => "infrastructure error",
            Cell::NotRun => "not run",
        }
    }

    fn ran(self) -> bool {
        matches!(self, Cell::Passed | Cell::Flaky | Cell::Failed)
    }

    fn passed(self) -> bool {
        matches!(self, Cell::Passed | Cell::Flaky)
    }
}

/// A test's row: its cell in each run (the grid's runs, newest first) and what they add up to.
#[derive(Debug, Clone)]
pub struct TestLine {
    pub suite: String,
    pub name: String,
    pub cells: Vec<Cell>,
    /// The test's duration in each run it ran (for the trend), `None` where it did not.
    pub durations: Vec<Option<Duration>>,
    /// Its log in each run, relative to the run's directory.
    pub logs: HashMap<RunId, String>,
    /// Runs where the test itself ran to a verdict (passed, flaky or failed).
    pub ran: usize,
    pub failures: usize,
    /// Runs where it passed only on a retry, or passed and failed on the same commit.
    pub flakes: usize,
    /// The oldest run of the failing streak it is in now (with that run's commit).
    pub failing_since: Option<(RunId, Option<String>)>,
    pub last_passed: Option<RunId>,
}

impl TestLine {
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.ran)
    }

    pub fn flake_rate(&self) -> f64 {
        ratio(self.flakes, self.ran)
    }

    /// Whether it failed in the newest run it ran in.
    pub fn failing(&self) -> bool {
        self.failing_since.is_some()
    }
}

fn ratio(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// A benchmark metric over the grid's runs.
#[derive(Debug, Clone)]
pub struct MetricLine {
    /// `suite/benchmark metric`.
    pub name: String,
    pub unit: String,
    /// The median of its samples in each run (newest first), `None` where it was not measured.
    pub medians: Vec<Option<f64>>,
    /// Where its level shifted by at least the gate's minimum effect: the first run at the new
    /// level, and the levels before and after.
    pub shifts: Vec<(RunId, f64, f64)>,
}

/// The grid: runs as columns (newest first), tests as rows (by suite, then name), and the
/// benchmark metrics' lines.
#[derive(Debug, Clone)]
pub struct Grid {
    pub runs: Vec<RunSummary>,
    pub tests: Vec<TestLine>,
    pub metrics: Vec<MetricLine>,
}

impl Grid {
    /// `runs` newest first; `results` and `samples` of those runs (or more), in any order;
    /// `min_effect`: the gate's, for the shifts.
    pub fn new(
        runs: Vec<RunSummary>,
        results: &[TestResult],
        samples: &[SampleRow],
        min_effect: f64,
    ) -> Grid {
        let column: HashMap<&RunId, usize> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| (&r.run_id, i))
            .collect();
        let mut by_test: BTreeMap<(&str, &str), Vec<&TestResult>> = BTreeMap::new();
        for r in results.iter().filter(|r| column.contains_key(&r.run_id)) {
            by_test.entry((&r.suite, &r.name)).or_default().push(r);
        }
        let tests = by_test
            .into_iter()
            .map(|((suite, name), rs)| line(suite, name, &rs, &runs, &column))
            .collect();
        let metrics = metric_lines(samples, &runs, min_effect);
        Grid {
            runs,
            tests,
            metrics,
        }
    }

    /// Runs that ended in an infrastructure error, by host: what to fix apart from the tests.
    pub fn infra_by_host(&self) -> BTreeMap<&str, usize> {
        let mut by_host = BTreeMap::new();
        for r in &self.runs {
            if r.status == crate::exit::Status::InfraError {
                *by_host.entry(r.host.as_str()).or_default() += 1;
            }
        }
        by_host
    }
}

fn metric_lines(samples: &[SampleRow], runs: &[RunSummary], min_effect: f64) -> Vec<MetricLine> {
    let column: HashMap<&str, usize> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.run_id.as_str(), i))
        .collect();
    // (suite, benchmark, metric) → (unit, the samples of each run).
    type Samples<'a> = (&'a str, Vec<Vec<f64>>);
    let mut by_metric: BTreeMap<(&str, &str, &str), Samples> = BTreeMap::new();
    for s in samples {
        let Some(&i) = column.get(s.run_id.as_str()) else {
            continue;
        };
        let (_, values) = by_metric
            .entry((&s.suite, &s.benchmark, &s.metric))
            .or_insert_with(|| (&s.unit, vec![Vec::new(); runs.len()]));
        values[i].push(s.value);
    }
    by_metric
        .into_iter()
        .map(|((suite, bench, metric), (unit, values))| {
            let medians: Vec<Option<f64>> = values
                .iter()
                .map(|v| crate::stats::quantile(v, 0.5).ok())
                .collect();
            // Oldest first, the runs that measured it, for the gate's detector.
            let measured: Vec<(usize, f64)> = medians
                .iter()
                .enumerate()
                .rev()
                .filter_map(|(i, m)| m.map(|m| (i, m)))
                .collect();
            let series: Vec<f64> = measured.iter().map(|(_, m)| *m).collect();
            let shifts = crate::gate::shifts(&series, min_effect)
                .into_iter()
                .filter_map(|cp| {
                    let (column, _) = measured.get(cp.index)?;
                    Some((runs[*column].run_id.clone(), cp.before_mean, cp.after_mean))
                })
                .collect();
            MetricLine {
                name: format!("{suite}/{bench} {metric}"),
                unit: unit.to_string(),
                medians,
                shifts,
            }
        })
        .collect()
}

fn line(
    suite: &str,
    name: &str,
    results: &[&TestResult],
    runs: &[RunSummary],
    column: &HashMap<&RunId, usize>,
) -> TestLine {
    let mut cells = vec![Cell::NotRun; runs.len()];
    let mut durations = vec![None; runs.len()];
    let mut logs = HashMap::new();
    for r in results {
        logs.insert(r.run_id.clone(), r.log.clone());
        let i = column[&r.run_id];
        cells[i] = Cell::of(r);
        if cells[i].ran() {
            durations[i] = Some(r.duration);
        }
    }
    let commit = |i: usize| runs[i].commit.clone();
    let ran = cells.iter().filter(|c| c.ran()).count();
    let failures = cells.iter().filter(|c| **c == Cell::Failed).count();
    // Commits on which the test both passed and failed: every run of it there is a flake.
    let mut verdicts: HashMap<String, (bool, bool)> = HashMap::new();
    for (i, c) in cells.iter().enumerate().filter(|(_, c)| c.ran()) {
        if let Some(commit) = commit(i) {
            let v = verdicts.entry(commit).or_default();
            v.0 |= c.passed();
            v.1 |= *c == Cell::Failed;
        }
    }
    let flakes = cells
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            **c == Cell::Flaky
                || (c.ran() && commit(*i).is_some_and(|k| verdicts[&k] == (true, true)))
        })
        .count();
    // Newest first: the streak is the failures before the first run that did not fail.
    let streak: Vec<usize> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.ran())
        .take_while(|(_, c)| **c == Cell::Failed)
        .map(|(i, _)| i)
        .collect();
    TestLine {
        suite: suite.to_string(),
        name: name.to_string(),
        failing_since: streak.last().map(|&i| (runs[i].run_id.clone(), commit(i))),
        last_passed: cells
            .iter()
            .position(|c| c.passed())
            .map(|i| runs[i].run_id.clone()),
        cells,
        durations,
        logs,
        ran,
        failures,
        flakes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Status;
    use chrono::{TimeZone, Utc};

    fn run(n: u32, commit: &str) -> RunSummary {
        RunSummary {
            run_id: RunId::parse(&format!("20261101-0{n:05}-00aa")).unwrap(),
            started: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            duration: Duration::from_secs(60),
            status: Status::Passed,
            commit: Some(commit.to_string()),
            host: "lab1".into(),
            conditions_key: None,
            tests_passed: 0,
            tests_total: 0,
        }
    }

    fn result(run: &RunSummary, name: &str, outcome: TestOutcome) -> TestResult {
        TestResult {
            run_id: run.run_id.clone(),
            suite: "net".into(),
            name: name.into(),
            outcome,
            infra: false,
            duration: Duration::from_secs(2),
            log: format!("net/{name}.log"),
        }
    }

    #[test]
    fn a_test_failing_since_a_run_says_which_and_when_it_last_passed() {
        use TestOutcome::*;
        // Newest first: failed, (not run), failed, passed, failed.
        let runs: Vec<RunSummary> = (0..5).map(|n| run(5 - n, &format!("c{n}"))).collect();
        let results = [
            result(&runs[0], "t", Failed),
            result(&runs[2], "t", TimedOut),
            result(&runs[3], "t", Passed),
            result(&runs[4], "t", Failed),
        ];
        let grid = Grid::new(runs.clone(), &results, &[], 0.05);
        let t = &grid.tests[0];
        assert_eq!(
            t.cells,
            [
                Cell::Failed,
                Cell::NotRun,
                Cell::Failed,
                Cell::Passed,
                Cell::Failed
            ]
        );
        assert_eq!(
            t.failing_since,
            Some((runs[2].run_id.clone(), Some("c2".into())))
        );
        assert_eq!(t.last_passed, Some(runs[3].run_id.clone()));
        assert_eq!((t.ran, t.failures, t.flakes), (4, 3, 0));
        assert!((t.failure_rate() - 0.75).abs() < 1e-9);
    }

    #[test]
    fn a_retry_or_both_verdicts_on_one_commit_is_a_flake_and_infra_is_apart() {
        use TestOutcome::*;
        let runs = vec![run(4, "b"), run(3, "a"), run(2, "a"), run(1, "z")];
        let mut broken = result(&runs[3], "t", Error);
        broken.infra = true;
        let results = [
            result(&runs[0], "t", Flaky),
            result(&runs[1], "t", Passed),
            result(&runs[2], "t", Failed),
            broken,
        ];
        let grid = Grid::new(runs, &results, &[], 0.05);
        let t = &grid.tests[0];
        assert_eq!(t.cells[3], Cell::Infra);
        // The retry on b, and both runs on a.
        assert_eq!((t.ran, t.failures, t.flakes), (3, 1, 3));
        assert!(!t.failing(), "it passed in the newest run");
        assert_eq!(t.last_passed, Some(grid.runs[0].run_id.clone()));
    }
}
