//! `metalab run` with the ec2 provider, end to end: moto (behind the tests' proxy) launches the
//! "instance", a real sshd on loopback is that instance, with the host key its user data gives,
//! and from there the very same pipeline as for any remote host: prepare, box, Vagrant, suites,
//! terminate. Credentials come from the environment, as the AWS chain reads them.

mod common;

use common::ec2::{Ec2Api, SECRET_ACCESS_KEY};
use common::sshd::free_port;
use common::{ScratchLab, files_containing, leftovers, repo, text, vm_slots};

/// The instance's state directory: on this machine, as the tests' sshd "instance" is.
const REMOTE_HOME: &str = "/var/lib/metalab-remote";

/// Not the SDK's default region: the setting is what reaches EC2.
const REGION: &str = "eu-central-1";

struct World {
    api: Ec2Api,
    runtime: tokio::runtime::Runtime,
    /// An empty AWS config and credentials file: nothing of this machine's is read.
    aws_files: tempfile::TempDir,
    /// A state directory of the test's own (`METALAB_HOME`), when it has one: its `metalab
    /// reap` then judges only its own runs, never those of tests running beside it.
    home: Option<tempfile::TempDir>,
}

fn world() -> (World, u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ssh_port = free_port();
    let api = runtime.block_on(Ec2Api::start(ssh_port));
    let aws_files = tempfile::tempdir().unwrap();
    std::fs::write(aws_files.path().join("config"), "").unwrap();
    std::fs::write(aws_files.path().join("credentials"), "").unwrap();
    (
        World {
            api,
            runtime,
            aws_files,
            home: None,
        },
        ssh_port,
    )
}

fn lab(w: &World, ssh_port: u16) -> ScratchLab {
    let config = format!(
        r#"
[vm]
memory = 640

[provider]
kind = "ec2"

[provider.ec2]
region = "{REGION}"
instance_types = ["c5.metal", "m5.metal"]
image = "ami-0d1e2b3a4c5f60718"
endpoint_url = "{}"
ssh_port = {ssh_port}
ssh_from = ["127.0.0.1/32"]
poll = "500ms"
ttl = "1h"
home = "{REMOTE_HOME}"
"#,
        w.api.url
    );
    let lab = ScratchLab::new(&config, &[("hold", HOLD)]);
    // Copies: the lab is synced to the instance, and links are not.
    for suite in ["policy", "lib"] {
        let copied = std::process::Command::new("cp")
            .arg("-r")
            .arg(repo().join("suites").join(suite))
            .arg(lab.path().join("suites"))
            .status()
            .unwrap();
        assert!(copied.success());
    }
    lab
}

/// A suite whose one test holds its VM until the run is stopped.
const HOLD: &str = "vms = [\"node1\"]\n[[test]]\nname = \"long\"\nrun = \"sleep 600\"\n";

/// `metalab ARGS` with credentials of `key_id` in the environment, and nothing else of AWS's.
fn metalab(w: &World, lab: &ScratchLab, key_id: &str, args: &[&str]) -> std::process::Output {
    command(w, lab, key_id, args).output().unwrap()
}

fn command(w: &World, lab: &ScratchLab, key_id: &str, args: &[&str]) -> std::process::Command {
    let mut c = lab.metalab(args);
    c.env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", w.aws_files.path().join("config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            w.aws_files.path().join("credentials"),
        )
        .env_remove("AWS_PROFILE");
    if let Some(home) = &w.home {
        c.env("METALAB_HOME", home.path());
    }
    c
}

/// What moto holds of `run`: instances not terminated, key pairs and security groups.
fn left_in_moto(w: &World, run: &str) -> Vec<String> {
    w.runtime.block_on(async {
        let moto = w.api.moto_client(REGION).await;
        let mut left = Vec::new();
        let name = format!("metalab-{run}");
        let instances = moto.describe_instances().send().await.unwrap();
        for i in instances.reservations().iter().flat_map(|r| r.instances()) {
            let live = i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated");
            let ours = i
                .tags()
                .iter()
                .any(|t| t.key() == Some("metalab:run") && t.value() == Some(run));
            if live && ours {
                left.push(format!("instance {:?}", i.instance_id()));
            }
        }
        let keys = moto.describe_key_pairs().send().await.unwrap();
        left.extend(
            keys.key_pairs()
                .iter()
                .filter(|k| k.key_name() == Some(&name))
                .map(|k| format!("key pair {:?}", k.key_name())),
        );
        let groups = moto.describe_security_groups().send().await.unwrap();
        left.extend(
            groups
                .security_groups()
                .iter()
                .filter(|g| g.group_name() == Some(&name))
                .map(|g| format!("security group {:?}", g.group_id())),
        );
        left
    })
}

#[test]
fn a_run_on_an_ec2_instance_falls_back_runs_the_suite_and_terminates_everything() {
    // The policy suite: one VM.
    let _slot = vm_slots(1);
    let (w, ssh_port) = world();
    w.api
        .faults()
        .no_capacity
        .insert("c5.metal".into(), "InsufficientInstanceCapacity");
    let lab = lab(&w, ssh_port);
    let out = metalab(&w, &lab, "AKIDE2ETESTKEY", &["run", "policy"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("skipping c5.metal in the default VPC: InsufficientInstanceCapacity"),
        "{shown}"
    );
    let launches = w.api.launches();
    assert_eq!(launches.len(), 1);
    assert_eq!(launches[0].instance_type, "m5.metal");

    let run_id = lab.results()["run_id"].as_str().unwrap().to_string();
    assert_eq!(left_in_moto(&w, &run_id), Vec::<String>::new());
    assert!(!shown.contains(SECRET_ACCESS_KEY), "the secret was printed");
    assert_eq!(
        files_containing(lab.path(), SECRET_ACCESS_KEY),
        Vec::<String>::new()
    );
    let run_state = std::path::PathBuf::from("/var/lib/metalab/runs").join(&run_id);
    assert_eq!(
        files_containing(&run_state, SECRET_ACCESS_KEY),
        Vec::<String>::new()
    );
    assert!(
        !run_state.join("ec2/id_ed25519").exists(),
        "the run's private key is left"
    );
    assert_eq!(leftovers(&run_id, lab.path()), Vec::<String>::new());
}

#[test]
fn refused_credentials_exit_2_say_so_and_are_never_printed() {
    let (w, ssh_port) = world();
    w.api.faults().refused_key_id = Some("AKIDREFUSEDE2E".into());
    let lab = lab(&w, ssh_port);
    let out = metalab(&w, &lab, "AKIDREFUSEDE2E", &["run", "policy"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("AuthFailure"), "{shown}");
    assert!(!shown.contains(SECRET_ACCESS_KEY), "{shown}");
    assert_eq!(
        files_containing(lab.path(), SECRET_ACCESS_KEY),
        Vec::<String>::new()
    );
    assert!(w.api.launches().is_empty());
}

#[test]
fn no_credentials_anywhere_exit_2_and_nothing_is_asked_of_ec2() {
    let (w, ssh_port) = world();
    let lab = lab(&w, ssh_port);
    // The standard chain with nothing to find: no variables, empty files, no instance role.
    let out = command(&w, &lab, "unused", &["run", "policy"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("no AWS credentials were found"), "{shown}");
    assert!(
        shown.contains("AWS_PROFILE"),
        "the way to give them: {shown}"
    );
    assert_eq!(w.api.seen(), "", "a request went out: {shown}");
}

/// Where a run is interrupted, as the proxy and the run's output show it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    KeyPairImported,
    GroupCreated,
    Launched,
    WaitingForSsh,
    Preparing,
    VmsBooting,
    SuiteRunning,
    /// Releasing the hosts of a run that failed (its instance never answered SSH), while the
    /// instance is shutting down.
    Releasing,
}

/// The phases a run reaches without a VM.
const HOST_PHASES: [Phase; 6] = [
    Phase::KeyPairImported,
    Phase::GroupCreated,
    Phase::Launched,
    Phase::WaitingForSsh,
    Phase::Preparing,
    Phase::Releasing,
];

/// The phases with a VM on the instance.
const VM_PHASES: [Phase; 2] = [Phase::VmsBooting, Phase::SuiteRunning];

/// How long an instance takes to terminate in the `Releasing` world.
const TERMINATION: std::time::Duration = std::time::Duration::from_secs(4);

impl Phase {
    fn reached(self, api: &Ec2Api, said: &str) -> bool {
        match self {
            Phase::KeyPairImported => api.calls("ImportKeyPair") > 0,
            Phase::GroupCreated => api.calls("AuthorizeSecurityGroupIngress") > 0,
            Phase::Launched => !api.launches().is_empty(),
            Phase::WaitingForSsh => said.contains("waiting for SSH"),
            Phase::Preparing => said.contains(" prepare "),
            Phase::VmsBooting => said.contains("vagrant up node1"),
            Phase::SuiteRunning => said.contains("hold/long started"),
            Phase::Releasing => api.calls("TerminateInstances") > 0,
        }
    }

    /// How long after reaching the phase the signal comes: a VM boots for a while first, so
    /// that its domain, disks and network exist.
    fn settle(self) -> std::time::Duration {
        match self {
            Phase::VmsBooting => std::time::Duration::from_secs(15),
            _ => std::time::Duration::ZERO,
        }
    }

    /// The stages that must not begin once the run is stopped in this phase.
    fn later_stages(self) -> &'static [&'static str] {
        match self {
            Phase::VmsBooting => &["connect", "test"],
            Phase::SuiteRunning | Phase::Releasing => &[],
            _ => &["box", "up", "connect", "test"],
        }
    }

    /// The suite the run is given.
    fn suite(self) -> &'static str {
        match self {
            Phase::VmsBooting | Phase::SuiteRunning => "hold",
            _ => "policy",
        }
    }
}

/// A world whose run reaches `phase` and stays there long enough to be interrupted in it.
fn world_for(phase: Phase) -> (World, ScratchLab) {
    let (mut w, ssh_port) = world();
    let home = tempfile::tempdir().unwrap();
    if VM_PHASES.contains(&phase) {
        sharing_the_box(home.path());
    }
    w.home = Some(home);
    // An instance that never answers SSH keeps the run waiting for it, or, once it gives up,
    // releasing it.
    w.api.faults().silent_instance = matches!(phase, Phase::WaitingForSsh | Phase::Releasing);
    if phase == Phase::Releasing {
        w.api.faults().slow_termination = Some(TERMINATION);
    }
    let lab = lab(&w, ssh_port);
    if phase == Phase::Releasing {
        lab.write(
            "metalab.toml",
            &std::fs::read_to_string(lab.path().join("metalab.toml"))
                .unwrap()
                .replace("ttl = \"1h\"", "ttl = \"1h\"\nssh_timeout = \"2s\""),
        );
    }
    (w, lab)
}

/// A state directory that shares the box (and the lock its build takes) with the default one:
/// its own, it would build one of its own, for minutes.
fn sharing_the_box(home: &std::path::Path) {
    for dir in ["boxes", "locks", "cache"] {
        let shared = std::path::Path::new("/var/lib/metalab").join(dir);
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::symlink(&shared, home.join(dir)).unwrap();
    }
}

/// Starts `metalab run`, sends `signal` once the run has reached `phase`, and answers its exit
/// code, its output and its run id.
fn interrupted(
    w: &World,
    lab: &ScratchLab,
    phase: Phase,
    signal: nix::sys::signal::Signal,
) -> (Option<i32>, String, String) {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let mut child = command(w, lab, "AKIDE2ETESTKEY", &["run", phase.suite()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let said = Arc::new(Mutex::new(String::new()));
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|mut pipe| {
            let said = said.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    said.lock().unwrap().push_str(&text);
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    while !phase.reached(&w.api, &said.lock().unwrap()) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "{phase:?} not reached: {}",
            said.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(phase.settle());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let said = said.lock().unwrap().clone();
    let run = said
        .split("metalab run ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .expect("the run said its id")
        .to_string();
    (status.code(), said, run)
}

/// The run's private key file, in the state directory the world's metalab uses.
fn private_key(w: &World, run: &str) -> std::path::PathBuf {
    let home = w
        .home
        .as_ref()
        .map_or("/var/lib/metalab".into(), |h| h.path().to_path_buf());
    home.join("runs").join(run).join("ec2/id_ed25519")
}

/// SIGTERM at `phase`: the run stops there, and has destroyed its VMs and released everything
/// of EC2's before it exits 143.
fn sigterm_releases_everything(phase: Phase) {
    let (w, lab) = world_for(phase);
    let (code, said, run) = interrupted(&w, &lab, phase, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(code, Some(143), "{phase:?}: {said}");
    // Stopped means stopped: no later phase begins once the signal is in.
    let after = &said[said
        .find("received SIGTERM")
        .expect("the signal is announced")..];
    for stage in phase.later_stages() {
        assert!(
            !after
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(stage)),
            "{phase:?}: {stage} after the signal: {said}"
        );
    }
    assert_eq!(
        left_in_moto(&w, &run),
        Vec::<String>::new(),
        "{phase:?}: {said}"
    );
    assert!(
        !private_key(&w, &run).exists(),
        "{phase:?}: the private key is left"
    );
    assert_eq!(
        leftovers(&run, lab.path()),
        Vec::<String>::new(),
        "{phase:?}: {said}"
    );
}

/// What terminating the instance does to what the run left on its disk: Vagrant's index there
/// goes too. Here the instance's disk is this machine's `/var/lib/metalab-remote`, and Vagrant's
/// housekeeping there forgets the run's entries (with those of any other run that is over).
fn instance_terminated(run: &str) {
    let home = std::path::Path::new(REMOTE_HOME);
    let left = common::indexed_machines(home, run, std::path::Path::new("/nonexistent"));
    if left.is_empty() {
        return;
    }
    let pruned = std::process::Command::new("vagrant")
        .args(["global-status", "--prune"])
        .env("VAGRANT_HOME", home.join("vagrant.d"))
        .env("METALAB_LAB_VAGRANTFILE", "/dev/null")
        .output()
        .unwrap();
    assert!(pruned.status.success(), "{}", text(&pruned));
}

/// SIGKILL at `phase`: what the run made stays, and `metalab reap` removes it all, the run's
/// private key with its key pair.
fn sigkill_then_reap_removes_everything(phase: Phase) {
    let (w, lab) = world_for(phase);
    let (code, said, run) = interrupted(&w, &lab, phase, nix::sys::signal::Signal::SIGKILL);
    assert_eq!(code, None, "{phase:?}: killed");
    w.api.settled();
    if phase == Phase::Releasing {
        // The instance the run was terminating finishes terminating without it.
        std::thread::sleep(TERMINATION);
    }
    let left = left_in_moto(&w, &run);
    if phase == Phase::Launched {
        assert_eq!(left.len(), 3, "an instance, a key pair, a group: {left:?}");
        let hosts = metalab(&w, &lab, "AKIDE2ETESTKEY", &["hosts"]);
        let shown = text(&hosts);
        assert_eq!(hosts.status.code(), Some(0), "{shown}");
        assert!(
            shown.contains(&format!("metalab-{run}-1")) && shown.contains("c5.metal"),
            "{shown}"
        );
        let dry = metalab(&w, &lab, "AKIDE2ETESTKEY", &["reap", "--dry-run"]);
        let shown = text(&dry);
        assert_eq!(dry.status.code(), Some(0), "{shown}");
        assert_eq!(shown.matches("would remove").count(), 3, "{shown}");
        assert_eq!(left_in_moto(&w, &run).len(), 3, "a dry run removes nothing");
    }
    if phase == Phase::Releasing {
        assert_eq!(left.len(), 2, "the key pair and the group: {left:?}");
    }
    // On AWS a VM goes with its instance; here the instance is this machine, whose VMs `metalab
    // reap` removes as it does any dead run's.
    let reap = metalab(&w, &lab, "AKIDE2ETESTKEY", &["reap"]);
    instance_terminated(&run);
    let shown = text(&reap);
    assert_eq!(reap.status.code(), Some(0), "{phase:?}: {said}\n{shown}");
    let ec2 = &shown[shown.find("ec2 region").expect("an ec2 section")..];
    assert_eq!(
        ec2.matches("  removed (").count(),
        left.len(),
        "{phase:?}: {shown}"
    );
    assert_eq!(
        left_in_moto(&w, &run),
        Vec::<String>::new(),
        "{phase:?}: {shown}"
    );
    assert!(!shown.contains(SECRET_ACCESS_KEY));
    if left.iter().any(|l| l.starts_with("key pair")) {
        assert!(
            !private_key(&w, &run).exists(),
            "{phase:?}: the dead run's private key is left"
        );
    }
    assert_eq!(
        leftovers(&run, lab.path()),
        Vec::<String>::new(),
        "{phase:?}: {said}\n{shown}"
    );
}

#[test]
fn sigterm_at_each_phase_of_acquire_prepare_and_release_releases_everything_before_metalab_exits() {
    for phase in HOST_PHASES {
        sigterm_releases_everything(phase);
    }
}

#[test]
fn sigkill_at_each_phase_of_acquire_prepare_and_release_then_reap_removes_everything() {
    for phase in HOST_PHASES {
        sigkill_then_reap_removes_everything(phase);
    }
}

#[test]
fn sigterm_while_a_vm_boots_or_a_suite_runs_destroys_it_and_releases_everything() {
    let _slot = vm_slots(1);
    for phase in VM_PHASES {
        sigterm_releases_everything(phase);
    }
}

#[test]
fn sigkill_while_a_vm_boots_or_a_suite_runs_then_reap_removes_everything() {
    let _slot = vm_slots(1);
    for phase in VM_PHASES {
        sigkill_then_reap_removes_everything(phase);
    }
}

#[test]
fn a_spot_instance_taken_back_is_an_infrastructure_failure_and_everything_is_released() {
    let (w, ssh_port) = world();
    w.api.faults().spot_interruption = true;
    let lab = lab(&w, ssh_port);
    lab.write(
        "metalab.toml",
        &std::fs::read_to_string(lab.path().join("metalab.toml"))
            .unwrap()
            .replace("ttl = \"1h\"", "ttl = \"1h\"\nmarket = \"spot\""),
    );
    let out = metalab(&w, &lab, "AKIDE2ETESTKEY", &["run", "policy"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("AWS took the spot instance back (Server.SpotInstanceTermination"),
        "{shown}"
    );
    let launched = w.api.seen();
    assert!(
        launched.contains("InstanceMarketOptions.MarketType=spot"),
        "launched as spot"
    );
    let run = lab.results()["run_id"].as_str().unwrap().to_string();
    assert_eq!(left_in_moto(&w, &run), Vec::<String>::new(), "{shown}");
}
