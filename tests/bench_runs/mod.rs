//! Runs made up for the history, gate and report tests: results files as `metalab run` writes
//! them, with benchmark samples of a chosen level, conditions, a failing and a flaky test with
//! logs. No VM is involved.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use metalab::exit::Status;
use metalab::ids::RunId;
use metalab::model::event::Phase;
use metalab::model::record::{
    Attempt, BenchRecord, Conditions, HostFingerprint, MetricSamples, PhaseRecord, RunRecord,
    SuiteRecord, TestOutcome, TestRecord,
};
use metalab::suite::{Direction, MetricSpec};

pub const SUITE: &str = "throughput";
pub const BENCH: &str = "tcp-1-stream";
pub const METRIC: &str = "throughput";

/// The id of the `n`th made-up run, started `n` hours after a fixed time.
pub fn run_id(n: u32) -> RunId {
    let t = started(n);
    RunId::parse(&format!("{}-{:04x}", t.format("%Y%m%d-%H%M%S"), n)).expect("valid id")
}

pub fn started(n: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0)
        .single()
        .expect("valid time")
        + chrono::Duration::hours(i64::from(n))
}

pub fn conditions() -> Conditions {
    Conditions {
        host: HostFingerprint {
            hostname: "lab1".into(),
            cpu_model: "AMD EPYC 7763".into(),
            cores: 2,
            kernel: "6.1.0-27-amd64".into(),
        },
        vm_cpus: 1,
        vm_memory_mib: 768,
        accel: "tcg".into(),
        box_sha256: "cfeda526654a47fa646c35ec6db2037b896e9b0c4c56ba7ebb56f115784605b0".into(),
        metalab_version: "0.1.0".into(),
        lab_commit: Some("16dbf78aa1b2c3d4e5f60718293a4b5c6d7e8f90".into()),
    }
}

/// `n` samples around `level`, spread by ±2% in a fixed pattern that differs by `seed`.
pub fn samples(level: f64, n: usize, seed: u32) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let phase = (i as f64 * 2.39996 + f64::from(seed) * 0.7).sin();
            level * (1.0 + 0.02 * phase)
        })
        .collect()
}

/// A passed run with one throughput benchmark whose samples are `throughput`.
pub fn run(n: u32, throughput: Vec<f64>) -> RunRecord {
    let mut r = RunRecord::new(run_id(n), "local".into(), started(n));
    r.duration = Duration::from_secs(150);
    r.finished = Some(started(n) + chrono::Duration::seconds(150));
    r.conditions = Some(conditions());
    r.phases = vec![phase(Phase::Up, 60.0), phase(Phase::Destroy, 6.0)];
    r.suites = vec![SuiteRecord {
        snapshot: None,
        name: SUITE.into(),
        duration: Duration::from_secs(24),
        error: None,
        tests: Vec::new(),
        benchmarks: vec![bench(throughput)],
    }];
    r
}

fn phase(phase: Phase, secs: f64) -> PhaseRecord {
    PhaseRecord {
        phase,
        scope: String::new(),
        duration: Duration::from_secs_f64(secs),
        error: None,
        log: Some(PathBuf::from(format!("lifecycle/{}.log", phase.name()))),
    }
}

fn bench(samples: Vec<f64>) -> BenchRecord {
    BenchRecord {
        suite: SUITE.into(),
        name: BENCH.into(),
        vm: "node1".into(),
        command: "iperf3 -c 10.220.0.2 -J".into(),
        metrics: vec![MetricSamples {
            spec: MetricSpec {
                name: METRIC.into(),
                unit: "Gbit/s".into(),
                direction: Direction::Higher,
            },
            samples,
            summary: None,
        }],
        error: None,
        infra: false,
        duration: Duration::from_secs(21),
        log: PathBuf::from(format!("{SUITE}/{BENCH}.log")),
    }
}

/// Adds a `policy` suite with a failed test, a flaky one and a passed one.
pub fn with_tests(mut r: RunRecord) -> RunRecord {
    let test = |name: &str, outcome, message: Option<&str>| TestRecord {
        suite: "policy".into(),
        name: name.into(),
        vm: "node1".into(),
        command: format!("./policy.sh {name}"),
        outcome,
        infra: false,
        duration: Duration::from_millis(1500),
        message: message.map(String::from),
        log: PathBuf::from(format!("policy/{name}.log")),
        failed_attempts: Vec::new(),
    };
    let mut flaky = test("ping-allowed", TestOutcome::Flaky, None);
    flaky.failed_attempts.push(Attempt {
        outcome: TestOutcome::Failed,
        message: Some("exit 1, expected 0".into()),
        duration: Duration::from_secs(2),
    });
    r.status = Status::TestsFailed;
    r.suites.insert(
        0,
        SuiteRecord {
            snapshot: None,
            name: "policy".into(),
            duration: Duration::from_secs(10),
            error: None,
            tests: vec![
                test("listeners-up", TestOutcome::Passed, None),
                test(
                    "denied-port-dropped",
                    TestOutcome::Failed,
                    Some("output does not match /dropped/"),
                ),
                flaky,
            ],
            benchmarks: Vec::new(),
        },
    );
    r
}

/// Adds a `connectivity` suite whose setup failed, so that its one test never ran.
pub fn with_failed_setup(mut r: RunRecord) -> RunRecord {
    let error = "setup step 1 on node1 failed (exit 2)";
    r.suites.push(SuiteRecord {
        snapshot: None,
        name: "connectivity".into(),
        duration: Duration::from_secs(3),
        error: Some(error.into()),
        tests: vec![TestRecord {
            suite: "connectivity".into(),
            name: "same-vm-bridge".into(),
            vm: "node1".into(),
            command: "ip netns exec c1 ping -c 3 10.200.0.12".into(),
            outcome: TestOutcome::Error,
            infra: false,
            duration: Duration::ZERO,
            message: Some(format!("not run: {error}")),
            log: PathBuf::new(),
            failed_attempts: Vec::new(),
        }],
        benchmarks: Vec::new(),
    });
    r
}

/// Writes `r` as `<artifacts>/<run-id>/results.json` with a log for each test and benchmark.
pub fn write_artifacts(artifacts: &Path, r: &RunRecord) -> PathBuf {
    let dir = artifacts.join(r.run_id.as_str());
    for t in r.tests().filter(|t| !t.log.as_os_str().is_empty()) {
        write(&dir.join(&t.log), &test_log(&t.name));
    }
    for s in r.suites.iter().filter(|s| s.error.is_some()) {
        write(
            &dir.join(&s.name).join("setup.log"),
            "$ ./net.sh up\n# exit 2\n",
        );
    }
    for b in r.benchmarks() {
        write(
            &dir.join(&b.log),
            "$ iperf3 -c 10.220.0.2 -J\n{\"end\": {}}\n",
        );
    }
    for p in &r.phases {
        if let Some(log) = &p.log {
            write(&dir.join(log), &format!("{} done\n", p.phase.name()));
        }
    }
    let path = dir.join("results.json");
    write(
        &path,
        &serde_json::to_string_pretty(r).expect("serializable"),
    );
    path
}

fn test_log(name: &str) -> String {
    format!(
        "$ ./policy.sh {name}\n+ ip netns exec cli nc -z -v -w 3 10.210.0.2 9090\n\
         nc: connect to 10.210.0.2 port 9090 (tcp) timed out: Operation now in progress\n\
         <script>alert('not run')</script>\nexit status 1\n"
    )
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}
