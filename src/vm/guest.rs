//! One machine of a running lab, from inside: reached over SSH (jumping through the host when it
//! is remote), its address on the lab's network, back after a revert, and what it can still say
//! about itself when something went wrong.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::retry::Poll;
use crate::transport::ssh::{HostKeyPolicy, SshSession, SshTarget};
use crate::transport::{Collect, Command, Transport, sh_quote};
use crate::vagrant::describe::Machine;

/// One VM, connected.
pub struct Vm {
    pub name: String,
    pub session: Arc<SshSession>,
    /// Its address on the lab's network (`METALAB_IP_<VM>`), see [`lab_address`].
    pub lab_address: Option<String>,
    /// How to reach it again, after a snapshot revert has cut the session.
    pub target: SshTarget,
    pub policy: HostKeyPolicy,
}

/// What each VM is asked for when a lane failed. Every command is allowed to fail: the VM may be
/// half-dead, and whatever it still answers is worth having.
const DIAGNOSTICS: &str = "
for c in 'uname -a' 'uptime' 'ip -d addr' 'ip route' 'ip netns list' 'nft list ruleset' \
         'ss -tanp' 'df -h' 'free -m' 'journalctl -b --no-pager -o short-monotonic -n 3000'; do
  echo \"===== $c\"; timeout 20 $c 2>&1
done";

impl Vm {
    /// Connects to a VM, retrying until `deadline` while its SSH is not up yet, and finds its
    /// lab address.
    pub async fn connect(
        name: String,
        target: SshTarget,
        policy: HostKeyPolicy,
        deadline: Instant,
        jump: Option<&SshSession>,
        machine: Option<&Machine>,
    ) -> anyhow::Result<Vm> {
        let session = Arc::new(SshSession::connect_until(&target, &policy, deadline, jump).await?);
        let lab_address = lab_address(session.as_ref(), machine, &target.host).await?;
        Ok(Vm {
            name,
            session,
            lab_address,
            target,
            policy,
        })
    }

    /// A fresh session after the VM was put back to a snapshot: its clock set to now (it stands
    /// at the snapshot's time) and its lab address checked.
    pub async fn reconnect(&self, jump: Option<&SshSession>) -> Result<Arc<SshSession>, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let session = SshSession::connect_until(&self.target, &self.policy, deadline, jump)
            .await
            .map_err(|e| format!("reconnect: {e}"))?;
        let now = chrono::Utc::now().timestamp();
        let check = format!("date -u -s @{now} >/dev/null && ip -o -4 addr show");
        let mut out = Collect::default();
        session
            .exec(
                &Command::new(check, Duration::from_secs(30)).sudo(true),
                &mut out,
            )
            .await
            .map_err(|e| format!("clock: {e}"))?;
        if out.overflowed() {
            return Err(format!(
                "address: the VM answered with more than {} MiB",
                crate::transport::COLLECT_LIMIT >> 20
            ));
        }
        if let Some(ip) = &self.lab_address
            && !out.stdout_text().contains(&format!(" {ip}/"))
        {
            return Err(format!("address: {ip} is gone after the revert"));
        }
        Ok(Arc::new(session))
    }
}

/// Writes what a VM says of itself (addresses, routes, rules, its journal) to `sink`, as far as
/// it still answers.
pub async fn diagnostics(vm: &dyn Transport, sink: &mut dyn crate::transport::OutputSink) {
    let cmd = Command::new(DIAGNOSTICS, Duration::from_secs(60)).sudo(true);
    let _ = vm.exec(&cmd, sink).await;
}

/// A remote host's identity files for a VM live on the host: copies them into `dir` here, named
/// after `key`, and points the target at the copies.
pub async fn local_identities(
    host: &dyn Transport,
    mut target: SshTarget,
    dir: &Path,
    key: &str,
) -> anyhow::Result<SshTarget> {
    std::fs::create_dir_all(dir)?;
    let mut local = Vec::new();
    for (i, remote) in target.identity_files.iter().enumerate() {
        let mut out = Collect::default();
        let cmd = Command::new(
            format!("cat {}", sh_quote(&remote.display().to_string())),
            Duration::from_secs(30),
        )
        .sudo(true);
        if host.exec(&cmd, &mut out).await?.success() {
            let path = dir.join(format!("{key}-{i}"));
            write_private(&path, &out.stdout)?;
            local.push(path);
        }
    }
    target.identity_files = local;
    Ok(target)
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
    let mut polling = DHCP_ADDRESS.until(tokio::time::Instant::now() + Duration::from_secs(30));
    loop {
        let mut out = Collect::default();
        vm.exec(
            &Command::new("ip -o -4 addr show scope global", Duration::from_secs(30)),
            &mut out,
        )
        .await?;
        anyhow::ensure!(
            !out.overflowed(),
            "the VM's addresses: more than {} MiB of output",
            crate::transport::COLLECT_LIMIT >> 20
        );
        let found = other_addresses(&out.stdout_text(), management)
            .into_iter()
            .next();
        if found.is_some() || !polling.pause().await {
            return Ok(found);
        }
    }
}

/// A DHCP lease on the lab network comes within a second or so of the management one.
const DHCP_ADDRESS: Poll = Poll::every(Duration::from_millis(500));

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
}
