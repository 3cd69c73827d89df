//! Helpers shared by the integration tests: a scratch lab built from the repository's own
//! Vagrantfile and box recipe, the metalab binary, and checks against libvirt's real state.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod ec2;
pub mod hooks;
pub mod junit_schema;
pub mod postgres;
pub mod relay;
pub mod sshd;

/// Every file under `dir` that contains `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let out = Command::new("grep")
        .args(["-rlF", needle])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A throw-away lab: metalab.toml, the repo's Vagrantfile and box recipe, and the given suites.
pub struct ScratchLab {
    pub dir: tempfile::TempDir,
}

impl ScratchLab {
    /// `suites`: (suite name, suite.toml text, extra files (name, content)).
    pub fn new(config: &str, suites: &[(&str, &str)]) -> ScratchLab {
        let dir = tempfile::Builder::new()
            .prefix("metalab-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::write(dir.path().join("metalab.toml"), config).unwrap();
        std::fs::copy(repo().join("Vagrantfile"), dir.path().join("Vagrantfile")).unwrap();
        std::fs::create_dir_all(dir.path().join("boxes")).unwrap();
        std::os::unix::fs::symlink(
            repo().join("boxes/debian12"),
            dir.path().join("boxes/debian12"),
        )
        .unwrap();
        std::os::unix::fs::symlink(repo().join("images"), dir.path().join("images")).unwrap();
        let suites_dir = dir.path().join("suites");
        std::fs::create_dir_all(&suites_dir).unwrap();
        for (name, toml) in suites {
            std::fs::create_dir_all(suites_dir.join(name)).unwrap();
            std::fs::write(suites_dir.join(name).join("suite.toml"), toml).unwrap();
        }
        ScratchLab { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `metalab ARGS` in this lab, with plain (CI) output.
    pub fn metalab(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_metalab"));
        c.args(args).current_dir(self.path()).env("CI", "true");
        // A pipeline's id would make every sharded test share one plan.
        for id in [
            "METALAB_SHARD_PLAN",
            "GITHUB_RUN_ID",
            "BUILD_TAG",
            "CI_PIPELINE_ID",
        ] {
            c.env_remove(id);
        }
        c
    }

    /// The newest run's results.json.
    pub fn results(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.path().join("artifacts/latest/results.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn junit(&self) -> String {
        std::fs::read_to_string(self.path().join("artifacts/latest/junit.xml")).unwrap()
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// VMs this host runs at once: two (2 cores, TCG). Tests take as many slots as VMs they boot,
/// so two one-VM tests can run side by side and a two-VM test runs alone. The slots are lock
/// files, so they hold across test processes too (cargo nextest runs each test in a process of
/// its own, and tests of several binaries at once).
const HOST_VM_SLOTS: usize = 2;
const SLOTS_DIR: &str = "/var/tmp/metalab-test-vm-slots";

/// Slots held by a test (locked files), given back when dropped, or when the test dies. When
/// given back, a line in `held.log` says how long the test waited and held them: the numbers to
/// look at when the VM tests take too long.
pub struct VmSlots {
    locks: Vec<std::fs::File>,
    asked: std::time::Instant,
    got: std::time::Instant,
}

impl Drop for VmSlots {
    fn drop(&mut self) {
        use std::io::Write as _;
        let test = std::thread::current().name().unwrap_or("?").to_string();
        let line = format!(
            "{test} vms={} waited={:.0}s held={:.0}s\n",
            self.locks.len(),
            (self.got - self.asked).as_secs_f64(),
            self.got.elapsed().as_secs_f64()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(SLOTS_DIR).join("held.log"));
        if let Ok(mut log) = log {
            let _ = log.write_all(line.as_bytes());
        }
    }
}

/// Waits until `vms` VMs fit next to what other tests run.
pub fn vm_slots(vms: usize) -> VmSlots {
    let asked = std::time::Instant::now();
    let dir = Path::new(SLOTS_DIR);
    std::fs::create_dir_all(dir).unwrap();
    let open = |name: String| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(name))
            .unwrap()
    };
    // No queue: a one-VM test takes a slot as soon as one is free, even while a two-VM test
    // waits for both, so that no slot idles behind it. The tests are finite, so the two-VM test
    // gets its turn when the one-VM tests run out, and the host is never idle meanwhile.
    loop {
        let mut held = Vec::new();
        for i in 0..HOST_VM_SLOTS {
            let slot = open(format!("slot-{i}"));
            if held.len() < vms && slot.try_lock().is_ok() {
                held.push(slot);
            }
        }
        if held.len() == vms {
            return VmSlots {
                locks: held,
                asked,
                got: std::time::Instant::now(),
            };
        }
        drop(held);
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// A test that boots up to two VMs: it runs alone.
pub fn vm_slot() -> VmSlots {
    vm_slots(HOST_VM_SLOTS)
}

fn virsh(args: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("virsh -q -c qemu:///system {args}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every libvirt domain, network and pool volume whose name carries `run_id` (and nftables table:
/// an untrusted run's fence), plus every machine Vagrant's global index still knows in `lab_dir`.
pub fn leftovers(run_id: &str, lab_dir: &Path) -> Vec<String> {
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut left: Vec<String> = [
        virsh("list --all --name"),
        virsh("net-list --all --name"),
        virsh("vol-list metalab"),
        tables,
    ]
    .concat()
    .lines()
    .filter(|l| l.contains(run_id))
    .map(|l| l.trim().to_string())
    .collect();
    // Vagrant's index of the local state directory and the "remote" ones of the SSH tests, read
    // as it is on disk: Vagrant itself would have to load every indexed environment to list it.
    for home in [
        "/var/lib/metalab",
        "/var/lib/metalab-remote",
        "/var/lib/metalab-remote-b",
    ] {
        left.extend(
            indexed_machines(Path::new(home), run_id, lab_dir)
                .into_iter()
                .map(|m| format!("vagrant ({home}): {m}")),
        );
    }
    left
}

/// The machines Vagrant's index in `metalab_home` lists of the run (by its state directory) or
/// of the lab (by its directory).
pub fn indexed_machines(metalab_home: &Path, run_id: &str, lab_dir: &Path) -> Vec<String> {
    let index = metalab_home.join("vagrant.d/data/machine-index/index");
    let text = match std::fs::read_to_string(&index) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", index.display()),
    };
    let index: serde_json::Value = serde_json::from_str(&text).expect("Vagrant's index reads");
    let runs = format!("/runs/{run_id}/");
    let lab = lab_dir.display().to_string();
    index["machines"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, m)| {
            m["local_data_path"]
                .as_str()
                .is_some_and(|p| p.contains(&runs))
                || m["vagrantfile_path"].as_str() == Some(lab.as_str())
        })
        .map(|(_, m)| format!("{} {}", m["name"], m["local_data_path"]))
        .collect()
}

/// The lab config every test uses: small VMs, short timeouts.
pub const CONFIG: &str = r#"
[vm]
memory = 640

[timeouts]
up = "10m"
test = "2m"
"#;
