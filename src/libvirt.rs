//! libvirt resources found by name, through a host's transport: the truth about what a run left
//! behind, whatever Vagrant's state files say. Every name of a run starts with
//! `metalab-<run-id>-`, so a sweep by prefix finds domains, networks and volumes alike, and the
//! nftables tables of an untrusted run's fence ([`crate::host::fence`]) with them.

use std::time::Duration;

use crate::transport::{
    Collect, Command, Transport, TransportError, marked_sections, sh_quote, stdout_of,
};

const VIRSH: &str = "virsh -q -c qemu:///system";
/// The storage pool scripts/setup-host defines and the Vagrantfile uses.
pub const POOL: &str = "metalab";
const TIMEOUT: Duration = Duration::from_secs(60);

/// What a sweep found (and, unless it was a dry run, removed).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    pub domains: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// nftables tables, as "<family> <name>".
    pub fences: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
            && self.networks.is_empty()
            && self.volumes.is_empty()
            && self.fences.is_empty()
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (kind, names) in [
            ("domain", &self.domains),
            ("network", &self.networks),
            ("volume", &self.volumes),
            ("nftables table", &self.fences),
        ] {
            if !names.is_empty() {
                parts.push(format!("{kind}s {}", names.join(", ")));
            }
        }
        parts.join("; ")
    }
}

/// Everything of libvirt whose name starts with `prefix`. Fails when libvirt does not answer:
/// a survey that could not look is never "nothing there".
pub async fn find(host: &dyn Transport, prefix: &str) -> anyhow::Result<Leftovers> {
    const MARK: &str = "@@metalab-survey";
    let script = format!(
        "set -e\n\
         d=$({VIRSH} list --all --name); n=$({VIRSH} net-list --all --name)\n\
         v=; if {VIRSH} pool-info {POOL} >/dev/null 2>&1; then v=$({VIRSH} vol-list {POOL}); fi\n\
         echo '{MARK} domains'; printf '%s\\n' \"$d\"\n\
         echo '{MARK} networks'; printf '%s\\n' \"$n\"\n\
         echo '{MARK} volumes'; printf '%s\\n' \"$v\" | awk '{{print $1}}'\n\
         echo '{MARK} fences'; if command -v nft >/dev/null; then nft list tables; fi\n"
    );
    let listed = checked_output(host, &script).await?;
    let mut found = Leftovers::default();
    for (kind, body) in marked_sections(&listed, MARK) {
        let lines = body.lines().map(str::trim);
        if kind == "fences" {
            // "table <family> <name>"
            found.fences.extend(
                lines
                    .filter_map(|l| l.strip_prefix("table "))
                    .filter(|t| t.split(' ').nth(1).is_some_and(|n| n.starts_with(prefix)))
                    .map(str::to_string),
            );
            continue;
        }
        let names = lines.filter(|n| n.starts_with(prefix)).map(str::to_string);
        match kind {
            "domains" => found.domains.extend(names),
            "networks" => found.networks.extend(names),
            _ => found.volumes.extend(names),
        }
    }
    Ok(found)
}

/// The names of every libvirt network on the host.
pub async fn network_names(host: &dyn Transport) -> anyhow::Result<Vec<String>> {
    let listed = checked_output(host, &format!("{VIRSH} net-list --all --name")).await?;
    Ok(listed
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect())
}

/// Removes everything `find` returned: domains first (with their snapshots and storage), then
/// the networks and volumes they used. Each step tolerates "already gone".
pub async fn remove(host: &dyn Transport, found: &Leftovers) -> Result<(), TransportError> {
    let mut script = String::new();
    for d in &found.domains {
        let d = sh_quote(d);
        script.push_str(&format!(
            "{VIRSH} destroy {d} >/dev/null 2>&1; {VIRSH} undefine {d} --snapshots-metadata --managed-save --remove-all-storage >/dev/null 2>&1 || {VIRSH} undefine {d} --snapshots-metadata >/dev/null 2>&1\n"
        ));
    }
    for n in &found.networks {
        let n = sh_quote(n);
        script.push_str(&format!(
            "{VIRSH} net-destroy {n} >/dev/null 2>&1; {VIRSH} net-undefine {n} >/dev/null 2>&1\n"
        ));
    }
    for v in &found.volumes {
        script.push_str(&format!(
            "{VIRSH} vol-delete --pool {POOL} {} >/dev/null 2>&1\n",
            sh_quote(v)
        ));
    }
    // After the domains: a fence comes down only when its VMs are gone.
    for table in &found.fences {
        let mut words = table.splitn(2, ' ');
        let (family, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        script.push_str(&format!(
            "nft delete table {} {} >/dev/null 2>&1\n",
            sh_quote(family),
            sh_quote(name)
        ));
    }
    script.push_str("true\n");
    host.exec(
        &Command::new(script, TIMEOUT).sudo(true),
        &mut Collect::default(),
    )
    .await?;
    Ok(())
}

/// Finds and removes everything named with `prefix`; returns what was there.
pub async fn sweep(host: &dyn Transport, prefix: &str) -> anyhow::Result<Leftovers> {
    let found = find(host, prefix).await?;
    if !found.is_empty() {
        remove(host, &found).await?;
    }
    Ok(found)
}

/// A libvirt definition that may refer to files: a domain's XML, or a volume's backing chain.
#[derive(Debug, Clone)]
pub struct Definition {
    /// "domain" or "volume".
    pub kind: &'static str,
    pub name: String,
    pub xml: String,
}

/// Every domain's XML, and the backing chain of every volume in the pool: what still refers to a
/// base image or a box's kernel, whether a lab is up, defined but off, or left behind. Fails when
/// libvirt does not answer: an empty answer would read as "nothing in use".
pub async fn definitions(host: &dyn Transport) -> anyhow::Result<Vec<Definition>> {
    const MARK: &str = "@@metalab-definition";
    // A domain or volume that goes while this runs refers to nothing any more: skipped.
    let script = format!(
        "set -e; domains=$({VIRSH} list --all --name); volumes=$({VIRSH} vol-list {POOL})\n\
         for d in $domains; do echo \"{MARK} domain $d\"; {VIRSH} dumpxml \"$d\" || true; done\n\
         for v in $(printf '%s\\n' \"$volumes\" | awk '{{print $1}}'); do echo \"{MARK} volume $v\"; \
         {VIRSH} vol-dumpxml --pool {POOL} \"$v\" | sed -n '/<backingStore>/,/<\\/backingStore>/p' || true; done\n"
    );
    let listed = checked_output(host, &script).await?;
    Ok(marked_sections(&listed, MARK)
        .into_iter()
        .map(|(head, xml)| {
            let (kind, name) = head.split_once(' ').unwrap_or((head, ""));
            Definition {
                kind: if kind == "domain" { "domain" } else { "volume" },
                name: name.to_string(),
                xml,
            }
        })
        .collect())
}

/// The volumes of metalab's storage pool: name and path.
pub async fn pool_volumes(host: &dyn Transport) -> anyhow::Result<Vec<(String, String)>> {
    let listed = checked_output(host, &format!("{VIRSH} vol-list {POOL}")).await?;
    Ok(listed
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect())
}

/// Deletes a volume of metalab's storage pool.
pub async fn delete_volume(host: &dyn Transport, name: &str) -> anyhow::Result<()> {
    run_checked(
        host,
        &format!("{VIRSH} vol-delete --pool {POOL} {}", sh_quote(name)),
    )
    .await
}

/// Takes an internal snapshot, memory included, of a running domain: putting it back later gives
/// the VM exactly as it was, booted and answering SSH, in seconds instead of a cold boot.
pub async fn snapshot(host: &dyn Transport, domain: &str, name: &str) -> anyhow::Result<()> {
    let script = format!(
        "{VIRSH} snapshot-create-as {} {} --atomic",
        sh_quote(domain),
        sh_quote(name)
    );
    run_checked(host, &script).await
}

/// Puts a running domain back to a snapshot taken by [`snapshot`], and its SSH connections die.
///
/// `virsh snapshot-revert` restarts the domain's QEMU process to load the snapshot (about 2 s
/// here, more than the load itself), so the snapshot is loaded in place through the QEMU monitor
/// instead (`loadvm`: about 0.2 s, disks and memory alike). libvirt marks the domain as tainted by
/// a monitor command, which matters nothing for a throw-away VM. Where the monitor refuses, the
/// libvirt way still works.
pub async fn revert(host: &dyn Transport, domain: &str, name: &str) -> anyhow::Result<()> {
    let loadvm = format!(
        "{VIRSH} qemu-monitor-command {} --hmp {}",
        sh_quote(domain),
        sh_quote(&format!("loadvm {name}"))
    );
    let mut out = Collect::default();
    let outcome = host
        .exec(&Command::new(&loadvm, TIMEOUT).sudo(true), &mut out)
        .await?;
    // HMP reports its errors as output, with a zero exit status.
    if outcome.success() && out.stdout_text().trim().is_empty() {
        return Ok(());
    }
    let script = format!(
        "{VIRSH} snapshot-revert {} {} --running",
        sh_quote(domain),
        sh_quote(name)
    );
    run_checked(host, &script).await
}

async fn run_checked(host: &dyn Transport, script: &str) -> anyhow::Result<()> {
    checked_output(host, script).await.map(drop)
}

/// A script's stdout, run as root; an error with its stderr when it fails.
async fn checked_output(host: &dyn Transport, script: &str) -> anyhow::Result<String> {
    stdout_of(host, &Command::new(script, TIMEOUT).sudo(true)).await
}
