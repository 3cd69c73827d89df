//! A lab: the VMs of one run on one host, as recorded in the run's state directory once they are
//! up. `metalab exec` and `metalab destroy` work from this record; the engine writes it.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::RunId;
use crate::state::StateDir;
use crate::transport::ssh::SshTarget;
use crate::vagrant::Project;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub run_id: RunId,
    /// The lane within the run ("" when the run has one).
    #[serde(default)]
    pub lane: String,
    /// The metalab process that owns the lab (gone once the run ended with the VMs kept).
    pub pid: u32,
    pub host: String,
    /// How to reach the host, when the VMs are only reachable through it.
    #[serde(default)]
    pub jump: Option<crate::transport::ssh::SshAccess>,
    pub project: Project,
    /// First three octets of the run's private network.
    pub subnet: String,
    pub vms: Vec<VmState>,
    pub created: DateTime<Utc>,
    /// Set when the VMs were kept after the run: when `metalab reap` may remove them.
    pub keep_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    pub name: String,
    pub ssh: SshTarget,
    /// The VM's address on the run's private network.
    pub private_ip: Option<String>,
}

impl LabState {
    pub fn save(&self, state: &StateDir) -> anyhow::Result<()> {
        let path = state.run(&self.run_id).lab_state(&self.lane);
        crate::files::write_atomic(&path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    pub fn load(path: &Path) -> anyhow::Result<LabState> {
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }

    /// Every lab with a record on this host, newest first.
    pub fn all(state: &StateDir) -> Vec<LabState> {
        state
            .run_ids()
            .iter()
            .flat_map(|id| LabState::of_run(state, id))
            .collect()
    }

    /// The labs of one run that still have a record (a run has one per lane).
    pub fn of_run(state: &StateDir, run: &RunId) -> Vec<LabState> {
        state
            .run(run)
            .lab_states()
            .iter()
            .filter_map(|path| LabState::load(path).ok())
            .collect()
    }

    /// The newest running lab (of `run`, when given) that has `vm`. Looks at run directories
    /// newest first and stops at the first match: `metalab exec` pays for this on every call,
    /// and a state directory keeps every run's journal.
    pub fn newest_with_vm(state: &StateDir, run: Option<&RunId>, vm: &str) -> Option<LabState> {
        let ids = match run {
            Some(id) => vec![id.clone()],
            None => state.run_ids(),
        };
        ids.iter().find_map(|id| {
            LabState::of_run(state, id)
                .into_iter()
                .find(|l| l.vm(vm).is_some())
        })
    }

    /// The prefix of every libvirt name of this lab.
    pub fn prefix(&self) -> String {
        let run = self.run_id.resource_prefix();
        if self.lane.is_empty() {
            run
        } else {
            format!("{run}{}-", self.lane)
        }
    }

    /// A transport to the lab's host: this machine, or an SSH session to the host.
    pub async fn host_transport(
        &self,
    ) -> anyhow::Result<std::sync::Arc<dyn crate::transport::Transport>> {
        Ok(match &self.jump {
            None => std::sync::Arc::new(crate::transport::local::Local),
            Some(a) => std::sync::Arc::new(
                crate::transport::ssh::SshSession::connect(
                    &a.target,
                    &a.policy,
                    std::time::Duration::from_secs(30),
                )
                .await?,
            ),
        })
    }

    /// Connects to one of the lab's VMs, through its host when the host is remote.
    pub async fn connect_vm(
        &self,
        state: &StateDir,
        vm: &VmState,
    ) -> anyhow::Result<crate::transport::ssh::SshSession> {
        use crate::transport::ssh::SshSession;
        let policy = self.pinned_key(state, &vm.name);
        let timeout = std::time::Duration::from_secs(30);
        Ok(match &self.jump {
            None => SshSession::connect(&vm.ssh, &policy, timeout).await?,
            Some(a) => {
                let host = SshSession::connect(&a.target, &a.policy, timeout).await?;
                host.connect_via(&vm.ssh, &policy, timeout).await?
            }
        })
    }

    /// The VM's SSH host key, as pinned when the run first connected.
    pub fn pinned_key(&self, state: &StateDir, vm: &str) -> crate::transport::ssh::HostKeyPolicy {
        let key = vm_key(&self.lane, vm);
        crate::transport::ssh::HostKeyPolicy::PinFile(state.run(&self.run_id).host_key(&key))
    }

    /// An SSH session to the lab's host when it is remote (the VMs are reached through it).
    pub async fn host_session(&self) -> anyhow::Result<Option<crate::transport::ssh::SshSession>> {
        let Some(a) = &self.jump else {
            return Ok(None);
        };
        let timeout = std::time::Duration::from_secs(30);
        Ok(Some(
            crate::transport::ssh::SshSession::connect(&a.target, &a.policy, timeout).await?,
        ))
    }

    pub fn vm(&self, name: &str) -> Option<&VmState> {
        self.vms.iter().find(|v| v.name == name)
    }
}

/// The name a VM's pinned host key and copied identity carry in the run's directory: the VM, and
/// its lane when the run has several.
pub fn vm_key(lane: &str, vm: &str) -> String {
    if lane.is_empty() {
        vm.to_string()
    } else {
        format!("{lane}-{vm}")
    }
}
