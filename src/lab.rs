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
    /// The metalab process that owns the lab (gone once the run ended with the VMs kept).
    pub pid: u32,
    pub host: String,
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
        let path = state.run(&self.run_id).lab_state();
        crate::report::files::write_atomic(&path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    pub fn load(path: &Path) -> anyhow::Result<LabState> {
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }

    /// Every lab with a record on this host, newest first.
    pub fn all(state: &StateDir) -> Vec<LabState> {
        let Ok(entries) = std::fs::read_dir(state.runs()) else {
            return Vec::new();
        };
        let mut labs: Vec<LabState> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| RunId::parse(&e.file_name().to_string_lossy()))
            .filter_map(|id| LabState::load(&state.run(&id).lab_state()).ok())
            .collect();
        labs.sort_by(|a, b| b.run_id.cmp(&a.run_id));
        labs
    }

    pub fn vm(&self, name: &str) -> Option<&VmState> {
        self.vms.iter().find(|v| v.name == name)
    }
}

/// How a lab's destroy went.
pub struct Destroyed {
    /// What `vagrant destroy` left and the sweep by name removed.
    pub swept: crate::libvirt::Leftovers,
    /// Set when `vagrant destroy` failed or was cut short by `fast`.
    pub vagrant_problem: Option<String>,
}

/// Destroys a lab's VMs: `vagrant destroy`, cut short when `fast` resolves, then a sweep of
/// every libvirt name carrying the run id. Fails only if something of the run is still there.
pub async fn destroy(
    host: &dyn crate::transport::Transport,
    project: &Project,
    run_id: &RunId,
    timeout: std::time::Duration,
    sink: &mut dyn crate::transport::OutputSink,
    fast: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Destroyed> {
    let vagrant_problem = tokio::select! {
        r = project.destroy(host, timeout, sink) => match r {
            Ok(o) if o.success() => None,
            Ok(o) => Some(format!("vagrant destroy: {}", o.describe())),
            Err(e) => Some(format!("vagrant destroy: {e}")),
        },
        _ = fast => Some("vagrant destroy skipped: fast teardown".to_string()),
    };
    let prefix = run_id.resource_prefix();
    let swept = crate::libvirt::sweep(host, &prefix).await?;
    let left = crate::libvirt::find(host, &prefix).await?;
    if !left.is_empty() {
        anyhow::bail!("still present after teardown: {}", left.describe());
    }
    Ok(Destroyed {
        swept,
        vagrant_problem,
    })
}
