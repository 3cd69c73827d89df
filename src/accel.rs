//! KVM when it works, TCG otherwise. `/dev/kvm` existing proves little: on some hosts (nested
//! virtualisation) KVM guests hang without a word. So the probe boots the box's kernel under KVM
//! and waits for its first line on the serial console; the answer is cached per host.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::config::Accel;
use crate::state::StateDir;

/// A working KVM prints the kernel banner in well under a second; TCG would take ~1 s too.
const PROBE_WAIT: Duration = Duration::from_secs(10);

/// The accelerator to use: the configured one, or for `auto` the cached or probed answer.
pub async fn resolve(configured: Accel, state: &StateDir, kernel: &Path) -> Accel {
    match configured {
        Accel::Kvm | Accel::Tcg => configured,
        Accel::Auto => match cached(state) {
            Some(a) => a,
            None => probe_and_cache(state, kernel).await,
        },
    }
}

pub fn cached(state: &StateDir) -> Option<Accel> {
    match std::fs::read_to_string(state.accel_file()).ok()?.trim() {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

pub fn name(a: Accel) -> &'static str {
    match a {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
        Accel::Auto => "auto",
    }
}

/// Probes and records the answer where the Vagrantfile also looks when run by hand.
pub async fn probe_and_cache(state: &StateDir, kernel: &Path) -> Accel {
    let found = if kvm_boots(kernel).await {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let _ = std::fs::create_dir_all(state.root());
    let _ = std::fs::write(state.accel_file(), format!("{}\n", name(found)));
    found
}

async fn kvm_boots(kernel: &Path) -> bool {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable || !kernel.is_file() {
        return false;
    }
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let serial = dir.path().join("serial.log");
    let child = tokio::process::Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-m",
            "256",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(_child) = child else { return false };
    let started = Instant::now();
    while started.elapsed() < PROBE_WAIT {
        if std::fs::read_to_string(&serial).is_ok_and(|s| s.contains("Linux version")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
