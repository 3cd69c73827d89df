//! `junit-benchmarks.xml`: the gate's verdicts as a JUnit `benchmarks` suite, one test case per
//! metric, so Jenkins' `junit` step shows a regression as a failed test. It is a file of its own
//! beside `junit.xml` (which the run's result files own), written only when a run is judged.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{GateReport, MetricVerdict, format_value, verdict_word};
use crate::ids::RunId;
use crate::stats::Verdict;

/// The file name, in the run's artifacts directory.
pub const FILE: &str = "junit-benchmarks.xml";

/// The suite's name in the JUnit report.
const SUITE: &str = "benchmarks";

/// A test case per metric: a regression is a `<failure>`, a metric that could not be judged is
/// skipped with the reason, the rest pass.
pub fn render(report: &GateReport) -> Result<String, quick_junit::SerializeError> {
    let mut suite = TestSuite::new(SUITE);
    suite.add_property(quick_junit::Property::new(
        "baseline",
        report.baseline.to_string(),
    ));
    suite.add_test_cases(report.metrics.iter().map(case));
    let mut junit = Report::new(format!("metalab benchmarks {}", report.run_id));
    junit.add_test_suite(suite);
    crate::junit::to_xml(&junit)
}

/// A single `<error>` case when the gate could not judge the run at all (an unreadable history).
pub fn render_error(run_id: &RunId, error: &str) -> Result<String, quick_junit::SerializeError> {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status
        .set_message(error.to_string())
        .set_type("history".to_string());
    let mut tc = TestCase::new("regression gate", status);
    tc.set_classname(SUITE);
    let mut suite = TestSuite::new(SUITE);
    suite.add_test_case(tc);
    let mut junit = Report::new(format!("metalab benchmarks {run_id}"));
    junit.add_test_suite(suite);
    crate::junit::to_xml(&junit)
}

fn case(m: &MetricVerdict) -> TestCase {
    let summary = summary(m);
    let status = match m.verdict {
        Verdict::Regressed => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(summary.clone())
                .set_type("regression".to_string());
            s
        }
        Verdict::NotComparable => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(summary.clone());
            s
        }
        Verdict::Improved | Verdict::Unchanged => TestCaseStatus::success(),
    };
    let mut tc = TestCase::new(m.key.to_string(), status);
    tc.set_classname(format!("{SUITE}.{}", m.key.suite));
    tc.set_system_out(summary);
    tc
}

/// One line: verdict, medians, change and p-value, and the reason where there is one.
fn summary(m: &MetricVerdict) -> String {
    let mut text = format!("{}: {}", m.key, verdict_word(m.verdict));
    if let Some(c) = &m.comparison {
        text.push_str(&format!(
            ", median {} → {} {}",
            format_value(c.baseline_median),
            format_value(c.current_median),
            m.unit
        ));
        if let Some(change) = c.change {
            text.push_str(&format!(" ({:+.1}%)", change * 100.0));
        }
        text.push_str(&format!(", p = {:.3}", c.p_value));
    }
    for note in [&m.reason, &m.conditions_note].into_iter().flatten() {
        text.push_str("; ");
        text.push_str(note);
    }
    text
}
