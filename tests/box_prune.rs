//! `metalab box prune` against the real Vagrant and libvirt. A throw-away box gets three versions,
//! each in the three places a real one takes: metalab's build cache, Vagrant's registered boxes and
//! a base volume in the `metalab` pool. The newest is the current recipe's build, the middle one
//! backs an overlay volume (as a lab's disk does), and the oldest is left for prune to remove.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// One version in the three places, as `metalab box build`, `vagrant box add` and vagrant-libvirt
/// leave it.
fn make_version(
    state: &Path,
    box_name: &str,
    version: &str,
    recipe_hash: &str,
    vols: &mut Volumes,
) {
    let cache = state.join("boxes").join(format!(
        "{}-{}",
        box_name.replace('/', "-"),
        &recipe_hash[..16]
    ));
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("box.box"), vec![7u8; 4096]).unwrap();
    let info = serde_json::json!({
        "name": box_name, "version": version, "sha256": "0".repeat(64), "recipe_hash": recipe_hash,
    });
    std::fs::write(cache.join("box.json"), info.to_string()).unwrap();

    let registered = registered_dir(state, box_name, version);
    std::fs::create_dir_all(&registered).unwrap();
    std::fs::write(
        registered.join("metadata.json"),
        r#"{"provider":"libvirt","format":"qcow2","virtual_size":1}"#,
    )
    .unwrap();
    std::fs::write(registered.join("box.img"), vec![0u8; 4096]).unwrap();

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

#[test]
fn prune_removes_old_versions_everywhere_and_keeps_the_current_one_and_those_in_use() {
    let recipe_dir = format!("prunetest{}", std::process::id());
    let lab = ScratchLab::new(&format!("[lab]\nbox = \"boxes/{recipe_dir}\"\n"), &[]);
    lab.write(
        &format!("boxes/{recipe_dir}/build.sh"),
        "#!/bin/sh\nexit 1\n",
    );
    let recipe = metalab::boxes::Recipe::new(&lab.path().join("boxes").join(&recipe_dir));
    let box_name = recipe.box_name();
    let state = tempfile::Builder::new()
        .prefix("metalab-prune-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut vols = Volumes(Vec::new());
    make_version(state.path(), &box_name, OLD, &"a".repeat(64), &mut vols);
    make_version(state.path(), &box_name, IN_USE, &"b".repeat(64), &mut vols);
    make_version(
        state.path(),
        &box_name,
        CURRENT,
        &recipe.hash().unwrap(),
        &mut vols,
    );
    let overlay = format!("metalab-{recipe_dir}-node1.img");
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
    let prune = |args: &[&str]| {
        let out = lab
            .metalab(&[&["box", "prune"], args].concat())
            .env("METALAB_HOME", state.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        text(&out)
    };
    let line = |out: &str, version: &str| {
        out.lines()
            .find(|l| l.contains(version))
            .unwrap_or_else(|| panic!("no line for {version} in:\n{out}"))
            .to_string()
    };

    // A dry run says what would go, and nothing goes.
    let out = prune(&["--dry-run"]);
    assert!(
        line(&out, OLD).contains("would remove (cache, vagrant, pool"),
        "{out}"
    );
    assert!(volume_exists(&base_volume(&box_name, OLD)));
    assert!(registered_dir(state.path(), &box_name, OLD).is_dir());

    let out = prune(&[]);
    assert!(
        line(&out, OLD).contains("removed (cache, vagrant, pool"),
        "{out}"
    );
    assert!(
        line(&out, IN_USE).contains(&format!("kept (used by volume {overlay})")),
        "{out}"
    );
    assert!(
        line(&out, CURRENT).contains("kept (built by the current recipe)"),
        "{out}"
    );
    // The old version is gone from all three places; the others are untouched.
    assert!(!volume_exists(&base_volume(&box_name, OLD)));
    assert!(volume_exists(&base_volume(&box_name, IN_USE)));
    assert!(volume_exists(&base_volume(&box_name, CURRENT)));
    let cached: Vec<String> = std::fs::read_dir(state.path().join("boxes"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path().join("box.json")).unwrap())
        .collect();
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert!(cached.iter().all(|c| !c.contains(OLD)), "{cached:?}");
    let listed = vagrant_box_list(state.path());
    assert!(!listed.contains(OLD), "{listed}");
    assert!(
        listed.contains(IN_USE) && listed.contains(CURRENT),
        "{listed}"
    );

    // Once the overlay is gone, the version it held is free to go too.
    virsh(&["vol-delete", "--pool", "metalab", &overlay]);
    vols.0.retain(|v| v != &overlay);
    let out = prune(&[]);
    assert!(line(&out, IN_USE).contains("removed"), "{out}");
    assert!(!volume_exists(&base_volume(&box_name, IN_USE)));
    assert!(volume_exists(&base_volume(&box_name, CURRENT)));
}
