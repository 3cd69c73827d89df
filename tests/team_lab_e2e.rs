//! A team's own Vagrantfile, run unchanged: tests/labs/acme is a lab in another team's style
//! (its own machine names read from a YAML file, a static-IP private network with a name of its
//! own, `vm.hostname`, file and shell provisioners, Vagrant's default `insert_key`, variables of
//! its own, no metalab.toml). With real VMs: it passes with its provisioning shown; two runs of
//! it at once both pass; a failing provisioner fails the run as the lab's failure and still
//! destroys everything. SIGKILL at each phase followed by `metalab reap` is in
//! scripts/fault-injection.

mod common;

use std::path::Path;
use std::process::Command;

use common::{leftovers, repo, text, vm_slots};

/// The box ACME's Vagrantfile names, registered in a "developer's" Vagrant home, not metalab's.
const BOX: &str = "acme/bookworm";
const TEAM_VAGRANT_HOME: &str = "/var/lib/metalab-acme/vagrant.d";

/// A copy of tests/labs/acme, with the team's box registered where the team keeps it.
fn acme() -> tempfile::TempDir {
    let registered = Command::new(repo().join("tests/labs/register-box"))
        .args([BOX, TEAM_VAGRANT_HOME, env!("CARGO_BIN_EXE_metalab")])
        .output()
        .unwrap();
    assert!(registered.status.success(), "{}", text(&registered));
    let dir = tempfile::Builder::new()
        .prefix("acme-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(repo().join("tests/labs/acme/."))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
    dir
}

fn metalab(lab: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_metalab"));
    c.args(args)
        .current_dir(lab)
        .env("CI", "true")
        .env("VAGRANT_HOME", TEAM_VAGRANT_HOME);
    c
}

fn results(lab: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(lab.join("artifacts/latest/results.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn run_id(results: &serde_json::Value) -> String {
    results["run_id"].as_str().unwrap().to_string()
}

fn phase<'a>(results: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    results["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
}

#[test]
fn a_team_vagrantfile_runs_unchanged_with_its_provisioners() {
    let _slots = vm_slots(2);
    let lab = acme();
    let out = metalab(lab.path(), &["run"]).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let results = results(lab.path());
    let id = run_id(&results);
    // The provisioners ran, as their own phase, before the suites (which checked their effects,
    // the second one after a revert to the snapshot taken after provisioning).
    let provision = phase(&results, "provision").expect("a provision phase");
    assert!(provision["error"].is_null(), "{provision}");
    let log = std::fs::read_to_string(lab.path().join("artifacts/latest/lifecycle/provision.log"))
        .unwrap();
    assert!(log.contains("Running provisioner: shell"), "{log}");
    let junit = std::fs::read_to_string(lab.path().join("artifacts/latest/junit.xml")).unwrap();
    assert!(
        junit.contains(r#"<testcase name="provision" classname="lifecycle""#),
        "{junit}"
    );
    assert_eq!(
        common::junit_schema::violations(&junit),
        Vec::<String>::new()
    );
    // The suite that ran second on a VM started from the snapshot, and its JUnit says so.
    assert!(
        junit.contains(r#"<property name="vm_start" value="metalab-pristine"/>"#),
        "{junit}"
    );
    let suites = results["suites"].as_array().unwrap();
    assert_eq!(suites.len(), 2, "{results}");
    for t in suites.iter().flat_map(|s| s["tests"].as_array().unwrap()) {
        assert_eq!(t["outcome"], "passed", "{t}");
    }
    assert_eq!(
        suites
            .iter()
            .filter(|s| s["snapshot"] == "metalab-pristine")
            .count(),
        1,
        "{results}"
    );
    // The box the Vagrantfile names, as Vagrant found it, by name, version and image hash.
    assert_eq!(results["box"]["name"], BOX);
    assert_eq!(results["box"]["version"], "0");
    assert_eq!(results["box"]["sha256"].as_str().unwrap().len(), 64);
    // Every name the run made carried its id, without a word about metalab in the lab's file.
    let up = std::fs::read_to_string(lab.path().join("artifacts/latest/lifecycle/up.log")).unwrap();
    assert!(up.contains(&format!("metalab-{id}-edge-a")), "{up}");
    assert!(up.contains(&format!("metalab-{id}-acme-transit")), "{up}");
    assert_eq!(leftovers(&id, lab.path()), Vec::<String>::new());
}

#[test]
fn two_runs_of_a_team_lab_at_once_both_pass_and_wait_their_turn_for_its_subnet() {
    // One VM each (the router suite), and the subnet the lab pins lets one run at a time.
    let _slots = vm_slots(1);
    let lab = acme();
    let start = || {
        metalab(lab.path(), &["run", "router"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let second = start();
    let outs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let shown: Vec<String> = outs.iter().map(text).collect();
    for (o, s) in outs.iter().zip(&shown) {
        assert_eq!(o.status.code(), Some(0), "{s}");
    }
    assert!(
        shown
            .iter()
            .any(|s| s.contains("waiting for subnet 192.168.60.0/24")),
        "neither run waited for the lab's subnet:\n{}",
        shown.join("\n----\n")
    );
    let ids: Vec<String> = shown
        .iter()
        .map(|s| {
            let at = s.find("metalab run ").unwrap() + "metalab run ".len();
            s[at..at + 20].to_string()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(leftovers(id, lab.path()), Vec::<String>::new());
    }
}

#[test]
fn a_failing_provisioner_fails_the_run_as_the_labs_failure_and_destroys_everything() {
    let _slots = vm_slots(1);
    let lab = acme();
    let script = lab.path().join("provision/router.sh");
    let broken =
        std::fs::read_to_string(&script).unwrap() + "echo 'no route to the NOC' >&2\nexit 3\n";
    std::fs::write(&script, broken).unwrap();
    let out = metalab(lab.path(), &["run", "router"]).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let results = results(lab.path());
    let provision = phase(&results, "provision").expect("a provision phase");
    assert!(
        provision["error"]
            .as_str()
            .unwrap()
            .contains("vagrant provision failed"),
        "{provision}"
    );
    let tests = results["suites"][0]["tests"].as_array().unwrap();
    assert!(tests.iter().all(|t| t["outcome"] == "skipped"), "{results}");
    let junit = std::fs::read_to_string(lab.path().join("artifacts/latest/junit.xml")).unwrap();
    let case = junit
        .split("<testcase ")
        .find(|c| c.starts_with(r#"name="provision""#))
        .unwrap();
    assert!(
        case.contains("<failure") && !case.contains("<error"),
        "{case}"
    );
    assert_eq!(
        leftovers(&run_id(&results), lab.path()),
        Vec::<String>::new()
    );
}
