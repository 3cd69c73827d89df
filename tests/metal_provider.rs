//! The metal provider against the local Metal API server over real HTTP, with a real sshd as
//! the "device" (it lets in the keys registered with the project, as a fresh device does).
//! Each fault of the server is survived without leaking a device or the run's key.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::sshd::Sshd;
use metalab::config::MetalConfig;
use metalab::ids::RunId;
use metalab::journal::{EntryId, Journal, Resource};
use metalab::metal::ApiToken;
use metalab::metal::server::{self, Faults, ServerConfig, ServerHandle, Timings};
use metalab::provider::metal::MetalProvider;
use metalab::provider::{InputError, Provider, RunHooks};
use metalab::state::StateDir;
use metalab::transport::{Collect, Command};

const TOKEN: &str = "test-token-7f3a9c-do-not-print";
const PROJECT: &str = "proj-metalab";

struct Hooks {
    journal: Mutex<Journal>,
    said: Mutex<Vec<String>>,
}

impl RunHooks for Hooks {
    fn journal(&self, r: Resource) -> anyhow::Result<EntryId> {
        Ok(self.journal.lock().unwrap().record(r)?)
    }
    fn journal_done(&self, e: EntryId) {
        self.journal.lock().unwrap().done(e).unwrap();
    }
    fn progress(&self, m: String) {
        self.said.lock().unwrap().push(m);
    }
}

struct World {
    server: ServerHandle,
    _sshd: Sshd,
    state: StateDir,
    _state_dir: tempfile::TempDir,
    provider: MetalProvider,
    hooks: Hooks,
    run: RunId,
}

async fn world(faults: Faults, metros: &[&str], tweak: impl FnOnce(&mut MetalConfig)) -> World {
    let mut config = ServerConfig::new(ApiToken::new(TOKEN), PROJECT);
    config.timings = Timings {
        queued: Duration::from_millis(300),
        provisioning: Duration::from_millis(900),
        deprovisioning: Duration::from_millis(300),
        tick: Duration::from_millis(50),
    };
    config.faults = faults;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = server::serve(config, listener).unwrap();
    let sshd = tokio::task::spawn_blocking({
        let admin = server.admin_url();
        move || Sshd::metal_device(&admin)
    })
    .await
    .unwrap();
    let mut metal: MetalConfig = toml::from_str(&format!(
        r#"
project = "{PROJECT}"
plan = "c3.small.x86"
operating_system = "debian_12"
metros = {metros:?}
api_url = "{}"
ssh_port = {}
poll = "100ms"
provision_timeout = "20s"
ttl = "2h"
tags = ["team-net"]
"#,
        server.base_url(),
        sshd.port
    ))
    .unwrap();
    tweak(&mut metal);
    let state_dir = tempfile::tempdir().unwrap();
    let state = StateDir::at(state_dir.path().to_path_buf());
    let run = RunId::generate();
    let provider =
        MetalProvider::new(metal, ApiToken::new(TOKEN), state_dir.path(), state.clone()).unwrap();
    let hooks = Hooks {
        journal: Mutex::new(Journal::open(&state.run(&run)).unwrap()),
        said: Mutex::new(Vec::new()),
    };
    World {
        server,
        _sshd: sshd,
        state,
        _state_dir: state_dir,
        provider,
        hooks,
        run,
    }
}

impl World {
    /// After release: no device the API still shows, no key left, nothing pending in the journal.
    async fn assert_nothing_left(&self) {
        let snap = self.server.snapshot();
        assert!(
            snap.live_devices().is_empty(),
            "devices left: {:?}",
            snap.live_devices()
        );
        assert!(
            snap.ssh_keys.iter().all(|k| k.deleted_at.is_some()),
            "keys left: {:?}",
            snap.ssh_keys
        );
        let pending = Journal::pending(&self.state.run(&self.run).journal());
        assert!(pending.is_empty(), "journal still lists {pending:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_is_made_tagged_reached_over_ssh_and_deleted_with_its_key() {
    let w = world(Faults::default(), &["da"], |_| {}).await;
    let hosts = w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    assert_eq!(hosts.len(), 1);
    let mut out = Collect::default();
    hosts[0]
        .transport
        .exec(
            &Command::new("echo on-the-device", Duration::from_secs(10)),
            &mut out,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "on-the-device\n");

    let snap = w.server.snapshot();
    let device = &snap.live_devices()[0].device;
    let tags = &device.tags;
    assert!(
        tags.contains(&"metalab".to_string())
            && tags.contains(&format!("run:{}", w.run))
            && tags.contains(&"team-net".to_string()),
        "{tags:?}"
    );
    let ttl = device.termination_time.unwrap() - chrono::Utc::now();
    assert!(
        ttl > chrono::TimeDelta::minutes(110) && ttl <= chrono::TimeDelta::minutes(120),
        "{ttl}"
    );
    let key = &snap.ssh_keys[0].key;
    let create = &snap.requests_to("POST", &format!("/projects/{PROJECT}/devices"))[0];
    assert_eq!(
        create.body.as_ref().unwrap()["project_ssh_keys"],
        serde_json::json!([key.id])
    );

    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_a_500_after_create_leave_exactly_one_device() {
    let faults = Faults {
        rate_limited_requests: 2,
        create_500_after_create: 1,
        ..Faults::default()
    };
    let w = world(faults, &["da"], |_| {}).await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    let snap = w.server.snapshot();
    assert_eq!(
        snap.devices.len(),
        1,
        "the half-created device was not adopted: {:?}",
        snap.devices
    );
    assert!(snap.requests.iter().any(|r| r.status == 429));
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_capacity_in_the_first_metro_falls_back_to_the_next() {
    let faults = Faults {
        no_capacity_metros: vec!["da".into()],
        ..Faults::default()
    };
    let w = world(faults, &["da", "ny"], |_| {}).await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    let snap = w.server.snapshot();
    assert_eq!(snap.live_devices()[0].device.metro_code(), Some("ny"));
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioning_that_never_finishes_is_deleted_not_forgotten() {
    let faults = Faults {
        stuck_provisioning: true,
        refuse_delete_while_provisioning: false,
        ..Faults::default()
    };
    let w = world(faults, &["da"], |m| {
        m.provision_timeout = Duration::from_secs(2)
    })
    .await;
    let err = w.provider.acquire(&w.run, 1, &w.hooks).await.err().unwrap();
    assert!(format!("{err:#}").contains("active"), "{err:#}");
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_fails_and_then_answers_403_counts_as_gone() {
    let faults = Faults {
        fail_provisioning: true,
        ..Faults::default()
    };
    let w = world(faults, &["da"], |_| {}).await;
    let err = w.provider.acquire(&w.run, 1, &w.hooks).await.err().unwrap();
    assert!(
        format!("{err:#}").contains("failed to provision"),
        "{err:#}"
    );
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_refused_while_provisioning_is_repeated_until_it_takes() {
    let faults = Faults {
        refuse_delete_while_provisioning: true,
        ..Faults::default()
    };
    let w = world(faults, &["da"], |_| {}).await;
    // A run interrupted while its device provisions releases at once.
    let acquire = w.provider.acquire(&w.run, 1, &w.hooks);
    let _ = tokio::time::timeout(Duration::from_millis(400), acquire).await;
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    let refused = w
        .server
        .snapshot()
        .requests
        .iter()
        .filter(|r| r.method == "DELETE" && r.status == 422)
        .count();
    assert!(refused > 0, "the fault never fired");
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_bad_input_and_never_printed() {
    let w = world(Faults::default(), &["da"], |_| {}).await;
    let wrong = "wrong-token-c0ffee-secret";
    let provider = MetalProvider::new(
        toml::from_str(&format!(
            "project = \"{PROJECT}\"\nplan = \"p\"\noperating_system = \"o\"\napi_url = \"{}\"\n",
            w.server.base_url()
        ))
        .unwrap(),
        ApiToken::new(wrong),
        w.state.root(),
        w.state.clone(),
    )
    .unwrap();
    let err = provider.acquire(&w.run, 1, &w.hooks).await.err().unwrap();
    assert!(err.downcast_ref::<InputError>().is_some(), "{err:#}");
    let shown = format!("{err:#} {err:?}");
    assert!(!shown.contains(wrong) && !shown.contains(TOKEN), "{shown}");
    provider.release(&w.run, &w.hooks).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reap_deletes_a_dead_runs_device_and_key_but_never_a_locked_device() {
    use metalab::journal::Owner;
    use metalab::metal::{ClientConfig, DeviceCreateInput, MetalClient};
    let w = world(Faults::default(), &["da"], |_| {}).await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    // The run "died": its owner record names a process from another boot.
    let mut owner = Owner::me();
    owner.boot_id = "a boot long gone".into();
    owner.save(&w.state.run(&w.run)).unwrap();
    let mut cc = ClientConfig::new(ApiToken::new(TOKEN), PROJECT);
    cc.base_url = w.server.base_url();
    let client = MetalClient::new(cc).unwrap();
    let locked = client
        .create_device(&DeviceCreateInput {
            plan: "c3.small.x86".into(),
            operating_system: "debian_12".into(),
            metro: "da".into(),
            hostname: Some("someones-pet".into()),
            tags: vec!["metalab".into(), format!("run:{}", w.run)],
            locked: Some(true),
            ..DeviceCreateInput::default()
        })
        .await
        .unwrap();

    let dry = metalab::provider::metal::reap(&client, &w.state, Duration::from_secs(3600), true)
        .await
        .unwrap();
    assert!(dry.iter().all(|f| !f.removed));
    assert_eq!(w.server.snapshot().live_devices().len(), 2);

    let found = metalab::provider::metal::reap(&client, &w.state, Duration::from_secs(3600), false)
        .await
        .unwrap();
    let snap = w.server.snapshot();
    let live: Vec<&str> = snap
        .live_devices()
        .iter()
        .map(|d| d.device.hostname.as_str())
        .collect();
    assert_eq!(
        live,
        vec!["someones-pet"],
        "{:?}",
        found.iter().map(|f| &f.what).collect::<Vec<_>>()
    );
    assert!(snap.ssh_keys.iter().all(|k| k.deleted_at.is_some()));
    assert_eq!(locked.hostname, "someones-pet");
}
