//! The lifecycle engine: prepare the host → box → up → connect → suites → collect → destroy.
//!
//! The engine emits [`event::Event`]s and never calls a reporter. Teardown is registered before
//! anything is created, and runs whatever happens: success, failures, a lost VM, or a signal
//! (the first starts an orderly teardown, a second a fast one by name).

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
    /// Keep the VMs after the run (`metalab up`) instead of destroying them.
    pub keep: bool,
}

/// Why the work of a run stopped early.
#[derive(Debug)]
enum Stop {
    /// The lab failed: a VM did not come up, a connection dropped.
    Infra,
    /// A signal asked for teardown.
    Signal(crate::signal::Sig),
}

/// What was created, so teardown knows what to remove. Filled in *before* each create.
#[derive(Default)]
struct Resources {
    project: Mutex<Option<(Project, SubnetClaim)>>,
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
        let outcome = {
            let work = self.work();
            tokio::select! {
                r = work => r,
                sig = self.shutdown.requested() => {
                    self.events.emit(EventKind::Cancelling { signal: sig.name().into(), fast: false });
                    Err(Stop::Signal(sig))
                }
            }
        };
        let mut status = match outcome {
            Ok(s) => s,
            Err(Stop::Infra) => Status::InfraError,
            Err(Stop::Signal(sig)) => sig.status(),
        };
        if let Err(e) = self.teardown().await {
            self.events.emit(EventKind::Notice { message: e });
            status = status.worst(Status::InfraError);
        }
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
        result.map_err(|_| Stop::Infra)
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
        *self.res.project.lock().expect("not poisoned") = Some((project.clone(), claim));
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
            .project
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|(_, c)| c.prefix.clone())
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
