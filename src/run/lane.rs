//! A lane: one set of VMs on one host, running its share of the suites one after the other:
//! up → connect → suites → collect → destroy, with infrastructure failures retried on fresh VMs.
//! Lanes of a run work at the same time, on separate hosts or side by side on one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::event::{EventKind, Phase};
use super::host_prep::HostReady;
use super::log::LogSink;
use super::{Plan, RunCtx, Stop, VM_LAB_DIR, suites};
use crate::exit::Status;
use crate::host::subnet::{self, Claim};
use crate::journal::{EntryId, Resource};
use crate::lab::{LabState, VmState};
use crate::suite::Suite;
use crate::transport::ssh::{HostKeyPolicy, SshSession, SshTarget};
use crate::transport::{Collect, Command, Transport, files};
use crate::vagrant::{self, Project};

/// One VM of a running lane, connected.
pub struct Vm {
    pub name: String,
    pub session: Arc<SshSession>,
    pub private_ip: Option<String>,
}

/// A Vagrant project the lane created, with its journal entry and subnet claim.
pub(super) struct Created {
    pub project: Project,
    pub claim: Claim,
    pub entry: EntryId,
}

/// What the lane created, so teardown knows what to remove. Filled in *before* each create.
#[derive(Default)]
pub(super) struct Resources {
    pub created: Mutex<Option<Created>>,
    pub sessions: Mutex<Vec<Arc<SshSession>>>,
    pub lab: Mutex<Option<LabState>>,
}

pub(super) struct Lane<'a> {
    pub ctx: &'a RunCtx<'a>,
    pub ready: &'a HostReady,
    /// "" for a run with one lane; `l1`, `l2`, ... otherwise. Part of every libvirt name.
    pub name: String,
    pub suites: Vec<Suite>,
    pub vms: Vec<String>,
    pub res: Resources,
}

/// Spreads the plan's suites over one lane per prepared host, heaviest suites first onto the
/// least loaded lane. A plan without suites (`metalab up`) gets one lane with all its VMs.
pub(super) fn plan_lanes<'a>(
    plan: &Plan,
    ctx: &'a RunCtx<'a>,
    ready: &'a [HostReady],
) -> Vec<Lane<'a>> {
    let count = ready.len().min(plan.suites.len()).max(1);
    let mut groups: Vec<Vec<Suite>> = vec![Vec::new(); count];
    let mut load = vec![0usize; count];
    let mut suites: Vec<&Suite> = plan.suites.iter().collect();
    suites.sort_by_key(|s| std::cmp::Reverse(weight(s)));
    for s in suites {
        let i = (0..count).min_by_key(|&i| load[i]).unwrap_or(0);
        load[i] += weight(s);
        groups[i].push(s.clone());
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, mut suites)| {
            suites.sort_by(|a, b| a.name.cmp(&b.name));
            let vms = if plan.suites.is_empty() {
                plan.vms.clone()
            } else {
                plan.vms
                    .iter()
                    .filter(|v| suites.iter().any(|s| s.vms.contains(v)))
                    .cloned()
                    .collect()
            };
            Lane {
                ctx,
                ready: &ready[i],
                name: if count == 1 {
                    String::new()
                } else {
                    format!("l{}", i + 1)
                },
                suites,
                vms,
                res: Resources::default(),
            }
        })
        .collect()
}

/// A rough cost of a suite, for balancing lanes until recorded durations are used.
fn weight(s: &Suite) -> usize {
    1 + s.tests.len()
        + s.benchmarks
            .iter()
            .map(|b| (b.warmup + b.repeats) as usize * 3)
            .sum::<usize>()
}

impl Lane<'_> {
    /// How this lane is named in phases and logs.
    pub fn scope(&self) -> String {
        match (self.name.is_empty(), self.ready.scope.is_empty()) {
            (true, true) => String::new(),
            (true, false) => self.ready.scope.clone(),
            (false, _) => self.name.clone(),
        }
    }

    /// The prefix of every libvirt name of this lane.
    pub fn prefix(&self) -> String {
        let run = self.ctx.run_id.resource_prefix();
        if self.name.is_empty() {
            run
        } else {
            format!("{run}{}-", self.name)
        }
    }

    /// What the Vagrantfile gets as `METALAB_RUN_ID`: the run id, plus the lane's name.
    fn vagrant_run_id(&self) -> String {
        if self.name.is_empty() {
            self.ctx.run_id.to_string()
        } else {
            format!("{}-{}", self.ctx.run_id, self.name)
        }
    }

    fn progress(&self, phase: Phase, message: String) {
        self.ctx.progress(phase, &self.scope(), message);
    }

    /// Runs the lane to the end, teardown included, retrying infrastructure failures that happen
    /// before any suite ran with fresh VMs.
    pub async fn execute(&self) -> Status {
        let attempts = 1 + self.ctx.config.retries.infra;
        let mut status = Status::Passed;
        for attempt in 1..=attempts {
            let outcome = tokio::select! {
                r = self.work() => r,
                sig = self.ctx.shutdown.requested() => Err(Stop::Signal(sig)),
            };
            let retry = matches!(
                outcome,
                Err(Stop::Infra {
                    before_suites: true
                })
            ) && attempt < attempts
                && self.ctx.shutdown.signal().is_none();
            status = match outcome {
                Ok(s) => s,
                Err(Stop::Infra { .. }) => Status::InfraError,
                Err(Stop::Signal(sig)) => sig.status(),
            };
            let final_status = if retry { Status::Passed } else { status };
            if let Err(e) = self.teardown(final_status).await {
                self.ctx.events.emit(EventKind::Notice { message: e });
                return status.worst(Status::InfraError);
            }
            if !retry {
                break;
            }
            self.ctx.events.emit(EventKind::Notice {
                message: format!("infrastructure error before any suite ran: retrying with fresh VMs (attempt {}/{attempts})", attempt + 1),
            });
        }
        status
    }

    async fn work(&self) -> Result<Status, Stop> {
        let scope = self.scope();
        let detail = format!("vagrant up {}", self.vms.join(" "));
        let project = self
            .ctx
            .phase(Phase::Up, &scope, &detail, |log| self.up(log))
            .await?;
        let vms = self
            .ctx
            .phase(
                Phase::Connect,
                &scope,
                "ssh sessions, suites copied in",
                |log| self.connect(log, &project),
            )
            .await?;
        suites::run_all(self, &vms).await
    }

    /// `vagrant up` of the lane's VMs. Their teardown is registered (and journaled) before
    /// Vagrant starts.
    async fn up(&self, log: PathBuf) -> anyhow::Result<Project> {
        let host = &self.ready.host;
        let claim = subnet::claim(host, &self.vagrant_run_id()).await?;
        let project = self.project(&claim.prefix);
        self.progress(
            Phase::Up,
            format!(
                "{} VM(s), {} MiB each, {}",
                self.vms.len(),
                self.ctx.config.vm.memory,
                self.ready.accel
            ),
        );
        let entry =
            self.ctx
                .journal
                .lock()
                .expect("not poisoned")
                .record(Resource::VagrantProject {
                    host: host.name.clone(),
                    project: project.clone(),
                    prefix: self.prefix(),
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
                host.transport.as_ref(),
                &self.vms,
                self.ctx.config.timeouts.up,
                &mut sink,
            )
            .await?;
        if !outcome.success() {
            let why = sink
                .combined_text()
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("==>") && !l.starts_with("    "))
                .map(|l| format!(": {}", l.trim()))
                .unwrap_or_default();
            anyhow::bail!("vagrant up failed ({}){why}", outcome.describe());
        }
        Ok(project)
    }

    fn project(&self, subnet: &str) -> Project {
        let host = &self.ready.host;
        let config = self.ctx.config;
        let vars = [
            ("METALAB_RUN_ID", self.vagrant_run_id()),
            ("METALAB_CPUS", config.vm.cpus.to_string()),
            ("METALAB_MEMORY", config.vm.memory.to_string()),
            ("METALAB_ACCEL", self.ready.accel.to_string()),
            ("METALAB_SUBNET", subnet.to_string()),
            ("METALAB_BOX_VERSION", self.ready.built.info.version.clone()),
            ("METALAB_HOME", host.home.clone()),
        ];
        // The Vagrantfile's directory, where the host sees it.
        let local_dir = config.vagrantfile.parent().unwrap_or(Path::new("/"));
        let dir = match &host.lab_dir {
            None => local_dir.display().to_string(),
            Some(remote) => {
                let rel = local_dir
                    .strip_prefix(&config.root)
                    .unwrap_or(Path::new(""));
                Path::new(remote).join(rel).display().to_string()
            }
        };
        let lane = if self.name.is_empty() {
            "lab"
        } else {
            self.name.as_str()
        };
        Project {
            dir,
            vagrantfile: config
                .vagrantfile
                .file_name()
                .map_or("Vagrantfile".into(), |n| n.to_string_lossy().into_owned()),
            dotfile_dir: host.vagrant_dotfile(&self.ctx.run_id, lane),
            vagrant_home: host.vagrant_home(),
            vars: vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// One SSH session per VM from `vagrant ssh-config` (read once), through the host when it
    /// is remote, and the suites copied in.
    async fn connect(&self, log: PathBuf, project: &Project) -> anyhow::Result<Vec<Vm>> {
        let host = &self.ready.host;
        let mut sink = LogSink::append(&log);
        let targets = project
            .ssh_config(host.transport.as_ref(), &self.vms)
            .await?;
        let run_dir = self.ctx.state.run(&self.ctx.run_id);
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
            let target = self.local_keys(&name, target).await?;
            sink.note(&format!("{name}: connecting to {}", target.describe()));
            let policy = HostKeyPolicy::PinFile(run_dir.host_key(&self.vm_key(&name)));
            let session = Arc::new(
                SshSession::connect_until(&target, &policy, deadline, host.jump.as_deref()).await?,
            );
            self.res
                .sessions
                .lock()
                .expect("not poisoned")
                .push(session.clone());
            files::put_dir(
                session.as_ref(),
                &self.ctx.config.suites_dir,
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
            self.ctx.events.emit(EventKind::VmReady {
                vm: name.clone(),
                scope: self.scope(),
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
            run_id: self.ctx.run_id.clone(),
            lane: self.name.clone(),
            pid: std::process::id(),
            host: host.name.clone(),
            jump: host.jump.as_ref().map(|j| j.access()),
            project: project.clone(),
            subnet,
            vms: states,
            created: chrono::Utc::now(),
            keep_until: None,
        };
        lab.save(&self.ctx.state)?;
        *self.res.lab.lock().expect("not poisoned") = Some(lab);
        Ok(vms)
    }

    /// The name a VM's pinned key and copied identity carry: the VM, and the lane if any.
    fn vm_key(&self, vm: &str) -> String {
        if self.name.is_empty() {
            vm.to_string()
        } else {
            format!("{}-{vm}", self.name)
        }
    }

    /// A remote host's VM keys live on the host: copy them into the run's directory here.
    async fn local_keys(&self, vm: &str, mut target: SshTarget) -> anyhow::Result<SshTarget> {
        let host = &self.ready.host;
        if host.is_local() {
            return Ok(target);
        }
        let dir = self.ctx.state.run(&self.ctx.run_id).root().join("keys");
        std::fs::create_dir_all(&dir)?;
        let mut local = Vec::new();
        for (i, remote) in target.identity_files.iter().enumerate() {
            let mut out = Collect::default();
            let cmd = Command::new(
                format!(
                    "cat {}",
                    crate::transport::sh_quote(&remote.display().to_string())
                ),
                Duration::from_secs(30),
            )
            .sudo(true);
            if host.transport.exec(&cmd, &mut out).await?.success() {
                let path = dir.join(format!("{}-{i}", self.vm_key(vm)));
                write_private(&path, &out.stdout)?;
                local.push(path);
            }
        }
        target.identity_files = local;
        Ok(target)
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// The VM's address inside the lane's private subnet (`10.77.<n>.x`).
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
