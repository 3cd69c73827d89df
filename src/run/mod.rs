//! The lifecycle engine: prepare the host → box → up → connect → suites → collect → destroy.
//!
//! The engine emits [`event::Event`]s and never calls a reporter. Teardown is registered before
//! anything is created, and runs whatever happens: success, failures, a lost VM, or a signal
//! (the first starts an orderly teardown, a second a fast one by name).

mod conditions;
pub mod event;
pub mod log;
pub mod subnet;
mod suites;
mod teardown;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::accel;
use crate::boxes::{BuiltBox, Recipe};
use crate::config::Config;
use crate::exit::Status;
use crate::ids::RunId;
use crate::journal::{EntryId, Journal, Owner, Resource};
use crate::lab::{LabState, VmState};
use crate::provider::Host;
use crate::signal::Shutdown;
use crate::state::StateDir;
use crate::suite::Suite;
use crate::transport::ssh::{HostKeyPolicy, SshSession};
use crate::transport::{Collect, Command, Transport, files};
use crate::vagrant::{self, Project};

use event::{EventKind, Events, Phase};
use log::LogSink;
use subnet::SubnetClaim;

/// Where the lab's suites live inside each VM.
pub const VM_LAB_DIR: &str = "/var/tmp/metalab";

/// What to run.
pub struct Plan {
    pub run_id: RunId,
    pub suites: Vec<Suite>,
    /// The VMs the suites need, in the Vagrantfile's order.
    pub vms: Vec<String>,
    /// Whether the VMs outlive the run.
    pub keep: Keep,
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

/// Why the work of a run stopped early.
#[derive(Debug)]
enum Stop {
    /// The lab failed: a VM did not come up, a connection dropped. `before_suites` failures are
    /// retried with fresh VMs.
    Infra { before_suites: bool },
    /// A signal asked for teardown.
    Signal(crate::signal::Sig),
}

/// A Vagrant project the run created, with its journal entry and subnet claim.
struct Created {
    project: Project,
    claim: SubnetClaim,
    entry: EntryId,
}

/// What was created, so teardown knows what to remove. Filled in *before* each create.
#[derive(Default)]
struct Resources {
    created: Mutex<Option<Created>>,
    sessions: Mutex<Vec<Arc<SshSession>>>,
    lab: Mutex<Option<LabState>>,
}

/// One VM of the running lab, connected.
pub struct Vm {
    pub name: String,
    pub session: Arc<SshSession>,
    pub private_ip: Option<String>,
}

pub struct Engine<'a> {
    config: &'a Config,
    state: StateDir,
    plan: Plan,
    events: Events,
    shutdown: Shutdown,
    host_name: String,
    host: Arc<dyn Transport>,
    /// `artifacts/<run-id>/`.
    artifacts: PathBuf,
    res: Resources,
    journal: Mutex<Journal>,
    owner: Mutex<Owner>,
}

/// Runs the plan to the end, teardown included, and returns the run's status.
pub async fn run(
    config: &Config,
    state: StateDir,
    plan: Plan,
    events: Events,
    shutdown: Shutdown,
    host: Host,
) -> Status {
    let artifacts = config.artifacts_dir.join(plan.run_id.as_str());
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
                duration: Duration::ZERO,
            });
            return Status::InfraError;
        }
    };
    let engine = Engine {
        config,
        state,
        plan,
        events,
        shutdown,
        host_name: host.name,
        host: host.transport,
        artifacts,
        res: Resources::default(),
        journal: Mutex::new(journal),
        owner: Mutex::new(owner),
    };
    engine.execute().await
}

impl Engine<'_> {
    async fn execute(&self) -> Status {
        let started = Instant::now();
        self.events.emit(EventKind::RunStarted {
            run_id: self.plan.run_id.clone(),
            suites: self.plan.suites.iter().map(|s| s.name.clone()).collect(),
            vms: self.plan.vms.clone(),
            host: self.host_name.clone(),
            artifacts: self.artifacts.clone(),
        });
        let announcer = tokio::spawn(announce_signals(self.shutdown.clone(), self.events.clone()));
        let attempts = 1 + self.config.retries.infra;
        let mut status = Status::Passed;
        for attempt in 1..=attempts {
            let outcome = {
                let work = self.work();
                tokio::select! {
                    r = work => r,
                    sig = self.shutdown.requested() => Err(Stop::Signal(sig)),
                }
            };
            let retry = matches!(
                outcome,
                Err(Stop::Infra {
                    before_suites: true
                })
            ) && attempt < attempts
                && self.shutdown.signal().is_none();
            status = match outcome {
                Ok(s) => s,
                Err(Stop::Infra { .. }) => Status::InfraError,
                Err(Stop::Signal(sig)) => sig.status(),
            };
            let final_status = if retry { Status::Passed } else { status };
            if let Err(e) = self.teardown(final_status).await {
                self.events.emit(EventKind::Notice { message: e });
                status = status.worst(Status::InfraError);
                break;
            }
            if !retry {
                break;
            }
            self.events.emit(EventKind::Notice {
                message: format!(
                    "infrastructure error before any suite ran: retrying with fresh VMs (attempt {}/{attempts})",
                    attempt + 1
                ),
            });
        }
        announcer.abort();
        if let Some(sig) = self.shutdown.signal() {
            status = sig.status();
        }
        self.events.emit(EventKind::RunFinished {
            status,
            duration: started.elapsed(),
        });
        status
    }

    async fn work(&self) -> Result<Status, Stop> {
        self.phase(Phase::Prepare, "scripts/setup-host", |log| {
            self.prepare(log)
        })
        .await?;
        let built = self
            .phase(Phase::Box, "metalab box", |log| self.ensure_box(log))
            .await?;
        let project = self
            .phase(
                Phase::Up,
                &format!("vagrant up {}", self.plan.vms.join(" ")),
                |log| self.up(log, &built),
            )
            .await?;
        let vms = self
            .phase(Phase::Connect, "ssh sessions, suites copied in", |log| {
                self.connect(log, &project)
            })
            .await?;
        suites::run_all(self, &vms).await
    }

    /// Runs one lifecycle phase: events around it, its own log, its error as infrastructure.
    async fn phase<'s, T, F, Fut>(&'s self, phase: Phase, detail: &str, f: F) -> Result<T, Stop>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = anyhow::Result<T>> + 's,
    {
        self.events.emit(EventKind::PhaseStarted {
            phase,
            detail: detail.to_string(),
        });
        let started = Instant::now();
        let rel_log = PathBuf::from("lifecycle").join(format!("{}.log", phase.name()));
        let result = f(self.artifacts.join(&rel_log)).await;
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        self.events.emit(EventKind::PhaseFinished {
            phase,
            duration: started.elapsed(),
            error: error.clone(),
            log: Some(rel_log),
        });
        // Every phase that can fail a run comes before the suites.
        result.map_err(|_| Stop::Infra {
            before_suites: true,
        })
    }

    fn progress(&self, phase: Phase, message: String) {
        self.events
            .emit(EventKind::PhaseProgress { phase, message });
    }

    /// Runs scripts/setup-host on the host: idempotent, a second or so when all is in place.
    async fn prepare(&self, log: PathBuf) -> anyhow::Result<()> {
        let script = include_str!("../../scripts/setup-host");
        // Passed as the script itself, not on stdin: commands inside it may read stdin.
        let cmd = Command::new(script, Duration::from_secs(20 * 60))
            .env("METALAB_HOME", self.state.root().display().to_string())
            .sudo(true);
        let mut sink = LogSink::append(&log).on_line(|l| {
            if let Some(step) = l.strip_prefix("setup-host: ") {
                self.progress(Phase::Prepare, step.to_string());
            }
        });
        let outcome = self.host.exec(&cmd, &mut sink).await?;
        if !outcome.success() {
            anyhow::bail!(
                "host setup failed ({}): {}",
                outcome.describe(),
                sink.last_line().unwrap_or_default()
            );
        }
        // Leftovers of earlier runs that died (or whose kept VMs expired) go first.
        let (_, reaped) =
            crate::reap::locked_survey_and_reap(self.host.as_ref(), &self.state, false).await?;
        for r in reaped {
            self.progress(
                Phase::Prepare,
                format!("reaped run {}: {}", r.run_id, r.leftovers.describe()),
            );
        }
        Ok(())
    }

    async fn ensure_box(&self, log: PathBuf) -> anyhow::Result<BuiltBox> {
        let recipe = Recipe::new(&self.config.box_recipe);
        let mut sink = LogSink::append(&log).on_line(|l| {
            if let Some(step) = l.strip_prefix("box: ") {
                self.progress(Phase::Box, step.to_string());
            }
        });
        if recipe.cached(&self.state)?.is_none() {
            self.progress(
                Phase::Box,
                format!(
                    "building {} (takes a few minutes, once per recipe)",
                    recipe.box_name()
                ),
            );
        }
        let built = recipe.ensure_built(&self.state, &mut sink).await?;
        let _lock = crate::state::FileLock::acquire(self.state.lock("box-add")).await?;
        if built
            .register(self.host.as_ref(), &self.state.vagrant_home(), &mut sink)
            .await?
        {
            self.progress(
                Phase::Box,
                format!("registered {} {}", built.info.name, built.info.version),
            );
        }
        self.events.emit(EventKind::BoxReady(built.info.clone()));
        Ok(built)
    }

    /// `vagrant up` of the plan's VMs. Their teardown is registered before Vagrant starts.
    async fn up(&self, log: PathBuf, built: &BuiltBox) -> anyhow::Result<Project> {
        let kernel = built
            .registered_dir(&self.state.vagrant_home())
            .join("vmlinuz");
        let accel = accel::resolve(self.config.vm.accel, &self.state, &kernel).await;
        let fingerprint = conditions::host_fingerprint(self.host.as_ref()).await;
        self.events.emit(EventKind::Conditions(conditions::gather(
            fingerprint,
            self.config,
            accel::name(accel),
            &built.info.sha256,
        )));
        let claim = subnet::claim(self.host.as_ref(), &self.state, &self.plan.run_id).await?;
        let project = self.project(built, accel::name(accel), &claim.prefix);
        self.progress(
            Phase::Up,
            format!(
                "{} VM(s), {} MiB each, {}",
                self.plan.vms.len(),
                self.config.vm.memory,
                accel::name(accel)
            ),
        );
        let entry =
            self.journal
                .lock()
                .expect("not poisoned")
                .record(Resource::VagrantProject {
                    host: self.host_name.clone(),
                    project: project.clone(),
                    prefix: self.plan.run_id.resource_prefix(),
                })?;
        *self.res.created.lock().expect("not poisoned") = Some(Created {
            project: project.clone(),
            claim,
            entry,
        });
        let mut sink = LogSink::append(&log).on_line(|l| {
            if let Some((vm, msg)) = vagrant::progress_line(l) {
                self.progress(Phase::Up, format!("{vm}: {msg}"));
            }
        });
        let outcome = project
            .up(
                self.host.as_ref(),
                &self.plan.vms,
                self.config.timeouts.up,
                &mut sink,
            )
            .await?;
        if !outcome.success() {
            let why = sink
                .combined_text()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("==>") && !l.starts_with("    "))
                .map(str::trim)
                .unwrap_or("")
                .to_string();
            anyhow::bail!(
                "vagrant up failed ({}){}",
                outcome.describe(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            );
        }
        Ok(project)
    }

    fn project(&self, built: &BuiltBox, accel: &str, subnet: &str) -> Project {
        let vagrantfile = &self.config.vagrantfile;
        let vars = [
            ("METALAB_RUN_ID", self.plan.run_id.to_string()),
            ("METALAB_CPUS", self.config.vm.cpus.to_string()),
            ("METALAB_MEMORY", self.config.vm.memory.to_string()),
            ("METALAB_ACCEL", accel.to_string()),
            ("METALAB_SUBNET", subnet.to_string()),
            ("METALAB_BOX_VERSION", built.info.version.clone()),
            ("METALAB_HOME", self.state.root().display().to_string()),
        ];
        Project {
            dir: vagrantfile
                .parent()
                .unwrap_or(Path::new("/"))
                .display()
                .to_string(),
            vagrantfile: vagrantfile
                .file_name()
                .map_or("Vagrantfile".into(), |n| n.to_string_lossy().into_owned()),
            dotfile_dir: self
                .state
                .run(&self.plan.run_id)
                .vagrant_dotfile()
                .display()
                .to_string(),
            vagrant_home: self.state.vagrant_home().display().to_string(),
            vars: vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// One SSH session per VM from `vagrant ssh-config` (read once), the suites copied in.
    async fn connect(&self, log: PathBuf, project: &Project) -> anyhow::Result<Vec<Vm>> {
        let mut sink = LogSink::append(&log);
        let targets = project
            .ssh_config(self.host.as_ref(), &self.plan.vms)
            .await?;
        let run_dir = self.state.run(&self.plan.run_id);
        let subnet = self
            .res
            .created
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|c| c.claim.prefix.clone())
            .unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut vms = Vec::new();
        let mut states = Vec::new();
        for (name, target) in targets {
            sink.note(&format!("{name}: connecting to {}", target.describe()));
            let policy = HostKeyPolicy::PinFile(run_dir.host_key(&name));
            let session = Arc::new(SshSession::connect_until(&target, &policy, deadline).await?);
            self.res
                .sessions
                .lock()
                .expect("not poisoned")
                .push(session.clone());
            files::put_dir(
                session.as_ref(),
                &self.config.suites_dir,
                &format!("{VM_LAB_DIR}/suites"),
                true,
                Duration::from_secs(120),
            )
            .await?;
            let private_ip = private_address(session.as_ref(), &subnet).await?;
            sink.note(&format!(
                "{name}: connected; private address {}",
                private_ip.as_deref().unwrap_or("none")
            ));
            self.events.emit(EventKind::VmReady {
                vm: name.clone(),
                address: target.host.clone(),
            });
            states.push(VmState {
                name: name.clone(),
                ssh: target,
                private_ip: private_ip.clone(),
            });
            vms.push(Vm {
                name,
                session,
                private_ip,
            });
        }
        let lab = LabState {
            run_id: self.plan.run_id.clone(),
            pid: std::process::id(),
            host: self.host_name.clone(),
            project: project.clone(),
            subnet,
            vms: states,
            created: chrono::Utc::now(),
            keep_until: None,
        };
        lab.save(&self.state)?;
        *self.res.lab.lock().expect("not poisoned") = Some(lab);
        Ok(vms)
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

/// The VM's address inside the run's private subnet (`10.77.<n>.x`).
async fn private_address(vm: &dyn Transport, subnet: &str) -> anyhow::Result<Option<String>> {
    let mut out = Collect::default();
    vm.exec(
        &Command::new("ip -o -4 addr show", Duration::from_secs(30)),
        &mut out,
    )
    .await?;
    let prefix = format!("{subnet}.");
    Ok(out
        .stdout_text()
        .split_whitespace()
        .find(|w| w.starts_with(&prefix))
        .map(|w| w.split('/').next().unwrap_or(w).to_string()))
}
