//! JUnit XML for Jenkins' `junit` step (and GitHub's test reporters): a test case per test and
//! benchmark, and a `lifecycle` suite with a test case per phase (`up`, `destroy`, ...). Test
//! failures are `<failure>`; infrastructure problems are `<error>`, so the two never blur.

use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::model::event::Phase;
use crate::model::record::{BenchRecord, PhaseRecord, RunRecord, TestOutcome, TestRecord};

/// Lines of a log quoted in a failing test case.
const LOG_TAIL_LINES: usize = 60;

/// Renders the run's results; logs are read from `run_dir` (the run's artifacts directory).
pub fn render(record: &RunRecord, run_dir: &Path) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new(format!("metalab {}", record.run_id));
    report.set_timestamp(record.started);
    report.set_time(record.duration);
    report.add_test_suite(lifecycle_suite(record, run_dir));
    for suite in &record.suites {
        let mut ts = TestSuite::new(suite.name.clone());
        // Which state the suite's VMs started from: fresh from boot, or put back to a snapshot.
        let start = suite
            .snapshot
            .clone()
            .unwrap_or_else(|| "fresh boot".into());
        ts.add_property(quick_junit::Property::new("vm_start", start));
        ts.set_time(suite.duration);
        if let Some(error) = &suite.error {
            ts.add_test_case(suite_error_case(&suite.name, error, run_dir));
        }
        ts.add_test_cases(suite.tests.iter().map(|t| test_case(t, run_dir)));
        ts.add_test_cases(suite.benchmarks.iter().map(|b| bench_case(b, run_dir)));
        report.add_test_suite(ts);
    }
    crate::junit::to_xml(&report)
}

fn lifecycle_suite(record: &RunRecord, run_dir: &Path) -> TestSuite {
    let mut ts = TestSuite::new("lifecycle");
    let mut props = vec![
        ("run_id", record.run_id.to_string()),
        ("host", record.host.clone()),
    ];
    if let Some(b) = &record.box_info {
        props.push(("box", format!("{} {}", b.name, b.version)));
        props.push(("box_sha256", b.sha256.clone()));
    }
    ts.add_properties(
        props
            .into_iter()
            .map(|(k, v)| quick_junit::Property::new(k, v)),
    );
    // A phase that failed and was retried with fresh VMs shows once: its failed attempts become
    // reruns of the last attempt (flaky when that one passed).
    let mut earlier: Vec<&PhaseRecord> = Vec::new();
    for (i, p) in record.phases.iter().enumerate() {
        let retried_later = record.phases[i + 1..]
            .iter()
            .any(|q| q.phase == p.phase && q.scope == p.scope);
        if retried_later && p.error.is_some() {
            earlier.push(p);
            continue;
        }
        let reruns: Vec<&PhaseRecord> = earlier
            .iter()
            .copied()
            .filter(|e| e.phase == p.phase && e.scope == p.scope)
            .collect();
        earlier.retain(|e| e.phase != p.phase || e.scope != p.scope);
        ts.add_test_case(phase_case(p, &reruns, run_dir));
    }
    ts
}

fn phase_case(p: &PhaseRecord, reruns: &[&PhaseRecord], run_dir: &Path) -> TestCase {
    let mut status = match &p.error {
        None => TestCaseStatus::success(),
        // The lab's own provisioners failing is a failure of the lab, not of the infrastructure.
        Some(e) if p.phase == Phase::Provision => {
            non_success(NonSuccessKind::Failure, e, "provision")
        }
        Some(e) => non_success(NonSuccessKind::Error, e, "infrastructure"),
    };
    for r in reruns {
        let message = r.error.clone().unwrap_or_default();
        status.add_rerun(crate::junit::rerun(
            NonSuccessKind::Error,
            "infrastructure",
            message,
        ));
    }
    let name = if p.scope.is_empty() {
        p.phase.name().to_string()
    } else {
        format!("{}[{}]", p.phase.name(), p.scope)
    };
    let mut tc = TestCase::new(name, status);
    tc.set_classname("lifecycle").set_time(p.duration);
    if p.error.is_some()
        && let Some(log) = &p.log
    {
        tc.set_system_out(log_tail(&run_dir.join(log)));
    }
    tc
}

fn test_case(t: &TestRecord, run_dir: &Path) -> TestCase {
    let message = t.message.clone().unwrap_or_default();
    let mut status = match t.outcome {
        TestOutcome::Passed | TestOutcome::Flaky => TestCaseStatus::success(),
        TestOutcome::Failed => non_success(NonSuccessKind::Failure, &message, "failed"),
        TestOutcome::TimedOut => non_success(NonSuccessKind::Failure, &message, "timeout"),
        TestOutcome::Error => {
            let kind = if t.infra { "infrastructure" } else { "error" };
            non_success(NonSuccessKind::Error, &message, kind)
        }
        TestOutcome::Skipped => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(message);
            s
        }
    };
    // Failed attempts before the last become reruns: `flakyFailure` under a pass, so Jenkins
    // and nextest-style tools count the test as flaky rather than as a clean pass.
    for a in &t.failed_attempts {
        let message = a.message.clone().unwrap_or_default();
        let ty = match a.outcome {
            TestOutcome::TimedOut => "timeout",
            TestOutcome::Error => "error",
            TestOutcome::Failed
            | TestOutcome::Passed
            | TestOutcome::Flaky
            | TestOutcome::Skipped => "failed",
        };
        status.add_rerun(crate::junit::rerun(NonSuccessKind::Failure, ty, message));
    }
    let mut tc = TestCase::new(t.name.clone(), status);
    tc.set_classname(t.suite.clone()).set_time(t.duration);
    if t.outcome != TestOutcome::Passed {
        tc.set_system_out(format!(
            "$ {}\n{}",
            t.command,
            log_tail(&run_dir.join(&t.log))
        ));
    }
    tc
}

fn bench_case(b: &BenchRecord, run_dir: &Path) -> TestCase {
    let status = match &b.error {
        None => TestCaseStatus::success(),
        Some(e) if b.infra => non_success(NonSuccessKind::Error, e, "infrastructure"),
        Some(e) => non_success(NonSuccessKind::Failure, e, "benchmark"),
    };
    let mut tc = TestCase::new(format!("benchmark {}", b.name), status);
    tc.set_classname(b.suite.clone()).set_time(b.duration);
    let summary: Vec<String> = b
        .metrics
        .iter()
        .map(|m| format!("{} [{}]: {:?}", m.spec.name, m.spec.unit, m.samples))
        .collect();
    let mut out = summary.join("\n");
    if b.error.is_some() {
        out.push('\n');
        out.push_str(&log_tail(&run_dir.join(&b.log)));
    }
    tc.set_system_out(out);
    tc
}

/// A suite that could not run all its tests (failed setup, lost VM) fails as a case of its own;
/// its tests are reported as skipped.
fn suite_error_case(suite: &str, error: &str, run_dir: &Path) -> TestCase {
    let mut tc = TestCase::new(
        "(suite)",
        non_success(NonSuccessKind::Error, error, "suite"),
    );
    tc.set_classname(suite.to_string());
    tc.set_system_out(log_tail(&run_dir.join(suite).join("setup.log")));
    tc
}

fn non_success(kind: NonSuccessKind, message: &str, ty: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(kind);
    s.set_message(message.to_string()).set_type(ty.to_string());
    s
}

/// The last lines of a log, or a note saying why there is none.
pub fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            let mut tail = String::new();
            if start > 0 {
                tail.push_str(&format!(
                    "[... {start} earlier lines in {}]\n",
                    path.display()
                ));
            }
            tail.push_str(&lines[start..].join("\n"));
            tail
        }
        Err(e) => format!("[no log at {}: {e}]", path.display()),
    }
}
