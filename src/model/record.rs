//! The results of a run as data: built from the event stream, written as the JSON results file,
//! and the single source the JUnit and summary reporters render from.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::{Event, EventKind, Phase};
use crate::exit::Status;
use crate::ids::RunId;
use crate::paths;

/// Version of the JSON results format; bumped when a field changes meaning.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    pub run_id: RunId,
    /// `run`, or `up` for a run that only brought VMs up (it had no suites to run).
    #[serde(default = "run_command")]
    pub command: String,
    pub metalab_version: String,
    pub host: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub status: Status,
    #[serde(rename = "box")]
    pub box_info: Option<BoxInfo>,
    /// The container images the suites named, built for the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageInfo>,
    /// What the numbers were measured on; benchmark samples from different conditions are
    /// never compared silently.
    #[serde(default)]
    pub conditions: Option<Conditions>,
    pub vms: Vec<VmRecord>,
    pub phases: Vec<PhaseRecord>,
    pub suites: Vec<SuiteRecord>,
    pub notices: Vec<String>,
    /// Set when the run was one shard of several (`metalab run --shard I/N`): which one, and
    /// the whole split, so `metalab report merge` can tell a missing or overlapping shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// Set for a run of an unreviewed change (`metalab run --untrusted`), which the history
    /// never learns from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrusted: Option<UntrustedRecord>,
    /// The runner's `LAB_*` variables the suites got (the lab's knobs; never a secret: see
    /// [`crate::suite::lab_variables`]), so `metalab reproduce` can set them again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lab_env: std::collections::BTreeMap<String, String>,
}

/// What an untrusted run ran on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UntrustedRecord {
    /// Where the lab definition came from: a git ref and its commit, or a directory.
    pub lab_from: String,
}

/// One shard's place in its split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardRecord {
    /// 1-based: shard `index` of `count`.
    pub index: u32,
    pub count: u32,
    /// The suites this shard was given.
    pub suites: Vec<String>,
    /// Every suite the split shared out, over all shards.
    pub selected: Vec<String>,
    /// What the shares were balanced by, e.g. the durations source.
    pub balanced_by: String,
}

impl ShardRecord {
    /// `1/2`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

/// The base box a run used: name, version, and the sha256 of the `.box` file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BoxInfo {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub recipe_hash: String,
}

/// A container image a run loaded: its name and the hash of the recipe it was built from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageInfo {
    pub name: String,
    pub recipe_hash: String,
}

/// The conditions of a run: host, VM shape, box, metalab and lab versions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Conditions {
    pub host: HostFingerprint,
    pub vm_cpus: u32,
    pub vm_memory_mib: u32,
    /// `kvm` or `tcg`.
    pub accel: String,
    pub box_sha256: String,
    pub metalab_version: String,
    /// `git rev-parse HEAD` of the lab, with `-dirty` when the tree had changes.
    pub lab_commit: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostFingerprint {
    pub hostname: String,
    pub cpu_model: String,
    pub cores: u32,
    pub kernel: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    pub name: String,
    /// The lane ("" when the run has one).
    #[serde(default)]
    pub scope: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub phase: Phase,
    /// The host or lane ("" when the run has one).
    #[serde(default)]
    pub scope: String,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub error: Option<String>,
    /// Relative to the run's artifacts directory.
    #[serde(default, deserialize_with = "paths::inside_opt")]
    pub log: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteRecord {
    /// Also the suite's directory in the run's artifacts directory.
    #[serde(deserialize_with = "paths::inside_name")]
    pub name: String,
    /// The snapshot the suite's VMs were put back to before it ran ("" when fresh or shared).
    #[serde(default)]
    pub snapshot: Option<String>,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub error: Option<String>,
    pub tests: Vec<TestRecord>,
    pub benchmarks: Vec<BenchRecord>,
}

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestOutcome {
    Passed,
    /// Failed, then passed on a retry: counted apart from clean passes.
    Flaky,
    /// The command ran and did not meet its expectations.
    Failed,
    /// The command ran past its timeout and was killed: a test failure.
    TimedOut,
    /// The test could not run properly: a failed setup, a lost connection.
    Error,
    /// Not run, because the run was cancelled.
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestRecord {
    pub suite: String,
    pub name: String,
    pub vm: String,
    pub command: String,
    pub outcome: TestOutcome,
    /// Set when `outcome` is `error` and the cause was the lab, not the test.
    #[serde(default)]
    pub infra: bool,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub message: Option<String>,
    /// The test's log, relative to the run's artifacts directory.
    #[serde(deserialize_with = "paths::inside")]
    pub log: PathBuf,
    /// Earlier attempts that failed, when the test has retries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_attempts: Vec<Attempt>,
}

/// One failed attempt of a retried test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub outcome: TestOutcome,
    pub message: Option<String>,
    #[serde(with = "secs")]
    pub duration: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRecord {
    pub suite: String,
    pub name: String,
    pub vm: String,
    pub command: String,
    pub metrics: Vec<MetricSamples>,
    pub error: Option<String>,
    #[serde(default)]
    pub infra: bool,
    #[serde(with = "secs")]
    pub duration: Duration,
    #[serde(deserialize_with = "paths::inside")]
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricSamples {
    #[serde(flatten)]
    pub spec: MetricSpec,
    pub samples: Vec<f64>,
    /// n, median, mean, sd, min, max, a bootstrap 95% CI of the median, outliers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<crate::stats::Summary>,
}

fn run_command() -> String {
    "run".into()
}

impl RunRecord {
    /// An empty record, filled in by [`RunRecord::apply`] as events arrive.
    pub fn new(run_id: RunId, host: String, started: DateTime<Utc>) -> RunRecord {
        RunRecord {
            format: FORMAT_VERSION,
            run_id,
            command: run_command(),
            metalab_version: env!("CARGO_PKG_VERSION").to_string(),
            host,
            started,
            finished: None,
            duration: Duration::ZERO,
            status: Status::Passed,
            box_info: None,
            images: Vec::new(),
            conditions: None,
            vms: Vec::new(),
            phases: Vec::new(),
            suites: Vec::new(),
            notices: Vec::new(),
            shard: None,
            untrusted: None,
            lab_env: Default::default(),
        }
    }

    /// Folds one event into the record.
    pub fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::PhaseFinished {
                phase,
                scope,
                duration,
                error,
                log,
            } => self.phases.push(PhaseRecord {
                phase: *phase,
                scope: scope.clone(),
                duration: *duration,
                error: error.clone(),
                log: log.clone(),
            }),
            EventKind::BoxReady(info) => self.box_info = Some(info.clone()),
            EventKind::ImagesReady(images) => self.images = images.clone(),
            EventKind::Conditions(c) => self.conditions = Some(c.clone()),
            EventKind::VmReady { vm, scope, address } => self.vms.push(VmRecord {
                name: vm.clone(),
                scope: scope.clone(),
                address: address.clone(),
            }),
            EventKind::SuiteStarted {
                suite, snapshot, ..
            } => self.suites.push(SuiteRecord {
                name: suite.clone(),
                snapshot: snapshot.clone(),
                duration: Duration::ZERO,
                error: None,
                tests: Vec::new(),
                benchmarks: Vec::new(),
            }),
            EventKind::TestFinished(t) => self.suite_mut(&t.suite).tests.push(t.clone()),
            EventKind::BenchmarkFinished(b) => self.suite_mut(&b.suite).benchmarks.push(b.clone()),
            EventKind::SuiteFinished {
                suite,
                duration,
                error,
            } => {
                let s = self.suite_mut(suite);
                s.duration = *duration;
                s.error = error.clone();
            }
            EventKind::Notice { message } => self.notices.push(message.clone()),
            EventKind::RunFinished { status, duration } => {
                self.status = *status;
                self.duration = *duration;
                self.finished = Some(event.time);
            }
            EventKind::RunStarted { suites, .. } => {
                self.command = if suites.is_empty() { "up" } else { "run" }.into();
            }
            EventKind::PhaseStarted { .. }
            | EventKind::PhaseProgress { .. }
            | EventKind::TestStarted { .. }
            | EventKind::BenchSample { .. }
            | EventKind::Cancelling { .. } => {}
        }
    }

    fn suite_mut(&mut self, name: &str) -> &mut SuiteRecord {
        if let Some(i) = self.suites.iter().position(|s| s.name == name) {
            return &mut self.suites[i];
        }
        self.suites.push(SuiteRecord {
            name: name.to_string(),
            snapshot: None,
            duration: Duration::ZERO,
            error: None,
            tests: Vec::new(),
            benchmarks: Vec::new(),
        });
        self.suites.last_mut().expect("just pushed")
    }

    pub fn tests(&self) -> impl Iterator<Item = &TestRecord> {
        self.suites.iter().flat_map(|s| s.tests.iter())
    }

    pub fn benchmarks(&self) -> impl Iterator<Item = &BenchRecord> {
        self.suites.iter().flat_map(|s| s.benchmarks.iter())
    }

    pub fn count(&self, outcome: TestOutcome) -> usize {
        self.tests().filter(|t| t.outcome == outcome).count()
    }
}

/// One number read from a benchmark's output.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct MetricSpec {
    pub name: String,
    pub unit: String,
    pub direction: Direction,
}

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Higher,
    Lower,
}

/// Durations as fractional seconds in JSON: readable by people and by any tool.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}
