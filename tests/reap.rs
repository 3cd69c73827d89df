//! `metalab reap` trusts only what it saw: a survey that fails is an error (never "nothing left
//! behind"), and a dead run's orphaned processes (a `vagrant up` whose metalab was killed) and
//! network fence are ended, while another run's are left alone. Runs against real libvirt with a state directory of
//! its own, so it touches no other test's runs.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::text;

fn reap(state: &Path, path_prefix: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_metalab"));
    c.arg("reap")
        .args(args)
        .current_dir(state)
        .env("METALAB_HOME", state)
        .env("CI", "true");
    if let Some(dir) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", format!("{}:{path}", dir.display()));
    }
    c.output().unwrap()
}

#[test]
fn a_survey_that_fails_is_an_error_not_a_clean_host() {
    let state = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let virsh = bin.path().join("virsh");
    std::fs::write(
        &virsh,
        "#!/bin/sh\necho 'error: failed to connect to the hypervisor' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&virsh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for args in [&[][..], &["--dry-run"][..]] {
        let out = reap(state.path(), Some(bin.path()), args);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(3), "reap {args:?}: {shown}");
        assert!(
            shown.contains("failed to connect to the hypervisor"),
            "reap {args:?}: {shown}"
        );
        assert!(
            !shown.contains("nothing left behind"),
            "reap {args:?}: {shown}"
        );
    }
}

#[test]
fn a_lab_whose_file_does_not_load_is_refused_not_surveyed_in_part() {
    // The lab's inventory hosts and cloud resources would go unsurveyed: nothing is reaped.
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("metalab.toml"),
        "[provider]\nkind = \"ec2\"\n\n[provider.ec2]\nregion = \"us-east-1\"\ninstance_type = [\"c5.metal\"]\n",
    )
    .unwrap();
    std::fs::write(state.path().join("Vagrantfile"), "").unwrap();
    std::fs::create_dir(state.path().join("suites")).unwrap();
    for args in [&[][..], &["--dry-run"][..]] {
        let out = reap(state.path(), None, args);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "reap {args:?}: {shown}");
        assert!(shown.contains("metalab.toml:6:1"), "reap {args:?}: {shown}");
        assert!(shown.contains("instance_type"), "reap {args:?}: {shown}");
        assert!(
            shown.contains("nothing was reaped"),
            "reap {args:?}: {shown}"
        );
        assert!(!shown.contains("local:"), "reap {args:?}: {shown}");
    }
    // `status` still shows the kept labs, and says the inventory was not read.
    let out = Command::new(env!("CARGO_BIN_EXE_metalab"))
        .arg("status")
        .current_dir(state.path())
        .env("METALAB_HOME", state.path())
        .env("CI", "true")
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "status: {shown}");
    assert!(shown.contains("metalab.toml:6:1"), "status: {shown}");
    assert!(
        shown.contains("inventory hosts were not read"),
        "status: {shown}"
    );
}

/// A process tagged as Vagrant's processes of `run` are, sleeping until killed.
fn tagged_sleeper(run: &str) -> std::process::Child {
    Command::new("sleep")
        .arg("300")
        .env("METALAB_RUN_TAG", run)
        .spawn()
        .unwrap()
}

fn gone(child: &mut std::process::Child) -> bool {
    for _ in 0..50 {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

#[test]
fn a_dead_runs_orphaned_processes_are_ended_and_another_runs_are_not() {
    let state = tempfile::tempdir().unwrap();
    // A run whose metalab died (its pid belongs to nobody), and one this state directory does not
    // know, started a minute ago: perhaps another state directory's, so left alone. Both are
    // recent, so that a reap of another state directory (a concurrent test's) leaves them alone
    // too: only this one knows the first is dead.
    let now = chrono::Utc::now();
    let dead = format!(
        "{}-d3ad",
        (now - chrono::TimeDelta::minutes(2)).format("%Y%m%d-%H%M%S")
    );
    let other = format!(
        "{}-0123",
        (now - chrono::TimeDelta::minutes(1)).format("%Y%m%d-%H%M%S")
    );
    let run_dir = state.path().join("runs").join(&dead);
    std::fs::create_dir_all(&run_dir).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    std::fs::write(
        run_dir.join("owner.json"),
        serde_json::json!({
            "pid": 4_000_000, "boot_id": boot.trim(), "started": now.to_rfc3339(),
            "keep_until": null, "finished": false
        })
        .to_string(),
    )
    .unwrap();
    let mut made = Made {
        runs: vec![dead.clone(), other.clone()],
        sleepers: vec![tagged_sleeper(&dead), tagged_sleeper(&other)],
    };
    let [orphan, stranger] = &mut made.sleepers[..] else {
        unreachable!("two sleepers")
    };
    // Each with an untrusted run's network fence, found by the run's name.
    for run in [&dead, &other] {
        nft(&format!("add table bridge metalab-{run}-"));
        nft(&format!("add table inet metalab-{run}-"));
    }

    let dry = reap(state.path(), None, &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        text(&dry).contains(&format!("{dead}  would remove")),
        "{}",
        text(&dry)
    );
    assert!(!gone(orphan), "a dry run ended a process");
    assert!(text(&dry).contains("nftables tables"), "{}", text(&dry));
    assert!(tables().contains(&dead), "a dry run removed a fence");

    let out = reap(state.path(), None, &[]);
    let shown = text(&out);
    let left = tables();
    assert!(
        !left.contains(&dead),
        "the dead run's fence survived reap: {left}"
    );
    assert!(
        left.contains(&other),
        "reap removed another run's fence: {shown}"
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        gone(orphan),
        "the dead run's process survived reap:\n{shown}"
    );
    assert!(
        shown.contains(&format!("{dead}  removed")) && shown.contains("1 process(es)"),
        "{shown}"
    );
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "reap ended another run's process:\n{shown}"
    );
    assert!(shown.contains(&format!("{other}  left alone")), "{shown}");
}

/// What the test made for its runs, removed however it ends: their processes and fences.
struct Made {
    runs: Vec<String>,
    sleepers: Vec<std::process::Child>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for child in &mut self.sleepers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for run in &self.runs {
            for family in ["bridge", "inet"] {
                let _ = Command::new("nft")
                    .args(["delete", "table", family, &format!("metalab-{run}-")])
                    .output();
            }
        }
    }
}

/// nftables tables on this machine.
fn tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nft(args: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("nft {args}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "nft {args}: {}", text(&out));
}
