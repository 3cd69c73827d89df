//! A lab host: the machine whose libvirt runs the VMs, and the state metalab keeps there.
//!
//! Everything done on a host goes through its transport, as shell commands, so the local machine
//! and a machine over SSH take the very same path. The runner's own state (journals, results,
//! pinned VM keys) stays on the runner; see [`crate::state`].

pub mod accel;
pub mod box_prune;
pub mod boxes;
pub mod fence;
pub mod lock;
pub mod subnet;
pub mod sync;

use std::path::PathBuf;
use std::sync::Arc;

use crate::ids::RunId;
use crate::state::StateDir;
use crate::transport::Transport;
use crate::transport::ssh::SshSession;

/// A machine the lab runs on.
#[derive(Clone)]
pub struct Host {
    /// For messages and reports: "local", "lab3".
    pub name: String,
    pub transport: Arc<dyn Transport>,
    /// metalab's state directory on the host: boxes, Vagrant's home, each run's Vagrant state.
    pub home: String,
    /// Where the lab's files are on the host. `None`: the host is this machine, and the lab is
    /// used where it is.
    pub lab_dir: Option<String>,
    /// The session to jump through to reach this host's VMs; `None` when they are reachable
    /// directly (the local host).
    pub jump: Option<Arc<SshSession>>,
}

impl Host {
    /// metalab's state directory on the host: laid out as the runner's, so its files are named
    /// in one place; its paths are the host's (for its shell commands), not this machine's.
    pub fn state(&self) -> StateDir {
        StateDir::at(PathBuf::from(&self.home))
    }

    /// Vagrant's home on the host; boxes are registered there.
    pub fn vagrant_home(&self) -> String {
        self.state().vagrant_home().display().to_string()
    }

    /// A lane's `VAGRANT_DOTFILE_PATH` on the host.
    pub fn vagrant_dotfile(&self, run: &RunId, lane: &str) -> String {
        self.state()
            .run(run)
            .vagrant_dotfile(lane)
            .display()
            .to_string()
    }

    /// A lane's SSH key into its VMs, on the host.
    pub fn vm_login_key(&self, run: &RunId, lane: &str) -> String {
        self.state()
            .run(run)
            .vm_login_key(lane)
            .display()
            .to_string()
    }

    /// Where a lane's VMs' serial consoles are written, on the host.
    pub fn consoles(&self, run: &RunId, lane: &str) -> String {
        self.state().run(run).consoles(lane).display().to_string()
    }

    /// A lane's wrapper Vagrantfile on the host.
    pub fn vagrant_wrapper(&self, run: &RunId, lane: &str) -> String {
        self.state()
            .run(run)
            .vagrant_wrapper(lane)
            .display()
            .to_string()
    }

    pub fn is_local(&self) -> bool {
        self.lab_dir.is_none()
    }

    /// Whether commands on the host run as root without `sudo`.
    pub fn runs_as_root(&self) -> bool {
        match &self.jump {
            Some(session) => {
                crate::transport::Transport::target(session.as_ref()).starts_with("root@")
            }
            None => nix::unistd::geteuid().is_root(),
        }
    }
}
