//! `metalab run --dry-run`: what a run would do, read from the lab alone: the suites and their
//! tests, the VMs, the box, the provisioning, the hosts and how the suites would be spread over
//! lanes on them. Nothing is started, created or asked of a host or an API.

use std::path::PathBuf;

use serde::Serialize;

use super::lab::Lab;
use crate::config::{Accel, ProviderKind};
use crate::host::subnet;
use crate::lab::LabState;
use crate::model::record::ShardRecord;
use crate::run::{Keep, lanes};
use crate::suite::Suite;

#[derive(Serialize)]
pub struct DryRun {
    /// The lab's directory.
    lab: PathBuf,
    /// Its metalab.toml; `None` when there is none (every setting at its default).
    config: Option<PathBuf>,
    vagrantfile: PathBuf,
    /// The machines the Vagrantfile defines.
    machines: Vec<String>,
    /// The VMs the run brings up (those its suites need).
    vms: Vec<String>,
    #[serde(rename = "box")]
    box_: String,
    /// The machines whose provisioners run after `vagrant up`.
    provisioned: Vec<String>,
    /// Subnets the Vagrantfile fixes: a second run of the lab waits for them.
    pinned_subnets: Vec<String>,
    /// Where the VMs go: the provider and its hosts.
    provider: String,
    hosts: Vec<String>,
    /// How the suites are spread: one VM set ("lane") each, on a host.
    lanes: Vec<LanePlan>,
    /// How much each host is taken to hold; the real run asks each host.
    room: String,
    suites: Vec<SuitePlan>,
    /// What happens to the VMs at the end.
    keep: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<ShardRecord>,
    /// With --on: the kept lab the suites run on.
    #[serde(skip_serializing_if = "Option::is_none")]
    on: Option<String>,
    /// The runner's LAB_* variables the suites get.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(super) lab_env: std::collections::BTreeMap<String, String>,
    /// With --untrusted: where the lab definition comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    untrusted: Option<UntrustedPlan>,
}

#[derive(Serialize)]
struct UntrustedPlan {
    lab_from: String,
    /// What of the change's suites is left out: links, devices and the like.
    skipped: Vec<String>,
    /// The runner's LAB_* variables the suites get.
    lab_env: Vec<String>,
    /// Where the fenced VMs may connect beyond each other.
    allow: Vec<String>,
}

#[derive(Serialize)]
struct LanePlan {
    host: String,
    /// "" for a run with one lane.
    name: String,
    suites: Vec<String>,
    vms: Vec<String>,
}

#[derive(Serialize)]
struct SuitePlan {
    name: String,
    vms: Vec<String>,
    tests: Vec<String>,
    benchmarks: Vec<String>,
    /// Container images loaded into its VMs before its setup, built from `lab.images`.
    images: Vec<String>,
}

impl DryRun {
    pub fn new(
        lab: &Lab,
        suites: &[Suite],
        vms: &[String],
        keep: Keep,
        shard: Option<&ShardRecord>,
        on: Option<&LabState>,
    ) -> DryRun {
        let config = &lab.config;
        let description = &lab.description;
        let pinned = description.pinned_subnets(vms, Some(&subnet::probe_network()));
        let hosts = hosts(lab);
        let (room, per_host) = room(lab);
        let lanes = match on {
            Some(kept) => vec![LanePlan {
                host: kept.host.clone(),
                name: kept.lane.clone(),
                suites: suites.iter().map(|s| s.name.clone()).collect(),
                vms: kept.vms.iter().map(|v| v.name.clone()).collect(),
            }],
            None => lanes::shapes(
                suites,
                vms,
                &vec![per_host; hosts.len()],
                !pinned.is_empty(),
            )
            .into_iter()
            .map(|l| LanePlan {
                host: hosts[l.host].clone(),
                name: l.name,
                suites: l.suites.iter().map(|s| s.name.clone()).collect(),
                vms: l.vms,
            })
            .collect(),
        };
        DryRun {
            lab: config.root.clone(),
            config: config.path.is_file().then(|| config.path.clone()),
            vagrantfile: config.vagrantfile.clone(),
            machines: lab.machines.clone(),
            vms: vms.to_vec(),
            box_: box_words(lab),
            provisioned: match config.provision {
                true => description
                    .machines
                    .iter()
                    .filter(|m| vms.contains(&m.name) && !m.provisioners.is_empty())
                    .map(|m| m.name.clone())
                    .collect(),
                false => Vec::new(),
            },
            pinned_subnets: pinned,
            provider: provider_words(lab),
            hosts,
            lanes,
            room,
            suites: suites
                .iter()
                .map(|s| SuitePlan {
                    name: s.name.clone(),
                    vms: s.vms.clone(),
                    tests: s.tests.iter().map(|t| t.name.clone()).collect(),
                    benchmarks: s.benchmarks.iter().map(|b| b.name.clone()).collect(),
                    images: s.images.clone(),
                })
                .collect(),
            keep: match (on, keep) {
                (Some(_), _) => "the kept lab's, and stay".into(),
                (None, Keep::Never) => "destroyed".into(),
                (None, Keep::OnFailure(d)) => format!(
                    "kept for {} when the run fails, else destroyed",
                    humantime::format_duration(d)
                ),
                (None, Keep::Always(d)) => format!("kept for {}", humantime::format_duration(d)),
            },
            shard: shard.cloned(),
            on: on.map(|l| l.run_id.to_string()),
            lab_env: Default::default(),
            untrusted: lab.untrusted.as_ref().map(|u| UntrustedPlan {
                lab_from: u.trusted.source.clone(),
                skipped: u.skipped.clone(),
                lab_env: config.untrusted.lab_env.clone(),
                allow: config
                    .untrusted
                    .allow
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            }),
        }
    }

    /// The plan for people, or as JSON for scripts.
    pub fn render(&self, json: bool) -> String {
        if json {
            return serde_json::to_string_pretty(self).expect("a plan serializes") + "\n";
        }
        let mut out = String::from("metalab run --dry-run: nothing is started\n");
        let mut line = |label: &str, text: String| out.push_str(&format!("{label:<10} {text}\n"));
        let config = self.config.as_ref().map_or_else(
            || "no metalab.toml: every setting at its default".to_string(),
            |p| p.display().to_string(),
        );
        line("lab", format!("{} ({config})", self.lab.display()));
        if let Some(u) = &self.untrusted {
            line(
                "untrusted",
                format!(
                    "the lab definition from {}; from the change only its suites, copied inert \
                     (left out: {}); LAB_* for the suites: {}; the VMs are fenced: they reach \
                     each other, DHCP, and {}; the history is not written",
                    u.lab_from,
                    list_or(&u.skipped, "nothing"),
                    list_or(&u.lab_env, "none"),
                    list_or(&u.allow, "nothing else")
                ),
            );
        }
        if !self.lab_env.is_empty() {
            let vars: Vec<String> = self
                .lab_env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            line("LAB_*", vars.join(" "));
        }
        line(
            "VMs",
            format!(
                "{} of {} (it defines {})",
                self.vms.join(", "),
                self.vagrantfile.display(),
                self.machines.join(", ")
            ),
        );
        line("box", self.box_.clone());
        line("provision", list_or(&self.provisioned, "none"));
        if !self.pinned_subnets.is_empty() {
            line(
                "subnets",
                format!(
                    "{} fixed by the Vagrantfile: one lane a host, and a second run waits",
                    self.pinned_subnets.join(", ")
                ),
            );
        }
        line("hosts", format!("{} ({})", self.provider, self.room));
        for l in &self.lanes {
            let name = if l.name.is_empty() {
                "one lane"
            } else {
                &l.name
            };
            line(
                "lane",
                format!(
                    "{name} on {}: {} on {}",
                    l.host,
                    list_or(&l.suites, "no suite"),
                    list_or(&l.vms, "no VM")
                ),
            );
        }
        for s in &self.suites {
            let images = match s.images.is_empty() {
                true => String::new(),
                false => format!("; images {} (docker import)", s.images.join(", ")),
            };
            line(
                "suite",
                format!(
                    "{} on {}: tests {}; benchmarks {}{images}",
                    s.name,
                    s.vms.join(", "),
                    list_or(&s.tests, "none"),
                    list_or(&s.benchmarks, "none")
                ),
            );
        }
        if let Some(share) = &self.shard {
            line(
                "shard",
                format!("{} of {}", share.label(), share.selected.join(", ")),
            );
        }
        line("at the end", format!("the VMs are {}", self.keep));
        out
    }
}

fn list_or(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(", ")
    }
}

fn box_words(lab: &Lab) -> String {
    match &lab.config.box_recipe {
        Some(recipe) => format!(
            "metalab/{}, built offline from {}",
            recipe
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            recipe.display()
        ),
        None => {
            let mut names: Vec<String> = lab
                .description
                .machines
                .iter()
                .filter_map(|m| m.box_name.clone())
                .collect();
            names.dedup();
            format!("{}, as Vagrant finds it", list_or(&names, "none named"))
        }
    }
}

fn provider_words(lab: &Lab) -> String {
    let c = &lab.config;
    match (c.provider, &c.metal) {
        (ProviderKind::Local, _) => "local: this machine".into(),
        (ProviderKind::Ssh, _) => "ssh: an inventory host each lane, the first free ones".into(),
        (ProviderKind::Metal, Some(m)) => format!(
            "metal: {} new device(s) of {} in {}",
            m.devices,
            m.plan,
            m.metros.join(", ")
        ),
        (ProviderKind::Metal, None) => "metal".into(),
        (ProviderKind::Ec2, _) => match &c.ec2 {
            Some(e) => format!(
                "ec2: {} new {} instance(s) of {} in {}",
                e.instances,
                match e.market {
                    crate::config::Market::OnDemand => "on-demand",
                    crate::config::Market::Spot => "spot",
                },
                e.instance_types.join(" or "),
                e.region
            ),
            None => "ec2".into(),
        },
    }
}

fn hosts(lab: &Lab) -> Vec<String> {
    let c = &lab.config;
    match (c.provider, &c.metal) {
        (ProviderKind::Local, _) => vec!["local".into()],
        (ProviderKind::Ssh, _) => c.ssh_hosts.iter().map(|h| h.display_name()).collect(),
        (ProviderKind::Metal, Some(m)) => (1..=m.devices).map(|i| format!("device {i}")).collect(),
        (ProviderKind::Metal, None) => vec!["device 1".into()],
        (ProviderKind::Ec2, _) => {
            let n = c.ec2.as_ref().map_or(1, |e| e.instances);
            (1..=n).map(|i| format!("instance {i}")).collect()
        }
    }
}

/// The VMs a host is taken to hold: this machine's cores and memory for the local provider (as
/// a run works it out), `[capacity] vms` (else 1) for hosts the dry run does not contact.
fn room(lab: &Lab) -> (String, usize) {
    let c = &lab.config;
    if c.provider != ProviderKind::Local {
        let n = c.capacity.vms.unwrap_or(1);
        return (
            format!("taken to hold {n} VM(s) each: the run asks each host"),
            n,
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let available_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024;
    let kvm = match c.vm.accel {
        Accel::Kvm => true,
        Accel::Tcg => false,
        Accel::Auto => {
            std::fs::read_to_string(lab.state.accel_file()).is_ok_and(|a| a.trim() == "kvm")
        }
    };
    let n = lanes::vm_slots(cores, available_mib, c.vm.memory, kvm, c.capacity.vms);
    let accel = if kvm { "kvm" } else { "tcg" };
    (
        format!("{n} VM(s) at once here: {cores} cores, {available_mib} MiB free, {accel}"),
        n,
    )
}
