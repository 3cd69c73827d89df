//! The event stream: everything a run does, in order. The engine only emits events; every
//! reporter (terminal, JUnit, JSON, ...) consumes the same stream and none reaches back in.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::record::{BenchRecord, BoxInfo, Conditions, ImageInfo, TestRecord};
use crate::exit::Status;
use crate::ids::RunId;

#[derive(Debug, Clone)]
pub struct Event {
    pub time: DateTime<Utc>,
    pub kind: EventKind,
}

/// The lifecycle phases of a run, each reported as a JUnit test case of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Get hosts from the provider: this machine, inventory hosts, or new Metal devices.
    Acquire,
    /// Get the host ready: packages, daemons, storage pool, networks.
    Prepare,
    /// Build (or find in the cache) and register the base box.
    Box,
    /// Build (or find in the cache) the container images the suites name.
    Images,
    /// `vagrant up` of the VMs the selected suites need.
    Up,
    /// The Vagrantfile's provisioners (`vagrant provision`). A failure here is the lab's own
    /// (exit 1), not the infrastructure's.
    Provision,
    /// One SSH session per VM, and the suites copied in.
    Connect,
    /// A snapshot of every booted VM, memory included, to start each suite from.
    Snapshot,
    /// Logs and diagnostics from every VM, even half-dead ones.
    Collect,
    /// `vagrant destroy`, then a sweep by name of anything of the run still there.
    Destroy,
    /// Give the hosts back: unlock inventory hosts, delete Metal devices and the run's key.
    Release,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Acquire => "acquire",
            Phase::Release => "release",
            Phase::Prepare => "prepare",
            Phase::Box => "box",
            Phase::Images => "images",
            Phase::Up => "up",
            Phase::Provision => "provision",
            Phase::Connect => "connect",
            Phase::Snapshot => "snapshot",
            Phase::Collect => "collect",
            Phase::Destroy => "destroy",
        }
    }
}

#[derive(Debug, Clone)]
pub enum EventKind {
    RunStarted {
        run_id: RunId,
        suites: Vec<String>,
        vms: Vec<String>,
        host: String,
        artifacts: PathBuf,
    },
    PhaseStarted {
        phase: Phase,
        /// The host or lane, when a run has several; "" otherwise.
        scope: String,
        detail: String,
    },
    /// A line of progress inside a phase, e.g. "node1: booting".
    PhaseProgress {
        phase: Phase,
        scope: String,
        message: String,
    },
    PhaseFinished {
        phase: Phase,
        scope: String,
        duration: Duration,
        error: Option<String>,
        /// The phase's log, relative to the run's artifacts directory.
        log: Option<PathBuf>,
    },
    BoxReady(BoxInfo),
    /// The container images the suites name, built (or found in the cache).
    ImagesReady(Vec<ImageInfo>),
    /// What the run measures on, once the VMs' accelerator is known.
    Conditions(Conditions),
    VmReady {
        vm: String,
        scope: String,
        address: String,
    },
    SuiteStarted {
        suite: String,
        tests: usize,
        benchmarks: usize,
        /// The snapshot its VMs were put back to first; `None` when they were fresh from boot
        /// (the first suite of a lane) or shared on purpose (`pristine = false`).
        snapshot: Option<String>,
    },
    TestStarted {
        suite: String,
        test: String,
    },
    TestFinished(TestRecord),
    BenchSample {
        suite: String,
        benchmark: String,
        metric: String,
        unit: String,
        value: f64,
    },
    BenchmarkFinished(BenchRecord),
    SuiteFinished {
        suite: String,
        duration: Duration,
        /// Why the suite could not run all of its tests (a failed setup step, a lost VM).
        error: Option<String>,
    },
    /// A signal arrived: the run stops and tears down.
    Cancelling {
        signal: String,
        fast: bool,
    },
    /// Something the person running metalab must know, e.g. how to reach kept VMs.
    Notice {
        message: String,
    },
    RunFinished {
        status: Status,
        duration: Duration,
    },
}

/// The sending half of the event stream, given to the engine.
#[derive(Clone)]
pub struct Events {
    tx: tokio::sync::mpsc::UnboundedSender<Event>,
}

impl Events {
    pub fn channel() -> (Events, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Events { tx }, rx)
    }

    pub fn emit(&self, kind: EventKind) {
        // A closed stream means the reporters are gone; the run still finishes its teardown.
        let _ = self.tx.send(Event {
            time: Utc::now(),
            kind,
        });
    }
}
