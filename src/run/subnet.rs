//! Each run's private lab network gets a /24 of its own (`10.77.<n>.0/24`), so two runs on one
//! host never put two VMs on the same address. A claim file per subnet, written under a host
//! lock, reserves it from the moment it is chosen until the run's network exists and is gone.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::ids::RunId;
use crate::state::{FileLock, StateDir};
use crate::transport::{Collect, Command, Transport};

const BASE: &str = "10.77";

/// A reserved subnet; the claim is released when this is dropped.
pub struct SubnetClaim {
    path: PathBuf,
    /// `10.77.<n>`: the first three octets, as the Vagrantfile takes them.
    pub prefix: String,
}

impl Drop for SubnetClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Picks a subnet that no address on the host and no live claim uses. `10.77.0` is left to
/// people running the Vagrantfile by hand.
pub async fn claim(
    host: &dyn Transport,
    state: &StateDir,
    run: &RunId,
) -> anyhow::Result<SubnetClaim> {
    let _lock = FileLock::acquire(state.lock("subnets")).await?;
    let dir = state.root().join("subnets");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = Collect::default();
    host.exec(
        &Command::new("ip -o -4 addr show", Duration::from_secs(30)),
        &mut out,
    )
    .await?;
    let used: HashSet<u8> = out
        .stdout_text()
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(&format!("{BASE}.")))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect();
    for n in 1..=255u8 {
        let path = dir.join(n.to_string());
        if used.contains(&n) || claim_is_live(&path) {
            continue;
        }
        std::fs::write(&path, format!("{run} {}\n", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        return Ok(SubnetClaim {
            path,
            prefix: format!("{BASE}.{n}"),
        });
    }
    bail!("every subnet {BASE}.1-255 is in use on this host")
}

/// A claim holds while the process that wrote it is alive.
fn claim_is_live(path: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let pid = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<i32>().ok());
    pid.is_some_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok())
}

/// Removes claims whose process is gone (a run killed before it could release its claim).
pub fn remove_stale(state: &StateDir) {
    let Ok(entries) = std::fs::read_dir(state.root().join("subnets")) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        if !claim_is_live(&e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
