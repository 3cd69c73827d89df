//! `metalab run` with the ec2 provider, end to end: moto (behind the tests' proxy) launches the
//! "instance", a real sshd on loopback is that instance, with the host key its user data gives,
//! and from there the very same pipeline as for any remote host: prepare, box, Vagrant, suites,
//! terminate. Credentials come from the environment, as the AWS chain reads them.

mod common;

use common::ec2::{Ec2Api, SECRET_ACCESS_KEY};
use common::sshd::free_port;
use common::{ScratchLab, files_containing, leftovers, repo, text, vm_slots};

/// Not the SDK's default region: the setting is what reaches EC2.
const REGION: &str = "eu-central-1";

struct World {
    api: Ec2Api,
    runtime: tokio::runtime::Runtime,
    /// An empty AWS config and credentials file: nothing of this machine's is read.
    aws_files: tempfile::TempDir,
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
home = "/var/lib/metalab-remote"
"#,
        w.api.url
    );
    let lab = ScratchLab::new(&config, &[]);
    std::fs::remove_dir(lab.path().join("suites")).unwrap();
    std::os::unix::fs::symlink(repo().join("suites"), lab.path().join("suites")).unwrap();
    lab
}

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

/// Starts `metalab run policy`, and sends `signal` once the proxy has seen its instance
/// launched: the run is then between its launch and its first SSH command.
fn interrupted_at_launch(
    w: &World,
    lab: &ScratchLab,
    signal: nix::sys::signal::Signal,
) -> std::process::Output {
    let child = command(w, lab, "AKIDE2ETESTKEY", &["run", "policy"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while w.api.launches().is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no launch"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    child.wait_with_output().unwrap()
}

/// The run id of the only run in the lab's state.
fn only_run(w: &World) -> String {
    w.runtime.block_on(async {
        let moto = w.api.moto_client(REGION).await;
        let out = moto.describe_instances().send().await.unwrap();
        let runs: std::collections::BTreeSet<String> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .flat_map(|i| i.tags())
            .filter(|t| t.key() == Some("metalab:run"))
            .filter_map(|t| t.value().map(str::to_owned))
            .collect();
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs.into_iter().next().unwrap()
    })
}

#[test]
fn sigterm_after_the_launch_releases_everything_before_metalab_exits() {
    let (w, ssh_port) = world();
    let lab = lab(&w, ssh_port);
    let out = interrupted_at_launch(&w, &lab, nix::sys::signal::Signal::SIGTERM);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(143), "{shown}");
    let run = only_run(&w);
    assert_eq!(left_in_moto(&w, &run), Vec::<String>::new(), "{shown}");
}

#[test]
fn sigkill_after_the_launch_then_hosts_shows_it_and_reap_removes_everything() {
    let (w, ssh_port) = world();
    let lab = lab(&w, ssh_port);
    let out = interrupted_at_launch(&w, &lab, nix::sys::signal::Signal::SIGKILL);
    assert_eq!(out.status.code(), None, "killed");
    let run = only_run(&w);
    let left = left_in_moto(&w, &run);
    assert_eq!(left.len(), 3, "an instance, a key pair, a group: {left:?}");

    let hosts = metalab(&w, &lab, "AKIDE2ETESTKEY", &["hosts"]);
    let shown = text(&hosts);
    assert_eq!(hosts.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains(&format!("metalab-{run}-1")) && shown.contains("m5.metal")
            || shown.contains("c5.metal"),
        "{shown}"
    );

    let dry = metalab(&w, &lab, "AKIDE2ETESTKEY", &["reap", "--dry-run"]);
    let shown = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{shown}");
    assert!(shown.contains("would remove"), "{shown}");
    assert_eq!(left_in_moto(&w, &run).len(), 3, "a dry run removes nothing");

    let private_key = std::path::PathBuf::from("/var/lib/metalab/runs")
        .join(&run)
        .join("ec2/id_ed25519");
    assert!(private_key.exists());
    let reap = metalab(&w, &lab, "AKIDE2ETESTKEY", &["reap"]);
    let shown = text(&reap);
    assert_eq!(reap.status.code(), Some(0), "{shown}");
    assert_eq!(shown.matches("removed (its process").count(), 3, "{shown}");
    assert_eq!(left_in_moto(&w, &run), Vec::<String>::new(), "{shown}");
    assert!(!shown.contains(SECRET_ACCESS_KEY));
    assert!(!private_key.exists(), "the dead run's private key is left");
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
