//! `metalab run` with the metal provider, end to end: the local Metal API server (real HTTP)
//! makes the "device", a real sshd on loopback is that device, and from there the very same
//! pipeline as for any remote host: prepare, box, Vagrant, suites, delete.

mod common;

use std::time::Duration;

use common::sshd::Sshd;
use common::{ScratchLab, files_containing, leftovers, repo, text, vm_slots};
use metalab::metal::ApiToken;
use metalab::metal::server::{self, ServerConfig, ServerHandle, Timings};

const TOKEN: &str = "e2e-token-5b1d-never-in-a-log";
const PROJECT: &str = "proj-e2e";

struct Api {
    handle: ServerHandle,
    _runtime: tokio::runtime::Runtime,
}

fn api() -> Api {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = runtime.block_on(async {
        let mut config = ServerConfig::new(ApiToken::new(TOKEN), PROJECT);
        config.timings = Timings {
            queued: Duration::from_secs(1),
            provisioning: Duration::from_secs(3),
            deprovisioning: Duration::from_secs(1),
            tick: Duration::from_millis(100),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        server::serve(config, listener).unwrap()
    });
    Api {
        handle,
        _runtime: runtime,
    }
}

fn lab(api: &Api, device: &Sshd) -> ScratchLab {
    let config = format!(
        r#"
[vm]
memory = 640

[provider]
kind = "metal"

[provider.metal]
project = "{PROJECT}"
plan = "c3.small.x86"
operating_system = "debian_12"
metros = ["da", "any"]
api_url = "{}"
ssh_port = {}
poll = "500ms"
ttl = "1h"
home = "/var/lib/metalab-remote"
"#,
        api.handle.base_url(),
        device.port
    );
    let lab = ScratchLab::new(&config, &[]);
    std::fs::remove_dir(lab.path().join("suites")).unwrap();
    std::os::unix::fs::symlink(repo().join("suites"), lab.path().join("suites")).unwrap();
    lab
}

#[test]
fn a_run_on_a_metal_device_creates_it_runs_the_suite_and_deletes_everything() {
    // The policy suite: one VM.
    let _slot = vm_slots(1);
    let api = api();
    let device = Sshd::metal_device(&api.handle.admin_url());
    let lab = lab(&api, &device);
    let out = lab
        .metalab(&["run", "policy"])
        .env("METAL_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");

    let snap = api.handle.snapshot();
    assert_eq!(snap.devices.len(), 1, "{:?}", snap.devices);
    assert!(snap.live_devices().is_empty(), "a device is left");
    assert!(
        snap.ssh_keys.iter().all(|k| k.deleted_at.is_some()),
        "the run's key is left"
    );
    let run_id = lab.results()["run_id"].as_str().unwrap().to_string();
    assert!(
        snap.devices[0]
            .device
            .tags
            .contains(&format!("run:{run_id}"))
    );
    assert!(!shown.contains(TOKEN), "the token was printed");
    assert_eq!(files_containing(lab.path(), TOKEN), Vec::<String>::new());
    assert_eq!(
        files_containing(
            &std::path::PathBuf::from("/var/lib/metalab/runs").join(&run_id),
            TOKEN
        ),
        Vec::<String>::new()
    );
    assert_eq!(leftovers(&run_id, lab.path()), Vec::<String>::new());
}

#[test]
fn a_wrong_token_is_bad_input_with_a_clear_message_and_is_never_printed() {
    let api = api();
    let device = Sshd::metal_device(&api.handle.admin_url());
    let lab = lab(&api, &device);
    let wrong = "wrong-e2e-token-91ac";
    let out = lab
        .metalab(&["run", "policy"])
        .env("METAL_AUTH_TOKEN", wrong)
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("refused the token"), "{shown}");
    assert!(!shown.contains(wrong), "{shown}");
    assert_eq!(files_containing(lab.path(), wrong), Vec::<String>::new());
    assert!(api.handle.snapshot().devices.is_empty());
    // So is `metalab reap`, which asks the API for the devices dead runs left.
    let reap = lab
        .metalab(&["reap"])
        .env("METAL_AUTH_TOKEN", wrong)
        .output()
        .unwrap();
    let shown = text(&reap);
    assert_eq!(reap.status.code(), Some(2), "{shown}");
    assert!(shown.contains("refused the token"), "{shown}");
    assert!(!shown.contains(wrong), "{shown}");
}
