//! End to end with real VMs: `metalab run` on real Vagrant + libvirt + QEMU. Few and purposeful,
//! because each one boots VMs: the bundled suites pass, a broken test fails the run, suites share
//! the host side by side, and the developer's loop (where every round starts from the pristine
//! snapshot: no file, namespace, nftables table, container or stale clock of the round before).
//! After every one of them, no libvirt domain, network or volume of the run is left. Signals,
//! SIGKILL and reap are covered by scripts/fault-injection.

mod common;

use common::{CONFIG, ScratchLab, leftovers, repo, text, vm_slot, vm_slots};

fn run_id_of(results: &serde_json::Value) -> String {
    results["run_id"].as_str().unwrap().to_string()
}

#[test]
fn the_bundled_suites_pass_in_real_vms_and_nothing_is_left() {
    let _slot = vm_slot();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_metalab"))
        .arg("run")
        .current_dir(repo())
        .env("CI", "true")
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("artifacts/latest/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(results["status"], "passed");
    let tests: Vec<&serde_json::Value> = results["suites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tests"].as_array().unwrap())
        .collect();
    assert!(tests.len() >= 10, "{tests:?}");
    assert!(tests.iter().all(|t| t["outcome"] == "passed"));
    let bench = &results["suites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "throughput")
        .unwrap()["benchmarks"][0];
    let samples = bench["metrics"][0]["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 5);
    assert!(
        samples.iter().all(|v| v.as_f64().unwrap() > 0.01),
        "{samples:?}"
    );
    // The containers suite ran Docker containers from the image built offline, and measured
    // the runtime's networking.
    let containers = results["suites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "containers")
        .unwrap();
    assert_eq!(
        containers["tests"].as_array().unwrap().len(),
        7,
        "{containers}"
    );
    for bench in containers["benchmarks"].as_array().unwrap() {
        let samples = bench["metrics"][0]["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 3, "{bench}");
        assert!(samples.iter().all(|v| v.as_f64().unwrap() > 0.0), "{bench}");
    }
    let loaded = std::fs::read_to_string(repo().join(format!(
        "artifacts/{}/containers/images.log",
        run_id_of(&results)
    )))
    .unwrap();
    assert!(
        loaded.contains("loading image netbox into node2"),
        "{loaded}"
    );
    assert_eq!(results["images"][0]["name"], "netbox", "{results}");
    // Its VMs' setups ran side by side, each to a log of its own.
    for vm in ["node1", "node2"] {
        let setup = repo().join(format!(
            "artifacts/{}/containers/setup-{vm}.log",
            run_id_of(&results)
        ));
        assert!(setup.is_file(), "{}", setup.display());
    }
    assert_eq!(results["box"]["sha256"].as_str().unwrap().len(), 64);
    let junit = std::fs::read_to_string(repo().join("artifacts/latest/junit.xml")).unwrap();
    assert!(
        junit.contains(r#"<testcase name="denied-port-dropped" classname="policy""#),
        "{junit}"
    );
    assert!(junit.contains(r#"<testcase name="up" classname="lifecycle""#));
    assert_eq!(
        common::junit_schema::violations(&junit),
        Vec::<String>::new()
    );
    assert!(junit.contains(r#"<testcase name="destroy" classname="lifecycle""#));
    assert!(
        shown.contains("metalab run") && shown.contains("PASSED (exit 0)"),
        "{shown}"
    );
    assert_eq!(
        leftovers(&run_id_of(&results), &repo()),
        Vec::<String>::new()
    );
}

const BROKEN: &str = r#"
vms = ["node1"]

[[test]]
name = "passes"
run = "ping -c 1 -W 2 127.0.0.1"
expect = { output = " 0% packet loss" }

[[test]]
name = "broken"
run = "ping -c 1 -W 1 10.255.255.1"
expect = { output = " 0% packet loss" }

[[test]]
name = "hangs"
run = "sleep 300"
timeout = "3s"

[[test]]
name = "hang-was-killed"
# The bracket keeps pgrep from matching this very command line.
run = "sleep 1; if pgrep -af 'slee[p] 300'; then exit 1; fi"

[[test]]
name = "fails-once"
run = "test -e /tmp/tried || { touch /tmp/tried; exit 1; }"
retries = 1
"#;

#[test]
fn a_broken_test_fails_the_run_and_the_vms_are_still_destroyed() {
    let _slot = vm_slots(1);
    let lab = ScratchLab::new(CONFIG, &[("broken", BROKEN)]);
    let out = lab
        .metalab(&["run", "--keep-on-failure=3s"])
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let results = lab.results();
    let run_id = run_id_of(&results);
    // The failed run's VMs were kept for debugging: reachable, then reaped once expired.
    assert!(
        shown.contains(&format!("metalab exec --run {run_id} node1")),
        "{shown}"
    );
    let kept = lab
        .metalab(&["exec", "--run", &run_id, "node1", "--", "hostname"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&kept.stdout).trim(),
        "node1",
        "{}",
        text(&kept)
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    // Expired: `metalab reap` removes them (or another test's run did, before it started).
    let reap = lab.metalab(&["reap"]).output().unwrap();
    assert_eq!(reap.status.code(), Some(0), "{}", text(&reap));
    assert_eq!(
        leftovers(&run_id, lab.path()),
        Vec::<String>::new(),
        "{}",
        text(&reap)
    );
    let outcome = |name: &str| {
        results["suites"][0]["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["outcome"]
            .clone()
    };
    assert_eq!(outcome("passes"), "passed");
    assert_eq!(outcome("broken"), "failed");
    assert_eq!(outcome("hangs"), "timed_out");
    assert_eq!(
        outcome("hang-was-killed"),
        "passed",
        "the timed-out command survived its timeout"
    );
    let junit = lab.junit();
    assert!(
        junit.contains(r#"<failure message="expected exit 0, got exit 1"#),
        "{junit}"
    );
    assert!(junit.contains(r#"type="timeout""#), "{junit}");
    assert!(shown.contains("FAILED (exit 1)"), "{shown}");
    assert_eq!(
        leftovers(&run_id_of(&results), lab.path()),
        Vec::<String>::new()
    );
}

/// Leaves a file, a network namespace, an nftables table and a Docker container behind.
const MARKS: &str = r#"
vms = ["node1"]
images = ["netbox"]
[[test]]
name = "mark"
run = "touch /root/marker && ip netns add leftover && nft add table inet leftover && docker run -d --name leftover netbox sleep 3600"
"#;

/// Passes only on a VM that has none of what `MARKS` leaves, and whose clock is now (a VM put
/// back to a snapshot resumes with the clock of the moment it was taken).
const CLEAN: &str = r#"
vms = ["node1"]
[[test]]
name = "no-marker"
run = "test ! -e /root/marker && echo round-1"
[[test]]
name = "no-namespace"
run = "! ip netns list | grep -q leftover"
[[test]]
name = "no-nft-table"
run = "! nft list tables | grep -q leftover"
[[test]]
name = "no-container"
run = "test -z \"$(ls -A /var/lib/docker/containers 2>/dev/null)\""
[[test]]
name = "clock-is-now"
run = "test $(( $(date +%s) - METALAB_NOW )) -lt 120 -a $(( METALAB_NOW - $(date +%s) )) -lt 120"
"#;

/// `CLEAN`, with the host's clock of now (to be written just before the round that runs it).
fn clean_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    CLEAN.replace("METALAB_NOW", &now.to_string())
}

/// Destroys a kept lab when dropped, so that a failed assertion leaves no VM behind (after a
/// `metalab destroy` that already ran, it finds nothing to do).
struct DestroyOnDrop<'a>(&'a ScratchLab, String);

impl Drop for DestroyOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.metalab(&["destroy", "--run", &self.1]).output();
    }
}

/// The address `metalab status --json` gives for SSH to the first VM of its first kept lab.
fn ssh_host(status: &std::process::Output) -> String {
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let address = status["labs"][0]["vms"][0]["address"].as_str().unwrap();
    let host = address.split_once('@').map_or(address, |(_, h)| h);
    host.rsplit_once(':').map_or(host, |(h, _)| h).to_string()
}

/// An OpenSSH login to `host` as vagrant with Vagrant's public insecure key, as anyone on the
/// host (or another run's VM) could try.
fn with_the_insecure_key(host: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("insecure");
    let shipped = std::fs::read_dir("/usr/share/rubygems-integration/all/gems")
        .unwrap()
        .map(|e| e.unwrap().path().join("keys/vagrant"))
        .find(|p| p.is_file())
        .expect("the vagrant package ships its insecure key");
    std::fs::copy(shipped, &key).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::process::Command::new("ssh")
        .args(["-i"])
        .arg(&key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=20",
            &format!("vagrant@{host}"),
            "true",
        ])
        .output()
        .unwrap()
}

/// The developer's loop, as Test Kitchen users know it: `up` once, then suites on the kept VMs
/// again and again (each round from the pristine snapshot, with the suites as they are edited),
/// a shell and commands in a VM, the lab's status, and `destroy` at the end.
#[test]
fn the_developer_loop_up_run_on_login_exec_status_destroy() {
    let _slot = vm_slots(1);
    let lab = ScratchLab::new(CONFIG, &[("marks", MARKS), ("clean", &clean_now())]);
    let up = lab.metalab(&["up", "marks"]).output().unwrap();
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    let run_id = run_id_of(&lab.results());
    let _destroyed_whatever_happens = DestroyOnDrop(&lab, run_id.clone());
    assert!(
        text(&up).contains(&format!("metalab run --on {run_id}")),
        "{}",
        text(&up)
    );
    let on = |args: &[&str]| {
        let mut full = vec!["run", "--on", &run_id];
        full.extend_from_slice(args);
        lab.metalab(&full).output().unwrap()
    };
    // A round leaves markers; the next one starts from the snapshot and sees none of them.
    let marked = on(&["marks"]);
    assert_eq!(marked.status.code(), Some(0), "{}", text(&marked));
    // The clock check compares with the host's clock of now: the suite is written afresh.
    lab.write("suites/clean/suite.toml", &clean_now());
    let clean = on(&["clean"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert_ne!(
        run_id_of(&lab.results()),
        run_id,
        "a round has an id of its own"
    );
    // Without the revert, the markers of the round before are still there.
    assert_eq!(on(&["--no-revert", "marks"]).status.code(), Some(0));
    lab.write("suites/clean/suite.toml", &clean_now());
    let dirty = on(&["--no-revert", "clean"]);
    assert_eq!(dirty.status.code(), Some(1), "{}", text(&dirty));
    let dirty = lab.results();
    for marker in ["no-marker", "no-namespace", "no-nft-table", "no-container"] {
        let test = dirty["suites"][0]["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == marker)
            .unwrap();
        assert_eq!(test["outcome"], "failed", "{marker}: {dirty}");
    }
    // The suites are copied in afresh each round: an edit shows at once.
    lab.write(
        "suites/clean/suite.toml",
        &clean_now().replace("round-1", "round-2"),
    );
    let edited = on(&["clean"]);
    assert_eq!(edited.status.code(), Some(0), "{}", text(&edited));
    let log =
        std::fs::read_to_string(lab.path().join("artifacts/latest/clean/no-marker.log")).unwrap();
    assert!(log.contains("round-2"), "{log}");

    let exec = |args: &[&str]| {
        let mut full = vec!["exec", "--run", &run_id];
        full.extend_from_slice(args);
        lab.metalab(&full).output().unwrap()
    };
    let hostname = exec(&["node1", "--", "hostname"]);
    let root = exec(&["--sudo", "node1", "--", "id", "-u"]);
    let code = exec(&["node1", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    let missing = exec(&["node2", "--", "true"]);
    let no_command = exec(&["node1"]);
    let mut login = lab
        .metalab(&["login", "--run", &run_id, "node1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    login
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo \"logged in to $(hostname)\"; exit 3\n")
        .unwrap();
    let login = login.wait_with_output().unwrap();
    let status = lab.metalab(&["status", "--json"]).output().unwrap();
    // Only the run gets in: its own key and no other, no password.
    let keys = exec(&["node1", "--", "cat", ".ssh/authorized_keys"]);
    let sshd = exec(&["--sudo", "node1", "--", "sshd", "-T"]);
    let password = exec(&["--sudo", "node1", "--", "passwd", "-S", "vagrant"]);
    let insecure = with_the_insecure_key(&ssh_host(&status));
    let destroy = lab
        .metalab(&["destroy", "--run", &run_id])
        .output()
        .unwrap();
    let left = leftovers(&run_id, lab.path());

    assert_eq!(
        String::from_utf8_lossy(&hostname.stdout).trim(),
        "node1",
        "{}",
        text(&hostname)
    );
    assert_eq!(String::from_utf8_lossy(&root.stdout).trim(), "0");
    assert_eq!(code.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&code.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&code.stderr), "err\n");
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert_eq!(no_command.status.code(), Some(2), "{}", text(&no_command));
    assert!(text(&no_command).contains("metalab login node1"));
    assert!(
        String::from_utf8_lossy(&login.stdout).contains("logged in to node1"),
        "{}",
        text(&login)
    );
    assert_eq!(login.status.code(), Some(3), "{}", text(&login));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let kept = status["labs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["run_id"] == run_id.as_str())
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(kept["vms"][0]["name"], "node1");
    assert_eq!(kept["vms"][0]["state"], "running", "{status}");
    let keys = String::from_utf8_lossy(&keys.stdout).into_owned();
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(keys.ends_with(" metalab-run\n"), "{keys}");
    assert!(
        String::from_utf8_lossy(&sshd.stdout).contains("\npasswordauthentication no\n"),
        "{}",
        text(&sshd)
    );
    assert!(
        String::from_utf8_lossy(&password.stdout).starts_with("vagrant L "),
        "{}",
        text(&password)
    );
    assert_eq!(insecure.status.code(), Some(255), "{}", text(&insecure));
    assert!(
        text(&insecure).contains("Permission denied (publickey)"),
        "{}",
        text(&insecure)
    );
    // The VM's host key was known from its console before metalab first connected.
    let connect = std::fs::read_to_string(
        lab.path()
            .join(format!("artifacts/{run_id}/lifecycle/connect.log")),
    )
    .unwrap();
    assert!(
        connect.contains("node1: host key from its console: ssh-ed25519 "),
        "{connect}"
    );
    assert_eq!(destroy.status.code(), Some(0), "{}", text(&destroy));
    assert_eq!(left, Vec::<String>::new());
}

/// A suite whose one test notes when it ran, in seconds since the epoch.
/// What a run says when it retries a lane with fresh VMs.
const RETRIED: &str = "retrying with fresh VMs";

fn timed_suite(name: &str) -> String {
    format!(
        "vms = [\"node1\"]\n[[test]]\nname = \"{name}-window\"\nrun = \"date +%s; sleep 20; date +%s\"\n"
    )
}

/// The (start, end) a timed suite's test printed in its log.
fn window(lab: &ScratchLab, suite: &str) -> (u64, u64) {
    let log = std::fs::read_to_string(
        lab.path()
            .join(format!("artifacts/latest/{suite}/{suite}-window.log")),
    )
    .unwrap();
    let stamps: Vec<u64> = log.lines().filter_map(|l| l.trim().parse().ok()).collect();
    (stamps[0], stamps[1])
}

#[test]
fn two_single_vm_suites_run_side_by_side_on_their_own_vms() {
    let _slot = vm_slot();
    let lab = ScratchLab::new(
        CONFIG,
        &[
            ("left", &timed_suite("left")),
            ("right", &timed_suite("right")),
        ],
    );
    // A lane that lost its VM before any suite is retried with fresh ones, rightly, but then
    // starts late: the overlap proves nothing either way, so such a run is tried once more.
    let mut out = lab.metalab(&["run"]).output().unwrap();
    if text(&out).contains(RETRIED) {
        eprintln!(
            "a lane was retried, which shifts it in time; running again:\n{}",
            text(&out)
        );
        out = lab.metalab(&["run"]).output().unwrap();
    }
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(!shown.contains(RETRIED), "retried twice: {shown}");
    let (l, r) = (window(&lab, "left"), window(&lab, "right"));
    assert!(
        l.0 < r.1 && r.0 < l.1,
        "the suites did not overlap: {l:?} {r:?}\n{shown}"
    );
    let results = lab.results();
    let scopes: Vec<&str> = results["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes.len(), 2, "{scopes:?}");
    assert_ne!(scopes[0], scopes[1], "both VMs in one lane");
    let junit = lab.junit();
    assert!(
        junit.contains(r#"<testsuite name="left""#) && junit.contains(r#"<testsuite name="right""#)
    );
    assert_eq!(
        leftovers(&run_id_of(&results), lab.path()),
        Vec::<String>::new()
    );
}
