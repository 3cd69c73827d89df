//! A lane's lifecycle: one set of VMs on one host, running its share of the suites one after the
//! other: up → provision → connect → snapshot → (revert → suite)* → collect → destroy, with
//! infrastructure failures before any suite retried on fresh VMs. The VMs themselves are the
//! [`crate::vm`] layer's; this file decides what happens to them and when.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::host_prep::HostReady;
use super::lease::{self, Lease};
use super::log::LogSink;
use super::suites::{self, SuiteEnv};
use super::{RunCtx, Stop, VM_LAB_DIR};
use crate::exit::Status;
use crate::host::fence::{self, Fence};
use crate::host::subnet::{self, Claim};
use crate::journal::{EntryId, Resource};
use crate::lab::{LabState, VmState};
use crate::libvirt;
use crate::model::event::{EventKind, Phase};
use crate::suite::Suite;
use crate::transport::files;
use crate::transport::ssh::{HostKeyPolicy, SshSession, SshTarget};
use crate::vagrant::{self, Project};
use crate::vm::access::{self, LoginKey};
use crate::vm::{Driver, VagrantLibvirt, Vm, guest};

/// What a lane made on its host, with its journal entry, and what it holds there: the subnet
/// claimed from metalab, and leases on the subnets the lab pins.
pub(super) struct Created {
    pub project: Project,
    pub driver: VagrantLibvirt,
    pub claim: Option<Claim>,
    pub lease: Lease,
    pub entry: EntryId,
}

/// What the lane created, so teardown knows what to remove. Filled in *before* each create.
#[derive(Default)]
pub(super) struct Resources {
    pub created: Mutex<Option<Created>>,
    /// Every SSH session opened, to close at the end.
    pub sessions: Mutex<Vec<Arc<SshSession>>>,
    /// Each VM's current session (after a revert, the new one): what diagnostics go through.
    pub current: Mutex<BTreeMap<String, Arc<SshSession>>>,
    pub lab: Mutex<Option<LabState>>,
}

impl Resources {
    /// Keeps a VM's new session, to close at the end and to reach the VM through.
    pub fn opened(&self, vm: &str, session: &Arc<SshSession>) {
        self.sessions
            .lock()
            .expect("not poisoned")
            .push(session.clone());
        self.current
            .lock()
            .expect("not poisoned")
            .insert(vm.to_string(), session.clone());
    }
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

impl<'a> Lane<'a> {
    pub fn new(
        ctx: &'a RunCtx<'a>,
        ready: &'a HostReady,
        name: String,
        suites: Vec<Suite>,
        vms: Vec<String>,
    ) -> Lane<'a> {
        Lane {
            ctx,
            ready,
            name,
            suites,
            vms,
            res: Resources::default(),
        }
    }
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

    pub(super) fn progress(&self, phase: Phase, message: String) {
        self.ctx.progress(phase, &self.scope(), message);
    }

    /// The lane's driver, once `up` made one.
    pub(super) fn driver(&self) -> Option<VagrantLibvirt> {
        let created = self.res.created.lock().expect("not poisoned");
        created.as_ref().map(|c| c.driver.clone())
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
            if let Err(e) = self.teardown(status, retry).await {
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
        let driver = self
            .ctx
            .phase(Phase::Up, &scope, &detail, |log| self.up(log))
            .await?;
        if self.ctx.config.provision && self.ctx.description.provisions(&self.vms) {
            let detail = format!("vagrant provision {}", self.vms.join(" "));
            let provisioned = self
                .ctx
                .phase_raw(Phase::Provision, &scope, &detail, |log| {
                    self.provision(log, &driver)
                })
                .await;
            match provisioned {
                Ok(()) => {}
                Err(e) if e.downcast_ref::<ProvisionFailed>().is_some() => {
                    for suite in &self.suites {
                        suites::skip_suite(
                            &self.suite_env(),
                            suite,
                            "the VMs' provisioning failed",
                        );
                    }
                    return Ok(Status::TestsFailed);
                }
                Err(_) => {
                    return Err(Stop::Infra {
                        before_suites: true,
                    });
                }
            }
        }
        let mut vms = self
            .ctx
            .phase(
                Phase::Connect,
                &scope,
                "ssh sessions, suites copied in",
                |log| self.connect(log, &driver),
            )
            .await?;
        let snapshot = self.snapshots(&driver, &vms).await;
        self.run_suites(&driver, &mut vms, snapshot.as_deref())
            .await
    }

    /// Runs every suite of the lane, one after the other; each after the first starts from VMs
    /// put back to the snapshot (unless it asks not to). A lost VM stops the lane
    /// (infrastructure); the suites not run are reported as skipped.
    async fn run_suites(
        &self,
        driver: &dyn Driver,
        vms: &mut [Vm],
        snapshot: Option<&str>,
    ) -> Result<Status, Stop> {
        let env = self.suite_env();
        let mut status = Status::Passed;
        for (i, suite) in self.suites.iter().enumerate() {
            if env.stopped() {
                suites::skip_suite(&env, suite, suites::FAIL_FAST);
                continue;
            }
            let from = snapshot.filter(|_| i > 0 && suite.pristine);
            let ready = match from {
                Some(name) => self.revert(driver, vms, suite, name).await,
                None => Ok(()),
            };
            let result = match ready {
                Ok(()) => suites::run_suite(&env, suite, vms, from).await,
                Err(reason) => Err(reason),
            };
            match result {
                Ok(s) => status = status.worst(s),
                Err(reason) => {
                    for rest in &self.suites[i + 1..] {
                        suites::skip_suite(&env, rest, &reason);
                    }
                    return Err(Stop::Infra {
                        before_suites: false,
                    });
                }
            }
        }
        Ok(status)
    }

    fn suite_env(&self) -> SuiteEnv<'_> {
        SuiteEnv {
            events: &self.ctx.events,
            run_id: &self.ctx.run_id,
            artifacts: &self.ctx.artifacts,
            timeouts: &self.ctx.config.timeouts,
            fail_fast: self.ctx.fail_fast.as_ref(),
            lab_variables: &self.ctx.lab_variables,
            budget: &self.ctx.budget,
            images: self.ctx.images.get().map_or(&[], Vec::as_slice),
        }
    }

    /// `vagrant up` of the lane's VMs, through metalab's wrapper around the lab's Vagrantfile.
    /// First the lane claims a subnet when the lab takes one from metalab (`METALAB_SUBNET`),
    /// and waits for the subnets the lab pins. Teardown is registered (and journaled) before
    /// Vagrant starts.
    async fn up(&self, log: PathBuf) -> anyhow::Result<VagrantLibvirt> {
        let host = &self.ready.host;
        let description = &self.ctx.description;
        let probe = subnet::probe_network();
        let claim = match description.follows_subnet(&probe) {
            true => Some(subnet::claim(host, &self.vagrant_run_id()).await?),
            false => None,
        };
        let pinned = description.pinned_subnets(&self.vms, Some(&probe));
        let tell = |m: String| self.progress(Phase::Up, m);
        let lease = lease::acquire(host, &self.ctx.state, &pinned, &tell).await?;
        let shared = libvirt::network_names(host.transport.as_ref()).await?;
        let run = &self.ctx.run_id;
        let key = access::make_login_key(
            host.transport.as_ref(),
            &host.vm_login_key(run, self.dir_name()),
            &host.consoles(run, self.dir_name()),
        )
        .await?;
        let fence = self
            .ctx
            .fence
            .as_ref()
            .map(|allow| Fence::new(&self.prefix(), allow));
        let project = self.project(claim.as_ref(), &shared, &key, fence.as_ref());
        let driver = VagrantLibvirt::new(host.transport.clone(), project.clone(), self.prefix());
        // With several hosts, say which one this lane's VMs are on.
        let on = if self.ready.scope.is_empty() {
            String::new()
        } else {
            format!(" on {}", host.name)
        };
        self.progress(
            Phase::Up,
            format!(
                "{} VM(s) of {}, {}{on}",
                self.vms.len(),
                self.ctx.config.vagrantfile.display(),
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
            project,
            driver: driver.clone(),
            claim,
            lease,
            entry,
        });
        if let Some(fence) = &fence {
            fence::raise(host.transport.as_ref(), fence).await?;
            self.progress(Phase::Up, fence_summary(fence));
        }
        let mut sink = LogSink::append(&log, &self.ctx.budget).on_line(|l| {
            if let Some((vm, msg)) = vagrant::progress_line(l) {
                self.progress(Phase::Up, format!("{vm}: {msg}"));
            }
        });
        driver
            .up(&self.vms, self.ctx.config.timeouts.up, &mut sink)
            .await?;
        // What the lab made on the host, every name the run's own.
        let made = driver.resources().await?;
        sink.note(&format!(
            "metalab: the run's libvirt resources: {}",
            made.describe()
        ));
        if let Some(fence) = &fence {
            let open = fence::unfenced(host.transport.as_ref(), fence, &made.domains).await?;
            anyhow::ensure!(
                open.is_empty(),
                "the VMs have network interfaces outside the run's fence: {} (an untrusted run \
                 allows only private networks, whose taps metalab names)",
                open.join(", ")
            );
        }
        Ok(driver)
    }

    /// The Vagrantfile's provisioners on the lane's VMs, side by side as `vagrant up` runs them
    /// with vagrant-libvirt. Their failure is the lab's ([`ProvisionFailed`]); a connection that
    /// drops is the infrastructure's.
    async fn provision(&self, log: PathBuf, driver: &dyn Driver) -> anyhow::Result<()> {
        let each = self.vms.iter().map(|vm| {
            let log = &log;
            async move {
                let mut sink = LogSink::append(log, &self.ctx.budget)
                    .whole_lines()
                    .on_line(|l| {
                        if let Some((vm, msg)) = vagrant::progress_line(l) {
                            self.progress(Phase::Provision, format!("{vm}: {msg}"));
                        }
                    });
                driver
                    .provision(vm, self.ctx.config.timeouts.up, &mut sink)
                    .await
            }
        });
        let failures: Vec<String> = futures::future::try_join_all(each)
            .await?
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if !failures.is_empty() {
            return Err(ProvisionFailed(format!(
                "vagrant provision failed: {}",
                failures.join("; ")
            ))
            .into());
        }
        Ok(())
    }

    fn project(
        &self,
        claim: Option<&Claim>,
        host_networks: &[String],
        key: &LoginKey,
        fence: Option<&Fence>,
    ) -> Project {
        let host = &self.ready.host;
        let config = self.ctx.config;
        let mut vars = vec![
            ("METALAB_RUN_ID", self.vagrant_run_id()),
            ("METALAB_CPUS", config.vm.cpus.to_string()),
            ("METALAB_MEMORY", config.vm.memory.to_string()),
            ("METALAB_ACCEL", self.ready.accel.to_string()),
            ("METALAB_HOME", host.home.clone()),
            ("METALAB_NAME_PREFIX", self.prefix()),
            ("METALAB_HOST_NETWORKS", host_networks.join(",")),
            ("METALAB_STORAGE_POOL", libvirt::POOL.to_string()),
            (vagrant::RUN_TAG, self.ctx.run_id.to_string()),
            ("METALAB_SSH_KEY", key.path.clone()),
            ("METALAB_SSH_PUBKEY", key.public_blob.clone()),
            (
                "METALAB_CONSOLE_DIR",
                host.consoles(&self.ctx.run_id, self.dir_name()),
            ),
        ];
        if let Some(c) = claim {
            vars.push(("METALAB_SUBNET", c.prefix.clone()));
        }
        if let Some(f) = fence {
            vars.push(("METALAB_TAP_PREFIX", f.tap_prefix.clone()));
        }
        if let Some(version) = &self.ready.built_version {
            vars.push(("METALAB_BOX_VERSION", version.clone()));
        }
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
        let lane = self.dir_name();
        Project {
            dir,
            vagrantfile: config
                .vagrantfile
                .file_name()
                .map_or("Vagrantfile".into(), |n| n.to_string_lossy().into_owned()),
            wrapper: host.vagrant_wrapper(&self.ctx.run_id, lane),
            dotfile_dir: host.vagrant_dotfile(&self.ctx.run_id, lane),
            vagrant_home: host.vagrant_home(),
            vars: vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// One SSH session per VM from `vagrant ssh-config` (read once), through the host when it
    /// is remote, and the suites copied in. The VMs are connected side by side: each handshake
    /// and copy waits mostly on its own VM's emulated CPU.
    async fn connect(&self, log: PathBuf, driver: &dyn Driver) -> anyhow::Result<Vec<Vm>> {
        let host = &self.ready.host;
        let targets = driver.ssh_targets(&self.vms).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let connected = futures::future::try_join_all(
            targets
                .into_iter()
                .map(|(name, target)| self.connect_vm(&log, name, target, deadline)),
        )
        .await?;
        let created = self.res.created.lock().expect("not poisoned");
        let Some(created) = created.as_ref() else {
            anyhow::bail!("connecting to VMs the lane did not make");
        };
        let lab = LabState {
            run_id: self.ctx.run_id.clone(),
            lane: self.name.clone(),
            pid: std::process::id(),
            host: host.name.clone(),
            jump: host.jump.as_ref().map(|j| j.access()),
            project: created.project.clone(),
            subnet: created
                .claim
                .as_ref()
                .map(|c| c.prefix.clone())
                .unwrap_or_default(),
            vms: connected
                .iter()
                .map(|vm| VmState {
                    name: vm.name.clone(),
                    ssh: vm.target.clone(),
                    private_ip: vm.lab_address.clone(),
                })
                .collect(),
            created: chrono::Utc::now(),
            keep_until: None,
        };
        lab.save(&self.ctx.state)?;
        *self.res.lab.lock().expect("not poisoned") = Some(lab);
        Ok(connected)
    }

    /// Connects to one VM (its SSH key pinned in the run's directory), finds its lab address and
    /// copies the suites in.
    async fn connect_vm(
        &self,
        log: &Path,
        name: String,
        target: SshTarget,
        deadline: Instant,
    ) -> anyhow::Result<Vm> {
        let host = &self.ready.host;
        let mut sink = LogSink::append(log, &self.ctx.budget);
        let run_dir = self.ctx.state.run(&self.ctx.run_id);
        let target = match host.is_local() {
            true => target,
            false => {
                let dir = run_dir.vm_keys();
                guest::local_identities(host.transport.as_ref(), target, &dir, &self.vm_key(&name))
                    .await?
            }
        };
        sink.note(&format!("{name}: connecting to {}", target.describe()));
        let pin = run_dir.host_key(&self.vm_key(&name));
        self.pin_announced_host_key(&name, &pin, &mut sink).await;
        let policy = HostKeyPolicy::PinFile(pin);
        let machine = self.ctx.description.machine(&name);
        let vm = Vm::connect(
            name,
            target,
            policy,
            deadline,
            host.jump.as_deref(),
            machine,
        )
        .await?;
        self.res.opened(&vm.name, &vm.session);
        files::put_dir(
            vm.session.as_ref(),
            &self.ctx.config.suites_dir,
            &format!("{VM_LAB_DIR}/suites"),
            true,
            Duration::from_secs(120),
        )
        .await?;
        sink.note(&format!(
            "{}: connected; lab address {}",
            vm.name,
            vm.lab_address.as_deref().unwrap_or("none")
        ));
        self.ctx.events.emit(EventKind::VmReady {
            vm: vm.name.clone(),
            scope: self.scope(),
            address: vm.target.host.clone(),
        });
        Ok(vm)
    }

    fn vm_key(&self, vm: &str) -> String {
        crate::lab::vm_key(&self.name, vm)
    }

    /// The lane's directory in the run's state directory on its host.
    fn dir_name(&self) -> &str {
        if self.name.is_empty() {
            "lab"
        } else {
            self.name.as_str()
        }
    }

    /// Pins the host key a VM announced on its serial console, so that the first connection
    /// accepts that key only (see [`access`]); a VM that announced none has the first key it
    /// shows pinned.
    async fn pin_announced_host_key(&self, vm: &str, pin: &Path, sink: &mut LogSink<'_>) {
        let host = &self.ready.host;
        let console = format!(
            "{}/{}{vm}.log",
            host.consoles(&self.ctx.run_id, self.dir_name()),
            self.prefix()
        );
        let Some(key) = access::announced_host_key(host.transport.as_ref(), &console).await else {
            sink.note(&format!(
                "{vm}: no host key on its console; the first one it shows is pinned"
            ));
            return;
        };
        let pinned = pin
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::write(pin, format!("{key}\n")));
        match pinned {
            Ok(()) => sink.note(&format!("{vm}: host key from its console: {key}")),
            Err(e) => sink.note(&format!(
                "{vm}: cannot pin its host key in {}: {e}",
                pin.display()
            )),
        }
    }
}

/// Why provisioning failed: the lab's own failure (exit 1), not the infrastructure's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct ProvisionFailed(String);

/// What the lane's progress says of its fence.
fn fence_summary(fence: &Fence) -> String {
    let allowed = match fence.allow.is_empty() {
        true => "nothing else".to_string(),
        false => fence
            .allow
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!(
        "untrusted: the VMs are fenced (nftables {}): they reach each other, DHCP, and {allowed}",
        fence.name
    )
}
