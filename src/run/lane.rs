//! A lane: one set of VMs on one host, running its share of the suites one after the other:
//! up → connect → suites → collect → destroy, with infrastructure failures retried on fresh VMs.
//! Lanes of a run work at the same time, on separate hosts or side by side on one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::host_prep::HostReady;
use super::lease::{self, Lease};
use super::log::LogSink;
use super::{Plan, RunCtx, Stop, VM_LAB_DIR, suites};
use crate::exit::Status;
use crate::host::subnet::{self, Claim};
use crate::journal::{EntryId, Resource};
use crate::lab::{LabState, VmState};
use crate::libvirt;
use crate::model::event::{EventKind, Phase};
use crate::suite::Suite;
use crate::transport::ssh::{HostKeyPolicy, SshSession, SshTarget};
use crate::transport::{Collect, Command, Transport, files};
use crate::vagrant::describe::Machine;
use crate::vagrant::{self, Project};

/// One VM of a running lane, connected.
pub struct Vm {
    pub name: String,
    pub session: Arc<SshSession>,
    pub private_ip: Option<String>,
    /// How to reach it again, after a snapshot revert has cut the session.
    pub target: SshTarget,
    pub policy: HostKeyPolicy,
}

/// A Vagrant project the lane created, with its journal entry, and what it holds of the host:
/// the subnet claimed from metalab, and leases on the subnets the lab pins.
pub(super) struct Created {
    pub project: Project,
    pub claim: Option<Claim>,
    pub lease: Lease,
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

/// Spreads the plan's suites over as many lanes as the hosts have room for, each lane a VM set
/// of its own running its share one suite after the other, heaviest suites first onto the
/// least loaded lane. A plan without suites (`metalab up`) gets one lane with all its VMs.
pub(super) fn plan_lanes<'a>(
    plan: &Plan,
    ctx: &'a RunCtx<'a>,
    ready: &'a [HostReady],
) -> Vec<Lane<'a>> {
    if plan.suites.is_empty() {
        return vec![lane(
            ctx,
            &ready[0],
            String::new(),
            Vec::new(),
            plan.vms.clone(),
        )];
    }
    // Two lanes of a lab that pins subnets could not be up at once on one host: one lane a host.
    let pinned = !plan
        .description
        .pinned_subnets(&plan.vms, Some(&subnet::probe_network()))
        .is_empty();
    let most = plan
        .suites
        .len()
        .min(ready.iter().map(|h| h.vm_slots).sum::<usize>())
        .min(if pinned { ready.len() } else { usize::MAX })
        .max(1);
    for count in (1..=most).rev() {
        let groups = split(&plan.suites, count);
        let vms: Vec<Vec<String>> = groups.iter().map(|g| needed_vms(&plan.vms, g)).collect();
        let room: Vec<usize> = ready.iter().map(|h| h.vm_slots).collect();
        let Some(hosts) = place(&vms, &room, pinned) else {
            continue;
        };
        return groups
            .into_iter()
            .zip(vms)
            .zip(hosts)
            .enumerate()
            .map(|(i, ((suites, vms), h))| {
                let name = if count == 1 {
                    String::new()
                } else {
                    format!("l{}", i + 1)
                };
                lane(ctx, &ready[h], name, suites, vms)
            })
            .collect();
    }
    // Not even one lane fits the hosts' room: run one anyway, on the first host.
    vec![lane(
        ctx,
        &ready[0],
        String::new(),
        plan.suites.clone(),
        needed_vms(&plan.vms, &plan.suites),
    )]
}

fn lane<'a>(
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

/// `count` groups of suites, balanced by weight; each group sorted by name.
fn split(suites: &[Suite], count: usize) -> Vec<Vec<Suite>> {
    let mut groups: Vec<Vec<Suite>> = vec![Vec::new(); count];
    let mut load = vec![0usize; count];
    let mut by_weight: Vec<&Suite> = suites.iter().collect();
    by_weight.sort_by_key(|s| (std::cmp::Reverse(weight(s)), s.name.clone()));
    for s in by_weight {
        let i = (0..count).min_by_key(|&i| load[i]).unwrap_or(0);
        load[i] += weight(s);
        groups[i].push(s.clone());
    }
    for g in &mut groups {
        g.sort_by(|a, b| a.name.cmp(&b.name));
    }
    groups
}

/// The Vagrantfile's VMs (in its order) that any of the suites needs.
fn needed_vms(all: &[String], suites: &[Suite]) -> Vec<String> {
    all.iter()
        .filter(|v| suites.iter().any(|s| s.vms.contains(v)))
        .cloned()
        .collect()
}

/// Which host each lane goes to, biggest lanes first into the host with most room left (with
/// `one_per_host`, a host takes one lane at most); `None` when they do not all fit.
fn place(lanes: &[Vec<String>], room: &[usize], one_per_host: bool) -> Option<Vec<usize>> {
    let mut room = room.to_vec();
    let mut order: Vec<usize> = (0..lanes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lanes[i].len()));
    let mut host_of = vec![0; lanes.len()];
    for i in order {
        let h = (0..room.len()).max_by_key(|&h| (room[h], std::cmp::Reverse(h)))?;
        if room[h] < lanes[i].len() {
            return None;
        }
        room[h] = if one_per_host {
            0
        } else {
            room[h] - lanes[i].len()
        };
        host_of[i] = h;
    }
    Some(host_of)
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
        let project = self
            .ctx
            .phase(Phase::Up, &scope, &detail, |log| self.up(log))
            .await?;
        if self.ctx.config.provision && self.ctx.description.provisions(&self.vms) {
            let detail = format!("vagrant provision {}", self.vms.join(" "));
            let provisioned = self
                .ctx
                .phase_raw(Phase::Provision, &scope, &detail, |log| {
                    self.provision(log, &project)
                })
                .await;
            match provisioned {
                Ok(()) => {}
                Err(e) if e.downcast_ref::<ProvisionFailed>().is_some() => {
                    for suite in &self.suites {
                        suites::skip_suite(self, suite, "the VMs' provisioning failed");
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
                |log| self.connect(log, &project),
            )
            .await?;
        let snapshot = self.snapshots(&vms).await;
        suites::run_all(self, &mut vms, snapshot.as_deref()).await
    }

    /// `vagrant up` of the lane's VMs, through metalab's wrapper around the lab's Vagrantfile.
    /// First the lane claims a subnet when the lab takes one from metalab (`METALAB_SUBNET`),
    /// and waits for the subnets the lab pins. Teardown is registered (and journaled) before
    /// Vagrant starts.
    async fn up(&self, log: PathBuf) -> anyhow::Result<Project> {
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
        let project = self.project(claim.as_ref(), &shared);
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
            project: project.clone(),
            claim,
            lease,
            entry,
        });
        project.install_wrapper(host.transport.as_ref()).await?;
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
            anyhow::bail!(
                "vagrant up failed ({}){}",
                outcome.describe(),
                last_words(&sink)
            );
        }
        // What the lab made on the host, every name the run's own.
        let made = libvirt::find(host.transport.as_ref(), &self.prefix()).await?;
        sink.note(&format!(
            "metalab: the run's libvirt resources: {}",
            made.describe()
        ));
        Ok(project)
    }

    /// The Vagrantfile's provisioners on the lane's VMs, side by side as `vagrant up` runs them
    /// with vagrant-libvirt. Their failure is the lab's ([`ProvisionFailed`]); a connection that
    /// drops is the infrastructure's.
    async fn provision(&self, log: PathBuf, project: &Project) -> anyhow::Result<()> {
        let each = self.vms.iter().map(|vm| {
            let log = &log;
            async move {
                let mut sink = LogSink::append(log).whole_lines().on_line(|l| {
                    if let Some((vm, msg)) = vagrant::progress_line(l) {
                        self.progress(Phase::Provision, format!("{vm}: {msg}"));
                    }
                });
                let outcome = project
                    .provision(
                        self.ready.host.transport.as_ref(),
                        std::slice::from_ref(vm),
                        self.ctx.config.timeouts.up,
                        &mut sink,
                    )
                    .await?;
                let failed = (!outcome.success())
                    .then(|| format!("{vm}: {}{}", outcome.describe(), last_words(&sink)));
                anyhow::Ok(failed)
            }
        });
        let failures: Vec<String> = futures::future::try_join_all(each)
            .await?
            .into_iter()
            .flatten()
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

    fn project(&self, claim: Option<&Claim>, host_networks: &[String]) -> Project {
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
        ];
        if let Some(c) = claim {
            vars.push(("METALAB_SUBNET", c.prefix.clone()));
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
        let lane = if self.name.is_empty() {
            "lab"
        } else {
            self.name.as_str()
        };
        let dotfile_dir = host.vagrant_dotfile(&self.ctx.run_id, lane);
        Project {
            dir,
            vagrantfile: config
                .vagrantfile
                .file_name()
                .map_or("Vagrantfile".into(), |n| n.to_string_lossy().into_owned()),
            wrapper: format!("{dotfile_dir}/../Vagrantfile"),
            dotfile_dir,
            vagrant_home: host.vagrant_home(),
            vars: vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// One SSH session per VM from `vagrant ssh-config` (read once), through the host when it
    /// is remote, and the suites copied in. The VMs are connected side by side: each handshake
    /// and copy waits mostly on its own VM's emulated CPU.
    async fn connect(&self, log: PathBuf, project: &Project) -> anyhow::Result<Vec<Vm>> {
        let host = &self.ready.host;
        let targets = project
            .ssh_config(host.transport.as_ref(), &self.vms)
            .await?;
        let subnet = self
            .res
            .created
            .lock()
            .expect("not poisoned")
            .as_ref()
            .and_then(|c| c.claim.as_ref().map(|c| c.prefix.clone()))
            .unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(120);
        let connected = futures::future::try_join_all(
            targets
                .into_iter()
                .map(|(name, target)| self.connect_vm(&log, name, target, deadline)),
        )
        .await?;
        let states = connected
            .iter()
            .map(|vm| VmState {
                name: vm.name.clone(),
                ssh: vm.target.clone(),
                private_ip: vm.private_ip.clone(),
            })
            .collect();
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
        Ok(connected)
    }

    /// Connects to one VM, copies the suites in and finds its address on the lab network.
    async fn connect_vm(
        &self,
        log: &Path,
        name: String,
        target: SshTarget,
        deadline: Instant,
    ) -> anyhow::Result<Vm> {
        let host = &self.ready.host;
        let mut sink = LogSink::append(log);
        let target = self.local_keys(&name, target).await?;
        sink.note(&format!("{name}: connecting to {}", target.describe()));
        let run_dir = self.ctx.state.run(&self.ctx.run_id);
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
        let machine = self.ctx.description.machine(&name);
        let private_ip = lab_address(session.as_ref(), machine, &target.host).await?;
        sink.note(&format!(
            "{name}: connected; lab address {}",
            private_ip.as_deref().unwrap_or("none")
        ));
        self.ctx.events.emit(EventKind::VmReady {
            vm: name.clone(),
            scope: self.scope(),
            address: target.host.clone(),
        });
        Ok(Vm {
            name,
            session,
            private_ip,
            target,
            policy,
        })
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

/// Why provisioning failed: the lab's own failure (exit 1), not the infrastructure's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct ProvisionFailed(String);

/// The last line of a Vagrant command's output that says something: its error, usually. An
/// exception Vagrant did not handle says it before its backtrace (`file:1:in `x': what (Class)`).
fn last_words(sink: &LogSink) -> String {
    let text = sink.combined_text();
    let said = text.lines().rev().find(|l| {
        let t = l.trim();
        !t.is_empty() && !l.starts_with("==>") && !l.starts_with(' ') && !t.starts_with("from ")
    });
    said.map(|l| {
        let what = l.split_once("': ").map_or(l, |(_, what)| what);
        format!(": {}", what.trim())
    })
    .unwrap_or_default()
}

/// The VM's address on the lab's network (`METALAB_IP_<VM>`), from what the Vagrantfile gives
/// it: the fixed address of its first private network that has one; else, when it takes its
/// address by DHCP, the first address it has besides the one SSH came in on (which may come a
/// moment after the management address: waited for, up to 30 s); else, with no private network
/// at all, the management address itself.
async fn lab_address(
    vm: &dyn Transport,
    machine: Option<&Machine>,
    management: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(fixed) = machine.and_then(Machine::fixed_address) {
        return Ok(Some(fixed.to_string()));
    }
    if !machine.is_some_and(|m| m.networks.iter().any(|n| n.dhcp)) {
        return Ok(Some(management.to_string()));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut out = Collect::default();
        vm.exec(
            &Command::new("ip -o -4 addr show scope global", Duration::from_secs(30)),
            &mut out,
        )
        .await?;
        let found = other_addresses(&out.stdout_text(), management)
            .into_iter()
            .next();
        if found.is_some() || Instant::now() >= deadline {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The IPv4 addresses in `ip -o -4 addr show` output, in interface order, but `except`.
fn other_addresses(listing: &str, except: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace().skip(2);
            (words.next()? == "inet").then_some(())?;
            words.next()?.split('/').next().map(str::to_string)
        })
        .filter(|a| a != except)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(name: &str, vms: &[&str], tests: usize) -> Suite {
        let text = format!(
            "vms = {vms:?}\n{}",
            (0..tests)
                .map(|i| format!("[[test]]\nname = \"t{i}\"\nrun = \"true\"\n"))
                .collect::<String>()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("suite.toml"), text).unwrap();
        let known = vec!["node1".to_string(), "node2".to_string()];
        crate::suite::load_all(dir.path(), &known)
            .unwrap()
            .remove(0)
    }

    fn vms(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_lab_address_is_any_but_the_management_one() {
        let listing = "2: eth0    inet 192.168.121.17/24 brd 192.168.121.255 scope global dynamic eth0\\       valid_lft 3591sec\n\
                       3: eth1    inet 10.77.4.23/24 brd 10.77.4.255 scope global dynamic eth1\\       valid_lft 3591sec\n";
        assert_eq!(
            other_addresses(listing, "192.168.121.17"),
            vec!["10.77.4.23"]
        );
        assert_eq!(
            other_addresses(listing, "10.77.4.23"),
            vec!["192.168.121.17"]
        );
    }

    #[test]
    fn lanes_that_fit_are_placed_and_lanes_that_do_not_are_refused() {
        // Two single-VM lanes fit a host with two slots; a two-VM lane and a one-VM lane do not.
        assert_eq!(
            place(&[vms(&["node1"]), vms(&["node1"])], &[2], false),
            Some(vec![0, 0])
        );
        assert_eq!(
            place(&[vms(&["node1", "node2"]), vms(&["node1"])], &[2], false),
            None
        );
        // Over two hosts, the bigger lane goes where there is most room.
        assert_eq!(
            place(&[vms(&["node1"]), vms(&["node1", "node2"])], &[1, 2], false),
            Some(vec![0, 1])
        );
        // A lab that pins subnets gets a host to each lane, however much room one has.
        assert_eq!(place(&[vms(&["node1"]), vms(&["node1"])], &[4], true), None);
        assert_eq!(
            place(&[vms(&["node1"]), vms(&["node1"])], &[4, 1], true),
            Some(vec![0, 1])
        );
    }

    #[test]
    fn suites_split_by_weight_and_every_suite_lands_once() {
        let all = vec![
            suite("a", &["node1"], 5),
            suite("b", &["node1"], 1),
            suite("c", &["node1", "node2"], 1),
        ];
        let groups = split(&all, 2);
        let mut names: Vec<String> = groups.iter().flatten().map(|s| s.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c"]);
        // The heaviest suite gets a lane to itself.
        assert!(groups.iter().any(|g| g.len() == 1 && g[0].name == "a"));
        assert_eq!(
            needed_vms(&vms(&["node1", "node2"]), &groups[1]),
            vms(&["node1", "node2"])
        );
    }
}
