//! Prerequisite checks for a host, each with the command that fixes it.

use std::path::Path;
use std::time::Duration;

use crate::boxes::Recipe;
use crate::config::{Accel, Config};
use crate::history::{self, History, Location};
use crate::host::Host;
use crate::model::record::BoxInfo;
use crate::state::StateDir;
use crate::transport::{Collect, Command, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but slower or riskier than it should be.
    Warn,
    /// A run cannot work until this is fixed.
    Missing,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    pub fix: Option<String>,
}

const SETUP: &str = "run scripts/setup-host (as root)";

async fn sh(host: &dyn Transport, script: &str) -> (bool, String) {
    let mut out = Collect::default();
    match host
        .exec(&Command::new(script, Duration::from_secs(60)), &mut out)
        .await
    {
        Ok(o) => (
            o.success(),
            format!("{}{}", out.stdout_text(), out.stderr_text())
                .trim()
                .to_string(),
        ),
        Err(e) => (false, e.to_string()),
    }
}

fn check(name: &'static str, ok: bool, detail: String, fix: &str) -> Check {
    Check {
        name,
        verdict: if ok { Verdict::Ok } else { Verdict::Missing },
        detail,
        fix: (!ok).then(|| fix.to_string()),
    }
}

/// Runs every check against `host`. `config` adds the checks that need the lab (the box).
/// Runs every check against `host`. `config` adds the checks that need the lab (the box, the
/// accelerator probe, which boots the box's kernel).
pub async fn run(host: &Host, state: &StateDir, config: Option<&Config>) -> Vec<Check> {
    let accel = match config {
        Some(c) => probe_accel(host, state, c).await,
        None => None,
    };
    let host = host.transport.as_ref();
    let mut checks = Vec::new();
    let (ok, out) = sh(host, "vagrant --version").await;
    checks.push(check("vagrant", ok, first_line(&out), SETUP));
    let (ok, out) = sh(
        host,
        "vagrant plugin list 2>/dev/null | grep vagrant-libvirt",
    )
    .await;
    checks.push(check(
        "vagrant-libvirt",
        ok,
        if ok {
            first_line(&out)
        } else {
            "plugin not found".into()
        },
        SETUP,
    ));
    let (ok, out) = sh(host, "qemu-system-x86_64 --version").await;
    checks.push(check("qemu", ok, first_line(&out), SETUP));
    let (ok, out) = sh(
        host,
        "virsh -c qemu:///system version --daemon 2>&1 | grep -i 'running hypervisor'",
    )
    .await;
    checks.push(check(
        "libvirtd",
        ok,
        if ok {
            first_line(&out)
        } else {
            "libvirtd does not answer on qemu:///system".into()
        },
        "start it: scripts/setup-host (starts virtlogd and libvirtd when there is no systemd)",
    ));
    let (ok, out) = sh(host, "virsh -c qemu:///system pool-info metalab 2>&1 | grep -q running && echo 'pool metalab running'").await;
    checks.push(check(
        "storage pool",
        ok,
        if ok {
            out
        } else {
            "pool `metalab` missing or stopped".into()
        },
        SETUP,
    ));
    let (ok, out) = sh(
        host,
        "virsh -c qemu:///system net-dumpxml vagrant-libvirt 2>&1",
    )
    .await;
    checks.push(management_network(ok, &out));
    checks.push(kvm_check());
    checks.push(accel_check(accel));
    if let Some(config) = config {
        if let Some(recipe) = &config.box_recipe {
            checks.push(box_check(state, recipe));
        }
        checks.push(memory_check(config));
    }
    if let Some(check) = history_check(state, config) {
        checks.push(check);
    }
    checks.push(disk_check(state.root()));
    checks
}

/// Whether the shared history server answers to metalab's credentials; `None` for a history
/// file, which the disk check covers (and which opening would create).
fn history_check(state: &StateDir, config: Option<&Config>) -> Option<Check> {
    let at = match history::location(config.and_then(|c| c.history.as_ref()), state) {
        Ok(at @ Location::Server(_)) => at,
        Ok(Location::File(_)) => return None,
        Err(e) => return Some(check("history", false, e, "fix METALAB_HISTORY")),
    };
    let opened = History::open(&at).and_then(|h| h.run_count());
    Some(match opened {
        Ok(runs) => check("history", true, format!("{at}: {runs} run(s)"), ""),
        Err(e) => check(
            "history",
            false,
            e.to_string(),
            "check [history] url (or METALAB_HISTORY), PGPASSWORD, and that the server admits \
             this host",
        ),
    })
}

/// Probes afresh, so a host whose KVM got fixed (or broke) is noticed.
async fn probe_accel(host: &Host, state: &StateDir, config: &Config) -> Option<Accel> {
    let built = Recipe::new(config.box_recipe.as_deref()?)
        .cached(state)
        .ok()??;
    let kernel = built.registered_dir(&state.vagrant_home()).join("vmlinuz");
    Some(crate::host::accel::resolve(host, Accel::Auto, &kernel.display().to_string(), true).await)
}

/// The shared management network every lab's VMs use. Its fix never undefines it under VMs that
/// use it (other runs' among them): scripts/setup-host replaces an old definition only while no
/// VM is connected.
fn management_network(defined: bool, xml: &str) -> Check {
    let stp_off = xml.contains("stp='off'") || xml.contains("stp=\"off\"");
    let in_use: u32 = xml
        .split("connections='")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let (verdict, detail, fix) = match (defined, stp_off, in_use) {
        (false, _, _) => (
            Verdict::Missing,
            "network `vagrant-libvirt` missing".to_string(),
            Some(SETUP.to_string()),
        ),
        (true, true, _) => (Verdict::Ok, "vagrant-libvirt, STP off".to_string(), None),
        (true, false, 0) => (
            Verdict::Warn,
            "vagrant-libvirt has STP on: every boot waits ~4 s more".to_string(),
            Some("scripts/setup-host (it redefines the network while no VM uses it)".to_string()),
        ),
        (true, false, n) => (
            Verdict::Warn,
            format!("vagrant-libvirt has STP on: every boot waits ~4 s more; {n} VM(s) use it now"),
            Some(
                "once no VM uses it (`metalab status`, `metalab reap`), scripts/setup-host redefines it"
                    .to_string(),
            ),
        ),
    };
    Check {
        name: "management network",
        verdict,
        detail,
        fix,
    }
}

fn kvm_check() -> Check {
    let meta = std::fs::metadata("/dev/kvm");
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    use std::os::unix::fs::PermissionsExt;
    let mode_ok = meta
        .as_ref()
        .is_ok_and(|m| m.permissions().mode() & 0o060 == 0o060);
    Check {
        name: "/dev/kvm",
        verdict: if meta.is_err() || mode_ok {
            Verdict::Ok
        } else {
            Verdict::Warn
        },
        detail: match (&meta, usable) {
            (Err(_), _) => "absent: VMs run under TCG (software emulation)".into(),
            (Ok(_), _) if !mode_ok => {
                "not group-accessible: libvirt re-probes QEMU on every define (+40-60 s per up)"
                    .into()
            }
            _ => "present and group-accessible".into(),
        },
        fix: (meta.is_ok() && !mode_ok).then(|| "chgrp kvm /dev/kvm && chmod 0660 /dev/kvm".into()),
    }
}

fn accel_check(accel: Option<Accel>) -> Check {
    match accel {
        Some(a) => Check {
            name: "accelerator",
            verdict: Verdict::Ok,
            detail: format!("{} (probed by booting the box's kernel under KVM)", crate::host::accel::name(a)),
            fix: None,
        },
        None => Check {
            name: "accelerator",
            verdict: Verdict::Warn,
            detail: "not probed: the box is not built yet; the first run probes whether a KVM guest really boots".into(),
            fix: None,
        },
    }
}

fn box_check(state: &StateDir, recipe_dir: &Path) -> Check {
    let recipe = Recipe::new(recipe_dir);
    match recipe.cached(state) {
        Ok(Some(b)) => {
            let registered = b
                .registered_dir(&state.vagrant_home())
                .join("metadata.json")
                .is_file();
            Check {
                name: "box",
                verdict: Verdict::Ok,
                detail: format!(
                    "{} {} built (sha256 {}){}{}",
                    b.info.name,
                    b.info.version,
                    &b.info.sha256[..16],
                    if registered {
                        ", registered"
                    } else {
                        "; registered at the next run"
                    },
                    older_versions(state, &b.info)
                ),
                fix: None,
            }
        }
        Ok(None) => Check {
            name: "box",
            verdict: Verdict::Warn,
            detail: format!(
                "{} not built for the current recipe; the next run builds it (a few minutes)",
                recipe.box_name()
            ),
            fix: Some("metalab box build".into()),
        },
        Err(e) => check("box", false, format!("{e:#}"), "check the recipe directory"),
    }
}

/// "; 3 older version(s) kept ...", or nothing.
fn older_versions(state: &StateDir, current: &BoxInfo) -> String {
    match crate::boxes::other_cached_builds(state, current) {
        0 => String::new(),
        n => format!("; {n} older version(s) kept, about 1 GB each (metalab box prune)"),
    }
}

fn memory_check(config: &Config) -> Check {
    let available_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0);
    // A TCG VM holds ~1.3-1.5 times its configured memory; two VMs must fit.
    let need = u64::from(config.vm.memory) * 2 * 3 / 2;
    Check {
        name: "memory",
        verdict: if available_mib >= need {
            Verdict::Ok
        } else {
            Verdict::Warn
        },
        detail: format!(
            "{available_mib} MiB available; two VMs of {} MiB need about {need}",
            config.vm.memory
        ),
        fix: (available_mib < need)
            .then(|| "lower [vm] memory in metalab.toml, or free memory".into()),
    }
}

fn disk_check(root: &Path) -> Check {
    let probe = root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let free_gib = nix::sys::statvfs::statvfs(probe)
        .map(|s| s.blocks_available() * s.fragment_size() / (1 << 30))
        .unwrap_or(0);
    Check {
        name: "disk",
        verdict: if free_gib >= 10 {
            Verdict::Ok
        } else if free_gib >= 4 {
            Verdict::Warn
        } else {
            Verdict::Missing
        },
        detail: format!("{free_gib} GiB free under {}", probe.display()),
        fix: (free_gib < 10)
            .then(|| format!("free space under {} (boxes, VM disks); `metalab box prune` removes old box versions", probe.display())),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}
