//! metalab's JUnit files against the rules of junit-10.xsd, the schema Jenkins' xUnit plugin
//! validates with (see tests/common/junit_schema.rs): every kind of case a run can have (passed,
//! flaky, failed, timed out, an infrastructure error, skipped, a suite that could not run, a
//! phase retried with fresh VMs, a failed provisioning, a failed benchmark), and the gate's
//! junit-benchmarks.xml. The end-to-end tests hold real runs' files to the same rules.

mod bench_runs;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use bench_runs::{run, samples, with_failed_setup, with_tests, write_artifacts};
use common::junit_schema::violations;
use metalab::model::event::Phase;
use metalab::model::record::{Attempt, PhaseRecord, TestOutcome, TestRecord};

fn phase(phase: Phase, error: Option<&str>) -> PhaseRecord {
    PhaseRecord {
        phase,
        scope: String::new(),
        duration: Duration::from_millis(1500),
        error: error.map(String::from),
        log: Some(PathBuf::from(format!("lifecycle/{}.log", phase.name()))),
    }
}

#[test]
fn every_kind_of_case_is_valid_junit_10() {
    let dir = tempfile::tempdir().unwrap();
    let mut record = with_failed_setup(with_tests(run(3, samples(2.5, 5, 3))));
    record.phases = vec![
        phase(Phase::Up, Some("vagrant up failed (exit 1): no address")),
        phase(Phase::Up, None),
        phase(
            Phase::Provision,
            Some("vagrant provision failed: edge-a: exit 1"),
        ),
        phase(Phase::Destroy, None),
    ];
    let suite = &mut record.suites[0];
    suite.tests.push(TestRecord {
        outcome: TestOutcome::TimedOut,
        failed_attempts: vec![Attempt {
            outcome: TestOutcome::TimedOut,
            message: Some("timed out after 3s".into()),
            duration: Duration::from_secs(3),
        }],
        ..suite.tests[0].clone()
    });
    suite.tests.push(TestRecord {
        name: "lost".into(),
        outcome: TestOutcome::Error,
        infra: true,
        ..suite.tests[0].clone()
    });
    suite.tests.push(TestRecord {
        name: "not-reached".into(),
        outcome: TestOutcome::Skipped,
        message: Some("not run: the VMs' provisioning failed".into()),
        ..suite.tests[0].clone()
    });
    let bench = record
        .suites
        .iter_mut()
        .find(|s| !s.benchmarks.is_empty())
        .unwrap();
    bench.benchmarks[0].error = Some("run 2/6 failed (exit 1)".into());
    let run_dir = write_artifacts(dir.path(), &record);
    let xml = metalab::report::junit::render(&record, &run_dir).unwrap();
    for kind in [
        "flakyFailure",
        "flakyError",
        "rerunFailure",
        "<failure",
        "<error",
        "<skipped",
    ] {
        assert!(xml.contains(kind), "the fixture has no {kind}: {xml}");
    }
    assert_eq!(violations(&xml), Vec::<String>::new(), "{xml}");
}

#[test]
fn the_checker_refuses_what_quick_junit_writes_unaided() {
    // What the root looked like before: the schema refuses both attributes.
    let xml = r#"<testsuites name="r" tests="1" skipped="0" failures="0" errors="0" timestamp="2026-11-25T23:05:44.110+00:00" time="1.5"><testsuite name="s" tests="1" failures="0" errors="0"><testcase name="t"><flakyFailure message="m" time="1.0"/></testcase></testsuite></testsuites>"#;
    assert_eq!(
        violations(xml),
        [
            "<testsuites> has attribute `skipped`",
            "<testsuites> has attribute `timestamp`",
            "<flakyFailure> has attribute `time`",
            "<flakyFailure> lacks attribute `type`",
        ]
    );
}
