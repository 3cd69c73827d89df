//! `metalab status`: the labs kept on this machine's state directory (`metalab up`, or a failed
//! run's `--keep-on-failure`) with their VMs, where they are, in what state, and until when;
//! and the ssh provider's inventory hosts, free or held by a run.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::Failure;
use crate::config::Config;
use crate::exit::Status;
use crate::host::lock;
use crate::lab::LabState;
use crate::provider::ssh;
use crate::state::StateDir;
use crate::transport::ssh::SshSession;
use crate::transport::{Command, sh_quote, stdout_of};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print it as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    labs: Vec<KeptLab>,
    /// The ssh provider's hosts, when the lab here uses one.
    inventory: Vec<InventoryHost>,
}

#[derive(Serialize)]
struct KeptLab {
    run_id: String,
    /// "" when the run had one lane.
    lane: String,
    host: String,
    /// When `metalab reap` may remove it; `None` while its run still goes.
    keep_until: Option<chrono::DateTime<chrono::Utc>>,
    expired: bool,
    vms: Vec<KeptVm>,
}

#[derive(Serialize)]
struct KeptVm {
    name: String,
    /// How SSH reaches it.
    address: String,
    /// Its address on the lab's network.
    lab_address: Option<String>,
    /// What libvirt says: "running", "shut off", "gone", or "unknown: why".
    state: String,
}

#[derive(Serialize)]
struct InventoryHost {
    name: String,
    address: String,
    /// "free", "held by a run", or "unreachable: why".
    state: String,
}

pub async fn status(config: Option<&Path>, args: StatusArgs) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    let mut labs = Vec::new();
    for lab in LabState::all(&state) {
        labs.push(kept(&lab).await);
    }
    // A lab whose file does not load still lets the kept labs be shown, but not its inventory:
    // that is said, and the exit is 2, rather than an inventory that looks empty.
    let (inventory, unread) = match Config::find_optional(config) {
        Ok(Some(c)) => (inventory(&c).await, None),
        Ok(None) => (Vec::new(), None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let report = Report { labs, inventory };
    super::print(&if args.json {
        serde_json::to_string_pretty(&report).expect("serializes") + "\n"
    } else {
        render(&report)
    });
    match unread {
        Some(e) => Err(Failure::new(
            Status::BadInput,
            format!("{e}\n  = note: the lab's inventory hosts were not read"),
        )),
        None => Ok(Status::Passed),
    }
}

async fn kept(lab: &LabState) -> KeptLab {
    let states = domain_states(lab).await;
    KeptLab {
        run_id: lab.run_id.to_string(),
        lane: lab.lane.clone(),
        host: lab.host.clone(),
        keep_until: lab.keep_until,
        expired: lab.keep_until.is_some_and(|t| t < chrono::Utc::now()),
        vms: lab
            .vms
            .iter()
            .map(|v| KeptVm {
                name: v.name.clone(),
                address: v.ssh.host.clone(),
                lab_address: v.private_ip.clone(),
                state: match &states {
                    Ok(s) => s
                        .iter()
                        .find(|(d, _)| *d == format!("{}{}", lab.prefix(), v.name))
                        .map_or("gone".to_string(), |(_, st)| st.clone()),
                    Err(e) => format!("unknown: {e}"),
                },
            })
            .collect(),
    }
}

/// Each of the lab's domains and its state, from libvirt on the lab's host.
async fn domain_states(lab: &LabState) -> anyhow::Result<Vec<(String, String)>> {
    let host = lab.host_transport().await?;
    let script = format!(
        "for d in $(virsh -q -c qemu:///system list --all --name | grep '^'{}); do \
         echo \"$d $(virsh -c qemu:///system domstate \"$d\")\"; done",
        sh_quote(&lab.prefix())
    );
    let cmd = Command::new(script, Duration::from_secs(30)).sudo(true);
    let listed = stdout_of(host.as_ref(), &cmd).await?;
    Ok(listed
        .lines()
        .filter_map(|l| {
            let (d, s) = l.split_once(' ')?;
            Some((d.to_string(), s.trim().to_string()))
        })
        .collect())
}

async fn inventory(config: &Config) -> Vec<InventoryHost> {
    let mut hosts = Vec::new();
    for h in &config.ssh_hosts {
        let state = match probe(h).await {
            Ok(true) => "free".to_string(),
            Ok(false) => "held by a run".to_string(),
            Err(e) => format!("unreachable: {e:#}"),
        };
        hosts.push(InventoryHost {
            name: h.display_name(),
            address: format!("{}@{}:{}", h.user, h.address, h.port),
            state,
        });
    }
    hosts
}

/// Whether the host is free: its lock taken and given back at once.
async fn probe(h: &crate::config::SshHostConfig) -> anyhow::Result<bool> {
    let session =
        SshSession::connect(&ssh::target(h), &ssh::policy(h), Duration::from_secs(10)).await?;
    let home = StateDir::at(std::path::PathBuf::from(&h.home));
    let held = lock::try_lock(&session, &home).await?;
    let free = held.is_some();
    if let Some(held) = held {
        held.release().await;
    }
    session.close().await;
    Ok(free)
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    if r.labs.is_empty() {
        out.push_str("no kept lab on this machine (`metalab up` keeps one)\n");
    }
    for l in &r.labs {
        let until = match (&l.keep_until, l.expired) {
            (None, _) => "its run is still going".to_string(),
            (Some(t), false) => format!("kept until {}", t.format("%Y-%m-%d %H:%M UTC")),
            (Some(t), true) => format!(
                "expired {} (`metalab reap` removes it)",
                t.format("%Y-%m-%d %H:%M UTC")
            ),
        };
        let lane = if l.lane.is_empty() {
            String::new()
        } else {
            format!(" lane {}", l.lane)
        };
        out.push_str(&format!("{}{lane} on {}: {until}\n", l.run_id, l.host));
        for v in &l.vms {
            out.push_str(&format!(
                "  {:<12} {:<10} {} (lab address {})\n",
                v.name,
                v.state,
                v.address,
                v.lab_address.as_deref().unwrap_or("none")
            ));
        }
    }
    if !r.inventory.is_empty() {
        out.push_str("inventory:\n");
        for h in &r.inventory {
            out.push_str(&format!("  {:<12} {:<24} {}\n", h.name, h.address, h.state));
        }
    }
    out
}
