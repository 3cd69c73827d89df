//! metalab's state directory on a host (default `/var/lib/metalab`, or `METALAB_HOME`). Every
//! file in it is named here, as lima names the files of an instance directory. A lab host's
//! `home` has the same layout ([`crate::host::Host::state`]); there the paths go into shell
//! commands.
//!
//! It must be readable by the `libvirt-qemu` user: direct kernel boot reads each box's kernel
//! and initrd from `vagrant.d/` inside it.

use std::path::{Path, PathBuf};

use crate::ids::RunId;

/// Overrides the state directory.
pub const HOME_ENV: &str = "METALAB_HOME";
pub const DEFAULT_HOME: &str = "/var/lib/metalab";

/// The directory of the runs, under the state directory: `runs/<run id>/`.
pub const RUNS: &str = "runs";

/// In a lane's Vagrant dotfile directory ([`RunDir::vagrant_dotfile`]): the lab's machines and
/// networks as the wrapper Vagrantfile describes them (see [`crate::vagrant::describe`]).
pub const VAGRANT_DESCRIBE: &str = "describe.json";

/// The files of a box directory (`boxes/<name>/`): the box itself, written by the recipe's
/// `build.sh` here and shipped as is to a host.
pub const BOX_FILE: &str = "box.box";
/// The box's [`crate::model::record::BoxInfo`], written last: its presence marks a complete build
/// (and on a host, a box `metalab box prune` knows the version of).
pub const BOX_INFO: &str = "box.json";
/// On a host, the sha256 of a shipped box, written once the copy is checked.
pub const BOX_SHA256: &str = "box.box.sha256";

/// The layout of the state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `METALAB_HOME`, or the default.
    pub fn from_env() -> StateDir {
        let root = std::env::var_os(HOME_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME));
        StateDir { root }
    }

    /// A state directory at an explicit place (tests, tools).
    pub fn at(root: PathBuf) -> StateDir {
        StateDir { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Vagrant's home: boxes registered by metalab live here.
    pub fn vagrant_home(&self) -> PathBuf {
        self.root.join("vagrant.d")
    }

    /// Built boxes, one directory per recipe hash (see [`BOX_FILE`]).
    pub fn boxes(&self) -> PathBuf {
        self.root.join("boxes")
    }

    /// Built container images, one directory per recipe hash (see [`crate::images`]).
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The log of `metalab box build`, appended to by every build.
    pub fn box_build_log(&self) -> PathBuf {
        self.boxes().join("build.log")
    }

    /// debootstrap's package cache, so a rebuilt box downloads nothing it already has.
    pub fn debootstrap_cache(&self) -> PathBuf {
        self.root.join("cache").join("debootstrap")
    }

    /// The accelerator a probe found to work on this host: `kvm` or `tcg`.
    pub fn accel_file(&self) -> PathBuf {
        self.root.join("accel")
    }

    /// A lab's files on a host they were synced to; `name` tells checkouts apart (see
    /// [`crate::provider::ssh::lab_name`]).
    pub fn lab(&self, name: &str) -> PathBuf {
        self.root.join("labs").join(name)
    }

    /// Where the lock files are.
    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// The lock file for a step that must not run twice at once on a host.
    pub fn lock(&self, name: &str) -> PathBuf {
        self.locks().join(format!("{name}.lock"))
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join(RUNS)
    }

    /// The runs with a directory here, newest first (run ids sort by their start time).
    pub fn run_ids(&self) -> Vec<RunId> {
        let Ok(entries) = std::fs::read_dir(self.runs()) else {
            return Vec::new();
        };
        let mut ids: Vec<RunId> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| RunId::parse(&e.file_name().to_string_lossy()))
            .collect();
        ids.sort_by(|a, b| b.cmp(a));
        ids
    }

    pub fn run(&self, id: &RunId) -> RunDir {
        RunDir {
            root: self.runs().join(id.as_str()),
        }
    }
}

/// One run's private state: its Vagrant state directory, SSH details and pinned host keys.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `VAGRANT_DOTFILE_PATH` of one lane (on the host the lane runs on): its machines,
    /// invisible to every other run and lane.
    pub fn vagrant_dotfile(&self, lane: &str) -> PathBuf {
        self.root.join(lane).join("vagrant")
    }

    /// metalab's wrapper around the lab's Vagrantfile for one lane (see [`crate::vagrant`]),
    /// beside the lane's Vagrant state directory.
    pub fn vagrant_wrapper(&self, lane: &str) -> PathBuf {
        self.root.join(lane).join("Vagrantfile")
    }

    /// The SSH key a lane's VMs let in, made for the run (see [`crate::vm::access`]).
    pub fn vm_login_key(&self, lane: &str) -> PathBuf {
        self.root.join(lane).join("vm_key")
    }

    /// Where the serial consoles of a lane's VMs are written, a file per domain.
    pub fn consoles(&self, lane: &str) -> PathBuf {
        self.root.join(lane).join("console")
    }

    /// Copies of a remote host's SSH identities for the run's VMs.
    pub fn vm_keys(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// What `metalab exec` needs to reach a lane's VMs: see [`crate::lab::LabState`].
    pub fn lab_state(&self, lane: &str) -> PathBuf {
        if lane.is_empty() {
            self.root.join("lab.json")
        } else {
            self.root.join(format!("lab-{lane}.json"))
        }
    }

    /// Every lab record of the run, one per lane.
    pub fn lab_states(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                n.starts_with("lab") && n.ends_with(".json")
            })
            .collect()
    }

    /// The run journal: see [`crate::journal`].
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal.jsonl")
    }

    /// Which process owns the run: see [`crate::journal::Owner`].
    pub fn owner(&self) -> PathBuf {
        self.root.join("owner.json")
    }

    /// The socket of the lab's connection holder (see [`crate::mux`]).
    pub fn mux_socket(&self) -> PathBuf {
        self.root.join("mux.sock")
    }

    pub fn mux_pid(&self) -> PathBuf {
        self.root.join("mux.pid")
    }

    /// What the connection holder says on its stderr.
    pub fn mux_log(&self) -> PathBuf {
        self.root.join("mux.log")
    }

    /// The private key of the SSH key pair the run registers with the Metal project.
    pub fn metal_key(&self) -> PathBuf {
        self.root.join("metal").join("id_ed25519")
    }

    /// The run's own SSH key for its EC2 instances (the key pair's private half).
    pub fn ec2_key(&self) -> PathBuf {
        self.root.join("ec2").join("id_ed25519")
    }

    /// The pinned SSH host key of a VM.
    pub fn host_key(&self, vm: &str) -> PathBuf {
        self.root.join("known_hosts").join(vm)
    }
}

/// An exclusive lock on a file, released when dropped.
pub struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// Waits for the lock without blocking the async runtime.
    pub async fn acquire(path: PathBuf) -> std::io::Result<FileLock> {
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(FileLock { _file: file })
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hosts have state directories laid out so already, and others read it by these names: the
    /// Vagrantfile reads `accel`, reap looks for `runs/<run>/` in Vagrant's index.
    #[test]
    fn the_layout_on_a_host() {
        let home = StateDir::at("/h".into());
        let run = RunId::parse("20261101-090000-0001").unwrap();
        let path = |p: PathBuf| p.display().to_string();
        assert_eq!(path(home.vagrant_home()), "/h/vagrant.d");
        assert_eq!(path(home.accel_file()), "/h/accel");
        assert_eq!(path(home.lock("host")), "/h/locks/host.lock");
        assert_eq!(path(home.lab("acme-1f2e")), "/h/labs/acme-1f2e");
        assert_eq!(
            path(home.boxes().join("b").join(BOX_INFO)),
            "/h/boxes/b/box.json"
        );
        assert_eq!(
            path(home.run(&run).vagrant_dotfile("lab")),
            "/h/runs/20261101-090000-0001/lab/vagrant"
        );
    }
}
