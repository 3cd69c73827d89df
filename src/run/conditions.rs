//! The conditions a run measures under: the host's fingerprint, the VMs' shape and accelerator,
//! the box, metalab's version and the lab's commit.

use std::path::Path;
use std::time::Duration;

use crate::model::record::{Conditions, HostFingerprint};
use crate::transport::{Collect, Command, Transport};

/// One line per field, so a missing tool leaves just its field empty.
const FINGERPRINT: &str = "hostname; nproc; uname -r; \
    sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1";

pub async fn host_fingerprint(host: &dyn Transport) -> HostFingerprint {
    let mut out = Collect::default();
    let _ = host
        .exec(
            &Command::new(FINGERPRINT, Duration::from_secs(30)),
            &mut out,
        )
        .await;
    let text = out.stdout_text();
    let mut lines = text.lines().map(str::trim);
    HostFingerprint {
        hostname: lines.next().unwrap_or_default().to_string(),
        cores: lines.next().and_then(|n| n.parse().ok()).unwrap_or(0),
        kernel: lines.next().unwrap_or_default().to_string(),
        cpu_model: lines.next().unwrap_or("unknown").to_string(),
    }
}

/// What `git ARGS` prints in the repository at `root`; `None` when it fails.
pub fn git_in(root: &Path, args: &[&str]) -> Option<String> {
    crate::child_env::command("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `git rev-parse HEAD` of the lab, marked `-dirty` when the tree has uncommitted changes.
pub fn lab_commit(root: &Path) -> Option<String> {
    let git = |args: &[&str]| git_in(root, args).map(|s| s.trim().to_string());
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

pub fn gather(
    host: HostFingerprint,
    config: &crate::config::Config,
    accel: &str,
    box_sha256: &str,
) -> Conditions {
    Conditions {
        host,
        vm_cpus: config.vm.cpus,
        vm_memory_mib: config.vm.memory,
        accel: accel.to_string(),
        box_sha256: box_sha256.to_string(),
        metalab_version: env!("CARGO_PKG_VERSION").to_string(),
        lab_commit: lab_commit(&config.root),
    }
}
