//! The lifecycle engine: images → acquire hosts → prepare each → box → one or more lanes (a VM set each:
//! up → connect → suites → collect → destroy) → release.
//!
//! The engine emits [`event::Event`]s and never calls a reporter. Teardown is registered before
//! anything is created, and runs whatever happens: success, failures, a lost VM, or a signal
//! (the first starts an orderly teardown, a second a fast one by name).

mod conditions;
pub use conditions::{git_in, lab_commit};

mod host_prep;
mod images;
mod kept;
mod lane;
pub mod lanes;
mod lease;
pub mod log;
mod pristine;
mod suites;
mod teardown;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::budget::Budget;
use crate::config::{Config, Destination};
use crate::exit::Status;
use crate::host::Host;
use crate::ids::RunId;
use crate::images::BuiltImage;
use crate::journal::{EntryId, Journal, Owner, Resource};
use crate::provider::{InputError, Provider, RunHooks};
use crate::signal::Shutdown;
use crate::state::StateDir;
use crate::suite::Suite;
use crate::vagrant::describe::LabDescription;

use crate::model::event::{EventKind, Events, Phase};

pub use kept::{OnKept, on_kept};

/// Where the lab's suites live inside each VM.
pub const VM_LAB_DIR: &str = "/var/tmp/metalab";

/// What to run.
pub struct Plan {
    pub run_id: RunId,
    pub suites: Vec<Suite>,
    /// The VMs to bring up, in the Vagrantfile's order; each lane brings up those its suites
    /// need (all of them when there are no suites, as for `metalab up`).
    pub vms: Vec<String>,
    /// Whether the VMs outlive the run.
    pub keep: Keep,
    /// How many lanes (VM sets, each on a host of its own or sharing one) to spread suites over.
    pub lanes: usize,
    /// What the Vagrantfile defines, as Vagrant resolved it.
    pub description: LabDescription,
    /// Stop at the first failure (`--fail-fast`): what comes after is reported as not run.
    pub fail_fast: bool,
    /// The runner's `LAB_*` variables the suites get.
    pub lab_variables: Vec<(String, String)>,
    /// An untrusted run's VMs are fenced ([`crate::host::fence`]): they reach only each other,
    /// the host's DHCP, and these destinations. `None`: not fenced.
    pub fence: Option<Vec<Destination>>,
}

/// What happens to the VMs at the end of a run. A signal always destroys them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Destroy them (the default, and what CI wants).
    Never,
    /// Keep them after a failed run, for `metalab exec`, until `reap` may remove them.
    OnFailure(Duration),
    /// Keep them (`metalab up`), until `reap` may remove them.
    Always(Duration),
}

/// Why the work of a run (or a lane) stopped early.
#[derive(Debug)]
enum Stop {
    /// The lab failed: a VM did not come up, a connection dropped. `before_suites` failures are
    /// retried with fresh VMs.
    Infra { before_suites: bool },
    /// A signal asked for teardown.
    Signal(crate::signal::Sig),
}

/// What every part of a run shares.
struct RunCtx<'a> {
    config: &'a Config,
    state: StateDir,
    run_id: RunId,
    keep: Keep,
    events: Events,
    shutdown: Shutdown,
    /// `artifacts/<run-id>/`.
    artifacts: PathBuf,
    journal: Mutex<Journal>,
    owner: Mutex<Owner>,
    description: LabDescription,
    /// With `--fail-fast`: set at the first failure, in any lane.
    fail_fast: Option<AtomicBool>,
    lab_variables: Vec<(String, String)>,
    fence: Option<Vec<Destination>>,
    /// How many bytes of the VMs' output the run keeps, over every lane.
    budget: Arc<Budget>,
    /// The container images the suites name, once built (before any host is acquired).
    images: OnceLock<Vec<BuiltImage>>,
}

/// Runs the plan to the end, teardown and release included, and returns the run's status.
pub async fn run(
    config: &Config,
    state: StateDir,
    plan: Plan,
    events: Events,
    shutdown: Shutdown,
    provider: &dyn Provider,
) -> Status {
    let started = Instant::now();
    let run_dir = state.run(&plan.run_id);
    let owner = Owner::me();
    let journal = match owner
        .save(&run_dir)
        .and_then(|_| Ok(Journal::open(&run_dir)?))
    {
        Ok(j) => j,
        Err(e) => {
            // Without a journal a crash could leak VMs unseen: refuse to create any.
            events.emit(EventKind::Notice {
                message: format!(
                    "cannot write the run journal in {}: {e:#}",
                    run_dir.root().display()
                ),
            });
            events.emit(EventKind::RunFinished {
                status: Status::InfraError,
                duration: started.elapsed(),
            });
            return Status::InfraError;
        }
    };
    let ctx = RunCtx {
        config,
        state,
        run_id: plan.run_id.clone(),
        keep: plan.keep,
        events,
        shutdown,
        artifacts: config.artifacts_dir.join(plan.run_id.as_str()),
        journal: Mutex::new(journal),
        owner: Mutex::new(owner),
        description: plan.description.clone(),
        fail_fast: plan.fail_fast.then(AtomicBool::default),
        lab_variables: plan.lab_variables.clone(),
        fence: plan.fence.clone(),
        budget: Arc::new(Budget::new(config.outputs)),
        images: OnceLock::new(),
    };
    ctx.events.emit(EventKind::RunStarted {
        run_id: plan.run_id.clone(),
        suites: plan.suites.iter().map(|s| s.name.clone()).collect(),
        vms: plan.vms.clone(),
        host: provider.describe(),
        artifacts: ctx.artifacts.clone(),
    });
    let announcer = tokio::spawn(announce_signals(ctx.shutdown.clone(), ctx.events.clone()));
    let mut status = ctx.run_on_hosts(&plan, provider).await;
    let release = |_| provider.release(&plan.run_id, &ctx);
    if ctx
        .phase_raw(Phase::Release, "", &provider.describe(), release)
        .await
        .is_err()
    {
        status = status.worst(Status::InfraError);
    }
    announcer.abort();
    if let Some(sig) = ctx.shutdown.signal() {
        status = sig.status();
    }
    ctx.finish_owner(None);
    note_run_cap(&ctx.events, &ctx.budget);
    ctx.events.emit(EventKind::RunFinished {
        status,
        duration: started.elapsed(),
    });
    status
}

impl RunCtx<'_> {
    /// Builds the suites' images, acquires the hosts, prepares each, and runs the lanes on them.
    async fn run_on_hosts(&self, plan: &Plan, provider: &dyn Provider) -> Status {
        let env = images::ImagesEnv {
            events: &self.events,
            artifacts: &self.artifacts,
            config: self.config,
            state: &self.state,
            budget: &self.budget,
        };
        let built = tokio::select! {
            r = images::build(&env, &plan.suites) => match r {
                Ok(built) => built,
                Err(_) => return Status::InfraError,
            },
            sig = self.shutdown.requested() => return sig.status(),
        };
        let _ = self.images.set(built);
        let acquire = |_| provider.acquire(&self.run_id, plan.lanes.max(1), self);
        let what = provider.describe();
        let hosts: Vec<Host> = tokio::select! {
            r = self.phase_raw(Phase::Acquire, "", &what, acquire) => match r {
                Ok(h) => h,
                // Credentials or settings the user must fix are bad input, not the lab failing.
                Err(e) if e.downcast_ref::<InputError>().is_some() => return Status::BadInput,
                Err(_) => return Status::InfraError,
            },
            sig = self.shutdown.requested() => return sig.status(),
        };
        let multi = hosts.len() > 1;
        let prepared = futures::future::join_all(hosts.into_iter().map(|h| async move {
            let scope = if multi { h.name.clone() } else { String::new() };
            host_prep::prepare(self, h, scope).await
        }))
        .await;
        let mut status = Status::Passed;
        let ready: Vec<host_prep::HostReady> = prepared
            .into_iter()
            .filter_map(|r| match r {
                Ok(h) => Some(h),
                Err(Stop::Signal(sig)) => {
                    status = status.worst(sig.status());
                    None
                }
                Err(Stop::Infra { .. }) => {
                    status = status.worst(Status::InfraError);
                    None
                }
            })
            .collect();
        if ready.is_empty() || status != Status::Passed {
            return status;
        }
        let lanes = lanes::plan(plan, self, &ready);
        let results = futures::future::join_all(lanes.iter().map(|l| l.execute())).await;
        results.into_iter().fold(status, Status::worst)
    }

    /// Runs one lifecycle phase: events around it, its own log, its error as infrastructure.
    /// `scope` names the host or lane when a run has several; empty otherwise.
    async fn phase<'s, T, F, Fut>(
        &'s self,
        phase: Phase,
        scope: &str,
        detail: &str,
        f: F,
    ) -> Result<T, Stop>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = anyhow::Result<T>> + 's,
    {
        // Every phase that can fail a run comes before the suites.
        self.phase_raw(phase, scope, detail, f)
            .await
            .map_err(|_| Stop::Infra {
                before_suites: true,
            })
    }

    /// [`RunCtx::phase`], keeping the error for the caller to classify.
    async fn phase_raw<'s, T, F, Fut>(
        &'s self,
        phase: Phase,
        scope: &str,
        detail: &str,
        f: F,
    ) -> anyhow::Result<T>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = anyhow::Result<T>> + 's,
    {
        run_phase(&self.events, &self.artifacts, phase, scope, detail, f).await
    }

    fn progress(&self, phase: Phase, scope: &str, message: String) {
        self.events.emit(EventKind::PhaseProgress {
            phase,
            scope: scope.to_string(),
            message,
        });
    }

    /// Marks the run as over in its owner record: reap may clean up after it from now on (or
    /// after `keep_until`, when VMs were kept).
    fn finish_owner(&self, keep_until: Option<chrono::DateTime<chrono::Utc>>) {
        let mut owner = self.owner.lock().expect("not poisoned");
        if keep_until.is_some() {
            owner.keep_until = keep_until;
        }
        owner.finished = owner.keep_until.is_none();
        let _ = owner.save(&self.state.run(&self.run_id));
    }
}

impl RunHooks for RunCtx<'_> {
    fn journal(&self, resource: Resource) -> anyhow::Result<EntryId> {
        Ok(self
            .journal
            .lock()
            .expect("not poisoned")
            .record(resource)?)
    }

    fn journal_done(&self, entry: EntryId) {
        let _ = self.journal.lock().expect("not poisoned").done(entry);
    }

    fn progress(&self, stage: crate::provider::Stage, message: String) {
        let phase = match stage {
            crate::provider::Stage::Acquire => Phase::Acquire,
            crate::provider::Stage::Release => Phase::Release,
        };
        self.events.emit(EventKind::PhaseProgress {
            phase,
            scope: String::new(),
            message,
        });
    }
}

/// Runs one lifecycle phase: events around it, and its own log under `artifacts/lifecycle/`,
/// whose path `f` gets. `scope` names the host or lane when a run has several; empty otherwise.
async fn run_phase<T, F, Fut>(
    events: &Events,
    artifacts: &Path,
    phase: Phase,
    scope: &str,
    detail: &str,
    f: F,
) -> anyhow::Result<T>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    events.emit(EventKind::PhaseStarted {
        phase,
        scope: scope.to_string(),
        detail: detail.to_string(),
    });
    let started = Instant::now();
    let name = if scope.is_empty() {
        phase.name().to_string()
    } else {
        format!("{}-{scope}", phase.name())
    };
    let rel_log = PathBuf::from("lifecycle").join(format!("{name}.log"));
    let result = f(artifacts.join(&rel_log)).await;
    events.emit(EventKind::PhaseFinished {
        phase,
        scope: scope.to_string(),
        duration: started.elapsed(),
        error: result.as_ref().err().map(|e| format!("{e:#}")),
        log: Some(rel_log),
    });
    result
}

/// Says in the results when the run's cap on kept output was reached: the logs and artifacts
/// notes say where, this says that something was dropped at all.
fn note_run_cap(events: &Events, budget: &Budget) {
    if let Some(cap) = budget.run_cap_reached() {
        events.emit(EventKind::Notice {
            message: format!(
                "the run's logs and artifacts reached {cap}: what came after was dropped, and \
                 each log or artifacts.log cut says where"
            ),
        });
    }
}

/// Says on the event stream when a signal arrives, whatever the engine is doing at that moment.
async fn announce_signals(shutdown: Shutdown, events: Events) {
    let sig = shutdown.requested().await;
    events.emit(EventKind::Cancelling {
        signal: sig.name().into(),
        fast: false,
    });
    let sig = shutdown.fast().await;
    events.emit(EventKind::Cancelling {
        signal: sig.name().into(),
        fast: true,
    });
}
