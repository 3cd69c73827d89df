//! `metalab box prune` against the real Vagrant and libvirt, on this machine and on an inventory
//! host reached through a real sshd on loopback. A throw-away box gets three versions, each in the
//! places a real one takes: the box file (metalab's build cache, or the copy shipped to a host),
//! Vagrant's registered boxes and a base volume in the `metalab` pool. The newest is the current
//! recipe's build, the middle one backs an overlay volume (as a lab's disk does), and the oldest
//! is left for prune to remove. (Both hosts are this machine, so they share the one pool.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::sshd::Sshd;
use common::{ScratchLab, text};

const OLD: &str = "20260101.000000.0";
const IN_USE: &str = "20260102.000000.0";
const CURRENT: &str = "20260103.000000.0";

/// Pool volumes the test made; deleted whatever happens.
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        // The overlay first: libvirt refuses nothing, but its backing file must outlive it.
        for name in self.0.iter().rev() {
            let _ = Command::new("virsh")
                .args(["-q", "vol-delete", "--pool", "metalab", name])
                .output();
        }
    }
}

fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh").arg("-q").args(args).output().unwrap();
    assert!(out.status.success(), "virsh {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn volume_exists(name: &str) -> bool {
    virsh(&["vol-list", "metalab"])
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// One version as `metalab box build` (or shipping the box to a host) and `vagrant box add` leave
/// it in a state directory.
fn make_version(state: &Path, box_name: &str, version: &str, recipe_hash: &str) {
    let dir = state.join("boxes").join(format!(
        "{}-{}",
        box_name.replace('/', "-"),
        &recipe_hash[..16]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("box.box"), vec![7u8; 4096]).unwrap();
    let info = serde_json::json!({
        "name": box_name, "version": version, "sha256": "0".repeat(64), "recipe_hash": recipe_hash,
    });
    std::fs::write(dir.join("box.json"), info.to_string()).unwrap();

    let registered = registered_dir(state, box_name, version);
    std::fs::create_dir_all(&registered).unwrap();
    std::fs::write(
        registered.join("metadata.json"),
        r#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#,
    )
    .unwrap();
    std::fs::write(registered.join("box.img"), vec![0u8; 4096]).unwrap();
}

/// The base volume vagrant-libvirt uploads for a version on first use.
fn make_base_volume(box_name: &str, version: &str, vols: &mut Volumes) {
    let volume = base_volume(box_name, version);
    virsh(&[
        "vol-create-as",
        "metalab",
        &volume,
        "1M",
        "--format",
        "qcow2",
    ]);
    vols.0.push(volume);
}

/// The versions in a state directory's box directories.
fn box_versions(state: &Path) -> Vec<String> {
    let mut versions: Vec<String> = std::fs::read_dir(state.join("boxes"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path().join("box.json")).unwrap())
        .map(|json| {
            let info: serde_json::Value = serde_json::from_str(&json).unwrap();
            info["version"].as_str().unwrap().to_string()
        })
        .collect();
    versions.sort();
    versions
}

/// This machine's lab, with the ssh provider's one inventory host: the sshd on loopback.
fn config(recipe_dir: &str, sshd: &Sshd, remote_home: &Path) -> String {
    format!(
        "[lab]\nbox = \"boxes/{recipe_dir}\"\n\n[provider]\nkind = \"ssh\"\n{}",
        sshd.inventory_host(
            "loopback",
            sshd.port,
            &sshd.known_hosts(sshd.port),
            &remote_home.display().to_string()
        )
    )
}

fn registered_dir(state: &Path, box_name: &str, version: &str) -> PathBuf {
    state
        .join("vagrant.d/boxes")
        .join(box_name.replace('/', "-VAGRANTSLASH-"))
        .join(version)
        .join("libvirt")
}

fn base_volume(box_name: &str, version: &str) -> String {
    format!(
        "{}_vagrant_box_image_{version}_box.img",
        box_name.replace('/', "-VAGRANTSLASH-")
    )
}

fn vagrant_box_list(state: &Path) -> String {
    let out = Command::new("vagrant")
        .args(["box", "list", "--machine-readable"])
        .env("VAGRANT_HOME", state.join("vagrant.d"))
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The versions of a throw-away box on this machine (`state`) and on the inventory host
/// (`remote`), with their base volumes, and an overlay volume on the middle version.
struct Fixture {
    // Field order is drop order: the volumes go before the directories and the server.
    _vols: Volumes,
    box_name: String,
    overlay: String,
    lab: ScratchLab,
    state: tempfile::TempDir,
    remote: tempfile::TempDir,
    _sshd: Sshd,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let sshd = Sshd::start();
        let recipe_dir = format!("prune{name}{}", std::process::id());
        let tmp = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in("/var/tmp")
                .unwrap()
        };
        let (state, remote) = (tmp("metalab-prune-"), tmp("metalab-prune-remote-"));
        let lab = ScratchLab::new(&config(&recipe_dir, &sshd, remote.path()), &[]);
        lab.write(
            &format!("boxes/{recipe_dir}/build.sh"),
            "#!/bin/sh\nexit 1\n",
        );
        let recipe = metalab::boxes::Recipe::new(&lab.path().join("boxes").join(&recipe_dir));
        let box_name = recipe.box_name();
        let current_hash = recipe.hash().unwrap();
        for (version, hash) in [
            (OLD, "a".repeat(64)),
            (IN_USE, "b".repeat(64)),
            (CURRENT, current_hash.clone()),
        ] {
            make_version(state.path(), &box_name, version, &hash);
        }
        // The inventory host got the old and the current version shipped.
        make_version(remote.path(), &box_name, OLD, &"a".repeat(64));
        make_version(remote.path(), &box_name, CURRENT, &current_hash);
        let mut vols = Volumes(Vec::new());
        for version in [OLD, IN_USE, CURRENT] {
            make_base_volume(&box_name, version, &mut vols);
        }
        // Not named like a run's volume (metalab-<run>-…), so that no reap running meanwhile
        // takes it.
        let overlay = format!("{recipe_dir}-overlay.img");
        let backing = virsh(&[
            "vol-path",
            "--pool",
            "metalab",
            &base_volume(&box_name, IN_USE),
        ]);
        virsh(&[
            "vol-create-as",
            "metalab",
            &overlay,
            "1M",
            "--format",
            "qcow2",
            "--backing-vol",
            backing.trim(),
            "--backing-vol-format",
            "qcow2",
        ]);
        vols.0.push(overlay.clone());
        Fixture {
            _vols: vols,
            box_name,
            overlay,
            lab,
            state,
            remote,
            _sshd: sshd,
        }
    }

    fn prune(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.lab.metalab(&[&["box", "prune"], args].concat());
        c.env("METALAB_HOME", self.state.path());
        c
    }

    /// Whether a version is still in each place: (box dir, Vagrant, pool) on `home`.
    fn places(&self, home: &Path, version: &str) -> (bool, bool, bool) {
        (
            box_versions(home).iter().any(|v| v == version),
            vagrant_box_list(home).contains(version),
            volume_exists(&base_volume(&self.box_name, version)),
        )
    }
}

/// Asserts what prune's output says about `version` in `host`'s part.
fn says(out: &str, host: &str, version: &str, what: &str) {
    let line = out
        .split_once(&format!("{host}:\n"))
        .and_then(|(_, part)| {
            part.lines()
                .take_while(|l| l.starts_with("  "))
                .find(|l| l.contains(version))
        })
        .unwrap_or_else(|| panic!("no line for {version} on {host} in:\n{out}"));
    assert!(
        line.contains(what),
        "{host} {version}: want {what:?} in:\n{out}"
    );
}

#[test]
fn prune_removes_old_versions_everywhere_and_keeps_the_current_one_and_those_in_use() {
    let f = Fixture::new("all");
    let (state, remote, box_name, overlay) = (&f.state, &f.remote, &f.box_name, &f.overlay);
    let prune = |args: &[&str]| {
        let out = f.prune(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        text(&out)
    };
    // A dry run says what would go, and nothing goes.
    let out = prune(&["--dry-run"]);
    says(&out, "local", OLD, "would remove (box, vagrant, pool");
    says(&out, "loopback", OLD, "would remove (box, vagrant, pool");
    assert_eq!(f.places(state.path(), OLD), (true, true, true));
    assert_eq!(f.places(remote.path(), OLD), (true, true, true));

    let out = prune(&[]);
    says(&out, "local", OLD, "removed (box, vagrant, pool");
    says(
        &out,
        "local",
        IN_USE,
        &format!("kept (used by volume {overlay})"),
    );
    says(&out, "local", CURRENT, "kept (built by the current recipe)");
    // The pool is shared here: this machine's prune already took the old volume.
    says(&out, "loopback", OLD, "removed (box, vagrant;");
    says(
        &out,
        "loopback",
        CURRENT,
        "kept (built by the current recipe)",
    );
    // The old version is gone from every place, Vagrant's version directory included; the others
    // are untouched.
    for home in [state.path(), remote.path()] {
        assert_eq!(f.places(home, OLD), (false, false, false));
        assert_eq!(f.places(home, CURRENT), (true, true, true));
        assert!(
            !registered_dir(home, box_name, OLD)
                .parent()
                .unwrap()
                .exists()
        );
    }
    assert_eq!(f.places(state.path(), IN_USE), (true, true, true));

    // Once the overlay is gone, the version it held is free to go too.
    virsh(&["vol-delete", "--pool", "metalab", overlay]);
    let out = prune(&[]);
    says(&out, "local", IN_USE, "removed (box, vagrant, pool");
    assert_eq!(f.places(state.path(), IN_USE), (false, false, false));
    assert_eq!(f.places(state.path(), CURRENT), (true, true, true));
}

#[test]
fn a_host_whose_libvirt_does_not_answer_is_left_alone_and_the_others_are_pruned() {
    let f = Fixture::new("down");
    // This machine's virsh fails as it does when libvirtd is down; the inventory host's, reached
    // over SSH with its own PATH, answers. Nothing in use could be seen here, so nothing may go.
    let bin = tempfile::tempdir().unwrap();
    let virsh = bin.path().join("virsh");
    std::fs::write(
        &virsh,
        "#!/bin/sh\necho 'error: failed to connect to the hypervisor' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&virsh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let out = f.prune(&[]).env("PATH", path).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("failed to connect to the hypervisor"),
        "{shown}"
    );
    assert_eq!(
        f.places(f.state.path(), OLD),
        (true, true, false),
        "{shown}"
    );
    assert_eq!(
        f.places(f.state.path(), IN_USE),
        (true, true, true),
        "{shown}"
    );
    // The inventory host was pruned as usual (and, sharing this machine's pool, took the volume).
    says(&shown, "loopback", OLD, "removed (box, vagrant, pool");
    assert_eq!(
        f.places(f.remote.path(), OLD),
        (false, false, false),
        "{shown}"
    );
}
