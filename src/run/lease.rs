//! Leases on the subnets a lab pins. A Vagrantfile that gives its private networks fixed
//! addresses (`ip: "192.168.60.11"`) makes a libvirt network with that subnet on the host, and
//! two networks with one subnet cannot both exist there: a second run of the same lab must wait
//! until the first is gone. A lease is `flock` on a file named after the subnet, held by a
//! command on the host that lives exactly as long as metalab (its stdin is metalab's pipe or SSH
//! channel), so a dead holder frees it at once, as the host lock does. Whoever holds it also
//! checks that nothing on the host still uses the subnet (a kept lab, a run that died and was not
//! reaped yet, someone's `vagrant up` by hand), reaps what a dead run left, and waits for the
//! rest, saying what it waits for.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::AsyncReadExt;

use crate::host::Host;
use crate::ids::RunId;
use crate::reap::{self, Verdict};
use crate::retry::Poll;
use crate::state::StateDir;
use crate::transport::ssh::Held;
use crate::transport::{Command, sh_quote, stdout_of};

/// Lease files live outside any one state directory: every metalab on the host shares subnets.
const LEASES: &str = "/run/metalab/leases";
const READY: &str = "metalab-lease-held";
/// How often a waiting run looks again, and how often it says again what it waits for.
const POLL: Poll = Poll::every(Duration::from_secs(2));
const RETELL: Duration = Duration::from_secs(60);

/// The leases of a lane: released when dropped (or when metalab dies).
pub struct Lease {
    holds: Vec<Hold>,
}

enum Hold {
    Local(tokio::process::Child),
    Remote(Held),
}

impl Lease {
    /// No subnet to hold.
    pub fn none() -> Lease {
        Lease { holds: Vec::new() }
    }

    /// Gives the leases back now.
    pub async fn release(self) {
        for hold in self.holds {
            match hold {
                Hold::Local(mut child) => {
                    let _ = child.kill().await;
                }
                Hold::Remote(held) => held.release().await,
            }
        }
    }
}

/// Takes a lease on every subnet (in a fixed order, so two runs never hold one each of the
/// other's), waiting for each until it is free on the host. `tell` hears what it waits for.
pub async fn acquire(
    host: &Host,
    state: &StateDir,
    subnets: &[String],
    tell: &(dyn Fn(String) + Sync),
) -> anyhow::Result<Lease> {
    let mut sorted = subnets.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut lease = Lease::none();
    for subnet in &sorted {
        let net = Subnet::parse(subnet)?;
        lease
            .holds
            .push(acquire_one(host, state, &net, tell).await?);
    }
    Ok(lease)
}

async fn acquire_one(
    host: &Host,
    state: &StateDir,
    net: &Subnet,
    tell: &(dyn Fn(String) + Sync),
) -> anyhow::Result<Hold> {
    let mut told: Option<(String, Instant)> = None;
    let mut say = |why: String| {
        let again = told
            .as_ref()
            .is_none_or(|(last, at)| *last != why || at.elapsed() >= RETELL);
        if again {
            tell(format!("waiting for subnet {}: {why}", net.text));
            told = Some((why, Instant::now()));
        }
    };
    // As long as it takes: the holder may run for hours; a signal ends the wait.
    let mut polling = POLL.forever();
    loop {
        let Some(hold) = try_hold(host, net).await? else {
            say("another metalab run on this host holds its lease".into());
            polling.pause().await;
            continue;
        };
        let users = users_of(host, net).await?;
        if users.is_empty() {
            return Ok(hold);
        }
        drop(hold);
        let mut reaped = false;
        for user in &users {
            match user
                .run
                .as_ref()
                .map(|r| (r, reap::judge(state, r, Utc::now())))
            {
                Some((_, Verdict::Reap { .. })) => reaped = true,
                Some((run, Verdict::Kept { until })) => say(format!(
                    "{} of run {run}, kept until {} (`metalab destroy --run {run}` frees it)",
                    user.what,
                    until.format("%Y-%m-%d %H:%M UTC")
                )),
                Some((run, _)) => say(format!("{} of run {run}, which is running", user.what)),
                None => say(format!("{}, which is not metalab's", user.what)),
            }
        }
        if reaped {
            let (_, gone) = reap::locked_survey_and_reap(host, state, false).await?;
            for r in gone {
                tell(format!(
                    "{} (it died holding subnet {})",
                    r.describe(),
                    net.text
                ));
            }
        }
        polling.pause().await;
    }
}

/// Holds the subnet's lock file on the host, or `None` when another process holds it.
async fn try_hold(host: &Host, net: &Subnet) -> anyhow::Result<Option<Hold>> {
    let file = format!("{LEASES}/{}", net.text.replace('/', "_"));
    let script = format!(
        "mkdir -p {LEASES} && exec flock -n {} sh -c 'echo {READY}; exec cat >/dev/null'",
        sh_quote(&file)
    );
    let script = if host.runs_as_root() {
        script
    } else {
        format!("exec sudo -n sh -c {}", sh_quote(&script))
    };
    match &host.jump {
        Some(session) => Ok(session
            .hold(&script, READY, Duration::from_secs(30))
            .await?
            .map(Hold::Remote)),
        None => hold_locally(&script).await,
    }
}

/// A local command that holds a lock while metalab keeps its stdin open: SIGKILL of metalab
/// closes the pipe, and the lock goes with the command.
async fn hold_locally(script: &str) -> anyhow::Result<Option<Hold>> {
    let mut child = crate::child_env::async_command("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Not in metalab's process group: a Ctrl-C on the terminal must not drop the lease.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let mut out = child.stdout.take().expect("piped");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match out.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&seen).contains(READY) {
                return true;
            }
        }
    })
    .await
    .unwrap_or(false);
    Ok(ready.then_some(Hold::Local(child)))
}

/// Something on the host in a subnet: a libvirt network, or an interface's address.
#[derive(Debug, PartialEq)]
struct User {
    what: String,
    /// The metalab run it belongs to, when its name says.
    run: Option<RunId>,
}

/// Lists libvirt networks (active or not: vagrant-libvirt would reuse an inactive one) with
/// their address, then the host's IPv4 addresses.
const SURVEY: &str = r#"
for n in $(virsh -q -c qemu:///system net-list --all --name); do
  echo "net $n $(virsh -c qemu:///system net-dumpxml "$n" 2>/dev/null | grep -o "<ip [^>]*>" | grep -v "family='ipv6'" | head -1)"
done
ip -o -4 addr show | awk '{print "addr", $2, $4}'
"#;

async fn users_of(host: &Host, net: &Subnet) -> anyhow::Result<Vec<User>> {
    let cmd = Command::new(SURVEY, Duration::from_secs(60)).sudo(true);
    let listed = stdout_of(host.transport.as_ref(), &cmd).await?;
    Ok(parse_users(&listed, net))
}

fn parse_users(listed: &str, net: &Subnet) -> Vec<User> {
    let mut users = Vec::new();
    for line in listed.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("net"), Some(name)) => {
                let xml: String = words.collect::<Vec<_>>().join(" ");
                if xml_subnet(&xml).is_some_and(|s| s.overlaps(net)) {
                    users.push(User {
                        what: format!("libvirt network {name}"),
                        run: RunId::from_resource_name(name),
                    });
                }
            }
            (Some("addr"), Some(iface)) => {
                let inside = words
                    .next()
                    .and_then(|a| Subnet::parse(a).ok())
                    .is_some_and(|s| s.overlaps(net));
                // A network's own bridge shows up twice; its network says more.
                if inside && !users.iter().any(|u| u.what.starts_with("libvirt network")) {
                    users.push(User {
                        what: format!("interface {iface}"),
                        run: None,
                    });
                }
            }
            _ => {}
        }
    }
    users
}

/// The subnet of a libvirt `<ip address='…' netmask='…'>` (or `prefix='…'`) element.
fn xml_subnet(xml: &str) -> Option<Subnet> {
    let attr = |name: &str| {
        let start = xml.find(&format!("{name}="))? + name.len() + 2;
        let rest = &xml[start..];
        Some(rest[..rest.find(['\'', '"'])?].to_string())
    };
    let address: Ipv4Addr = attr("address")?.parse().ok()?;
    let len = match attr("netmask") {
        Some(mask) => u32::from(mask.parse::<Ipv4Addr>().ok()?).count_ones(),
        None => attr("prefix")?.parse().ok()?,
    };
    Subnet::new(address, len)
}

/// An IPv4 network: `a.b.c.d/len`.
#[derive(Debug, Clone, PartialEq)]
struct Subnet {
    text: String,
    network: u32,
    len: u32,
}

impl Subnet {
    fn new(address: Ipv4Addr, len: u32) -> Option<Subnet> {
        (len <= 32).then(|| {
            let network = u32::from(address) & mask(len);
            Subnet {
                text: format!("{}/{len}", Ipv4Addr::from(network)),
                network,
                len,
            }
        })
    }

    fn parse(text: &str) -> anyhow::Result<Subnet> {
        let (address, len) = text.split_once('/').unwrap_or((text, "32"));
        let parsed = address
            .parse::<Ipv4Addr>()
            .ok()
            .zip(len.parse::<u32>().ok())
            .and_then(|(a, l)| Subnet::new(a, l));
        parsed.ok_or_else(|| anyhow::anyhow!("`{text}` is not an IPv4 subnet"))
    }

    fn overlaps(&self, other: &Subnet) -> bool {
        let len = self.len.min(other.len);
        self.network & mask(len) == other.network & mask(len)
    }
}

fn mask(len: u32) -> u32 {
    u32::MAX.checked_shl(32 - len).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_overlap_when_one_contains_the_other() {
        let lab = Subnet::parse("192.168.60.0/24").unwrap();
        assert!(Subnet::parse("192.168.60.1/24").unwrap().overlaps(&lab));
        assert!(Subnet::parse("192.168.0.0/16").unwrap().overlaps(&lab));
        assert!(!Subnet::parse("192.168.61.1/24").unwrap().overlaps(&lab));
        assert_eq!(Subnet::parse("10.1.2.3/8").unwrap().text, "10.0.0.0/8");
        assert!(Subnet::parse("10.1.2/8").is_err());
    }

    #[test]
    fn the_survey_names_the_network_and_its_run_before_the_bridge() {
        let net = Subnet::parse("192.168.60.0/24").unwrap();
        let listed = "net vagrant-libvirt <ip address='192.168.121.1' netmask='255.255.255.0'>\n\
                      net metalab-20261125-101010-ab12-acme-transit <ip address='192.168.60.1' netmask='255.255.255.0'>\n\
                      net isolated <ip address=\"192.168.0.1\" prefix=\"16\">\n\
                      net nothing \n\
                      addr virbr-mlab0 192.168.121.1/24\n\
                      addr virbr3 192.168.60.1/24\n";
        let users = parse_users(listed, &net);
        assert_eq!(users.len(), 2, "{users:?}");
        assert_eq!(
            users[0].run.as_ref().map(RunId::as_str),
            Some("20261125-101010-ab12")
        );
        assert_eq!(users[1].what, "libvirt network isolated");
        let bare = parse_users("addr eth1 192.168.60.7/24\n", &net);
        assert_eq!(
            bare,
            vec![User {
                what: "interface eth1".into(),
                run: None
            }]
        );
    }
}
