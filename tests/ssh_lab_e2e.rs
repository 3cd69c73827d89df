//! The lab on a "remote" host over SSH: a real OpenSSH server on loopback stands for the remote
//! machine, with its own host key, a client key made by the test, and its own metalab state
//! directory, so the box is shipped and the lab synced as to any remote host. The VMs are
//! reached by jumping through that connection. Two such hosts share a run's suites; a wrong host
//! key starts nothing; a dropped connection is an infrastructure error and the VMs still go.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::relay::Relay;
use common::sshd::Sshd;
use common::{ScratchLab, leftovers, repo, text, vm_slot, vm_slots};

/// The remote host's metalab state directory: not the local one, so nothing is shared by
/// accident.
const REMOTE_HOME: &str = "/var/lib/metalab-remote";
/// The second inventory host's, in the test with two hosts.
const REMOTE_HOME_B: &str = "/var/lib/metalab-remote-b";

fn ssh_config(port: u16, sshd: &Sshd, known_hosts: &Path) -> String {
    format!(
        "[vm]\nmemory = 640\n\n[provider]\nkind = \"ssh\"\n{}",
        sshd.inventory_host("loopback", port, known_hosts, REMOTE_HOME)
    )
}

/// A lab whose suites are the repository's own.
fn lab_with_bundled_suites(config: &str) -> ScratchLab {
    let lab = ScratchLab::new(config, &[]);
    std::fs::remove_dir(lab.path().join("suites")).unwrap();
    std::os::unix::fs::symlink(repo().join("suites"), lab.path().join("suites")).unwrap();
    lab
}

#[test]
fn a_host_key_that_does_not_match_known_hosts_is_refused() {
    let sshd = Sshd::start();
    let other = Sshd::start();
    // known_hosts lists another server's key for this address.
    let wrong = other.known_hosts(sshd.port);
    let lab = lab_with_bundled_suites(&ssh_config(sshd.port, &sshd, &wrong));
    let out = lab.metalab(&["run"]).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(shown.contains("HOST KEY CHANGED"), "{shown}");
    assert!(!shown.contains("vagrant up"), "a VM was started: {shown}");
}

#[test]
fn a_dropped_connection_mid_test_is_an_infrastructure_error_and_the_vms_still_go() {
    let _slot = vm_slots(1);
    let sshd = Sshd::start();
    let relay = Relay::start(sshd.port);
    let known = sshd.known_hosts(relay.port);
    let suite = "vms = [\"node1\"]\n[[test]]\nname = \"long\"\nrun = \"sleep 120\"\n";
    let lab = ScratchLab::new(&ssh_config(relay.port, &sshd, &known), &[("hold", suite)]);
    let mut child = lab
        .metalab(&["run"])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("test     hold/long started") {
            relay.cut();
        }
    }
    let status = child.wait().unwrap();
    let shown = seen.join("\n");
    assert_eq!(status.code(), Some(3), "{shown}");
    let results = lab.results();
    let test = &results["suites"][0]["tests"][0];
    assert_eq!(test["outcome"], "error", "{test}");
    assert_eq!(test["infra"], true);
    let run_id = results["run_id"].as_str().unwrap();
    assert_eq!(
        leftovers(run_id, lab.path()),
        Vec::<String>::new(),
        "{shown}"
    );
}

#[test]
fn suites_are_spread_over_two_inventory_hosts_and_merged_into_one_report() {
    let _slot = vm_slot();
    let sshd = Sshd::start();
    let known = sshd.known_hosts(sshd.port);
    // Two inventory hosts, each with room for one VM: the same sshd under two names and state
    // directories, which is all that tells two machines apart to metalab.
    let second = sshd.inventory_host("second", sshd.port, &known, REMOTE_HOME_B);
    let config = format!(
        "{}{second}\n[capacity]\nvms = 1\n",
        ssh_config(sshd.port, &sshd, &known)
    );
    let lab = ScratchLab::new(&config, &[]);
    let suites = lab.path().join("suites");
    for (from, to) in [("lib", "lib"), ("policy", "policy"), ("policy", "policy-b")] {
        copy_dir(&repo().join("suites").join(from), &suites.join(to));
    }
    let out = lab.metalab(&["run"]).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let results = lab.results();
    assert_eq!(results["host"], "ssh: loopback, second");
    // One report with both suites, each run on a host of its own.
    let mut suites: Vec<&str> = results["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    suites.sort(); // in the order they finished
    assert_eq!(suites, ["policy", "policy-b"], "{shown}");
    // Each suite's logs came back from its VM through its host.
    for suite in ["policy", "policy-b"] {
        assert!(
            lab.path()
                .join(format!("artifacts/latest/{suite}/denied-port-dropped.log"))
                .is_file()
        );
    }
    // Room for one VM per host: the two lanes can only have gone one to each host.
    for host in ["loopback", "second"] {
        let on_host = format!(" on {host}");
        assert!(
            shown
                .lines()
                .any(|l| l.contains("1 VM(s) of ") && l.ends_with(&on_host)),
            "no lane on {host}: {shown}"
        );
    }
    for home in [REMOTE_HOME, REMOTE_HOME_B] {
        assert!(
            shown.contains(&format!("lab synced to {home}/labs/")),
            "{home}: {shown}"
        );
    }
    let junit = lab.junit();
    assert!(
        junit.contains(r#"<testsuite name="policy""#)
            && junit.contains(r#"<testsuite name="policy-b""#)
    );
    let run_id = results["run_id"].as_str().unwrap();
    assert_eq!(
        leftovers(run_id, Path::new(REMOTE_HOME)),
        Vec::<String>::new()
    );
    assert_eq!(
        leftovers(run_id, Path::new(REMOTE_HOME_B)),
        Vec::<String>::new()
    );
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}
