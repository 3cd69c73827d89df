//! `metalab run` with the ec2 provider, end to end: moto (behind the tests' proxy) launches the
//! "instance", a real sshd on loopback is that instance, with the host key its user data gives,
//! and from there the very same pipeline as for any remote host: prepare, box, Vagrant, suites,
//! terminate. Credentials come from the environment, as the AWS chain reads them.

mod common;

use common::ec2::{Ec2Api, SECRET_ACCESS_KEY};
use common::sshd::free_port;
use common::{ScratchLab, leftovers, repo, text, vm_slots};

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
region = "eu-central-1"
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
    lab.metalab(args)
        .env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", w.aws_files.path().join("config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            w.aws_files.path().join("credentials"),
        )
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let out = std::process::Command::new("grep")
        .args(["-rlF", needle])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What moto holds of `run`: instances not terminated, key pairs and security groups.
fn left_in_moto(w: &World, run: &str) -> Vec<String> {
    w.runtime.block_on(async {
        let moto = w.api.moto_client().await;
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
