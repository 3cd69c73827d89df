//! The metal provider against the local Metal API server over real HTTP, with a real sshd as
//! the "device" (it lets in the keys registered with the project, as a fresh device does).
//! Each fault of the server is survived without leaking a device or the run's key.
//!
//! Every test runs twice: against the server's full answers (`full`), and against its strict
//! ones (`strict`), which carry only the contract's required fields and unknown ones besides.

mod common;

use std::time::Duration;

use common::hooks::Hooks;
use common::sshd::Sshd;
use metalab::config::MetalConfig;
use metalab::ids::RunId;
use metalab::journal::Journal;
use metalab::metal::ApiToken;
use metalab::metal::server::{self, Faults, ServerConfig, ServerHandle, Shape, Timings};
use metalab::provider::metal::{MetalProvider, Outcome};
use metalab::provider::{InputError, Provider, Stage};
use metalab::state::StateDir;
use metalab::transport::{Collect, Command};

const TOKEN: &str = "test-token-7f3a9c-do-not-print";
const PROJECT: &str = "proj-metalab";

/// Each test, once against each shape of the server's answers.
macro_rules! both_shapes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn full() {
                super::$name(Shape::Full).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn strict() {
                super::$name(Shape::Strict).await
            }
        }
    )*};
}

both_shapes!(
    a_device_is_made_tagged_reached_over_ssh_and_deleted_with_its_key,
    rate_limits_and_a_500_after_create_leave_exactly_one_device,
    no_capacity_in_the_first_metro_falls_back_to_the_next_and_says_so,
    provisioning_that_never_finishes_is_deleted_not_forgotten,
    a_device_that_fails_and_then_answers_403_is_a_failed_device,
    a_device_that_fails_behind_a_403_at_once_is_a_failed_device_not_a_refused_token,
    a_delete_refused_while_provisioning_is_repeated_until_it_takes,
    a_wrong_token_is_bad_input_and_never_printed,
    a_key_whose_create_answer_cannot_be_read_is_deleted_all_the_same,
    a_key_that_cannot_be_deleted_fails_release_naming_it,
    a_device_of_the_run_that_cannot_be_read_in_a_list_is_deleted_by_its_id,
    ssh_timeout_bounds_the_wait_for_ssh,
    reap_deletes_a_dead_runs_device_and_key_but_never_a_locked_device,
);

struct World {
    server: ServerHandle,
    _sshd: Sshd,
    state: StateDir,
    _state_dir: tempfile::TempDir,
    provider: MetalProvider,
    hooks: Hooks,
    run: RunId,
}

async fn world(
    shape: Shape,
    faults: Faults,
    metros: &[&str],
    tweak: impl FnOnce(&mut MetalConfig),
) -> World {
    let mut config = ServerConfig::new(ApiToken::new(TOKEN), PROJECT);
    config.timings = Timings {
        queued: Duration::from_millis(300),
        provisioning: Duration::from_millis(900),
        deprovisioning: Duration::from_millis(300),
        tick: Duration::from_millis(50),
    };
    config.faults = faults;
    config.shape = shape;
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
    let hooks = Hooks::new(&state, &run);
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

    /// A client of the server, as another tool (or a human) would use it.
    fn client(&self) -> metalab::metal::MetalClient {
        let mut cc = metalab::metal::ClientConfig::new(ApiToken::new(TOKEN), PROJECT);
        cc.base_url = self.server.base_url();
        metalab::metal::MetalClient::new(cc).unwrap()
    }

    /// The body of the event that says why the device failed, as the server logged it.
    fn failure_event(&self) -> String {
        let snap = self.server.snapshot();
        let device = &snap.devices[0];
        let event = device
            .events
            .iter()
            .find(|e| e.kind == "provisioning.failed")
            .expect("the server logged the failure");
        event.body.clone()
    }
}

fn create_input(run: &RunId, hostname: &str) -> metalab::metal::DeviceCreateInput {
    metalab::metal::DeviceCreateInput {
        plan: "c3.small.x86".into(),
        operating_system: "debian_12".into(),
        metro: "da".into(),
        hostname: Some(hostname.into()),
        tags: vec!["metalab".into(), format!("run:{run}")],
        ..metalab::metal::DeviceCreateInput::default()
    }
}

async fn a_device_is_made_tagged_reached_over_ssh_and_deleted_with_its_key(shape: Shape) {
    let w = world(shape, Faults::default(), &["da"], |_| {}).await;
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
    let private_key = w.state.run(&w.run).metal_key();
    assert!(private_key.exists());

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
    assert!(
        !private_key.exists(),
        "the run's private key is still on disk"
    );
    assert!(!private_key.with_extension("pub").exists());
    // Each line is labelled with the phase it belongs to.
    let acquire = w.hooks.said_in(Stage::Acquire);
    let release = w.hooks.said_in(Stage::Release);
    assert!(
        acquire.iter().any(|l| l.contains("created in da")),
        "{acquire:?}"
    );
    assert!(
        acquire.iter().all(|l| !l.contains("deleted")),
        "{acquire:?}"
    );
    assert!(
        release.iter().any(|l| l.ends_with("-1: deleted")),
        "{release:?}"
    );
    assert!(
        release.iter().any(|l| l.starts_with("SSH key metalab-")),
        "{release:?}"
    );
}

async fn rate_limits_and_a_500_after_create_leave_exactly_one_device(shape: Shape) {
    let faults = Faults {
        rate_limited_requests: 2,
        create_500_after_create: 1,
        ..Faults::default()
    };
    let w = world(shape, faults, &["da"], |_| {}).await;
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

async fn no_capacity_in_the_first_metro_falls_back_to_the_next_and_says_so(shape: Shape) {
    let faults = Faults {
        no_capacity_metros: vec!["da".into(), "am".into()],
        ..Faults::default()
    };
    let w = world(shape, faults.clone(), &["da", "ny"], |_| {}).await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    let snap = w.server.snapshot();
    assert_eq!(snap.live_devices()[0].device.metro_code(), Some("ny"));
    let said = w.hooks.said_in(Stage::Acquire);
    assert!(
        said.iter().any(|l| l.ends_with(
            "-1: skipping metro da: the capacity check says it has no c3.small.x86 free"
        )),
        "{said:?}"
    );
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;

    // When no metro can take it, each one is named with its reason.
    let w = world(shape, faults, &["da", "am"], |_| {}).await;
    let err = w.provider.acquire(&w.run, 1, &w.hooks).await.err().unwrap();
    let shown = format!("{err:#}");
    assert!(
        shown.contains("da: the capacity check says it has no c3.small.x86 free")
            && shown.contains("am: the capacity check says"),
        "{shown}"
    );
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

async fn provisioning_that_never_finishes_is_deleted_not_forgotten(shape: Shape) {
    let faults = Faults {
        stuck_provisioning: true,
        refuse_delete_while_provisioning: false,
        ..Faults::default()
    };
    let w = world(shape, faults, &["da"], |m| {
        m.provision_timeout = Duration::from_secs(2)
    })
    .await;
    let err = w.provider.acquire(&w.run, 1, &w.hooks).await.err().unwrap();
    assert!(format!("{err:#}").contains("active"), "{err:#}");
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

/// A failed device is infrastructure (exit 3), not bad input, and the API's own reason is given.
fn assert_failed_device(w: &World, err: &anyhow::Error) {
    let shown = format!("{err:#}");
    assert!(err.downcast_ref::<InputError>().is_none(), "{shown}");
    assert!(!shown.contains("refused the token"), "{shown}");
    assert!(
        shown.contains(&format!("metalab-{}-1: device", w.run))
            && shown.contains("failed to provision"),
        "{shown}"
    );
    assert!(shown.contains(&w.failure_event()), "{shown}");
}

async fn a_device_that_fails_and_then_answers_403_is_a_failed_device(shape: Shape) {
    let faults = Faults {
        fail_provisioning: true,
        ..Faults::default()
    };
    let w = world(shape, faults, &["da"], |_| {}).await;
    let err = w.provider.acquire(&w.run, 1, &w.hooks).await.err().unwrap();
    assert_failed_device(&w, &err);
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

async fn a_device_that_fails_behind_a_403_at_once_is_a_failed_device_not_a_refused_token(
    shape: Shape,
) {
    let faults = Faults {
        fail_provisioning: true,
        hide_failed_devices: true,
        ..Faults::default()
    };
    let w = world(shape, faults, &["da"], |_| {}).await;
    let err = w.provider.acquire(&w.run, 1, &w.hooks).await.err().unwrap();
    let snap = w.server.snapshot();
    assert!(
        snap.requests_to("GET", "/devices/")
            .iter()
            .any(|r| r.status == 403),
        "the fault never fired"
    );
    assert_failed_device(&w, &err);
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

async fn a_delete_refused_while_provisioning_is_repeated_until_it_takes(shape: Shape) {
    let faults = Faults {
        refuse_delete_while_provisioning: true,
        ..Faults::default()
    };
    let w = world(shape, faults, &["da"], |_| {}).await;
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

async fn a_wrong_token_is_bad_input_and_never_printed(shape: Shape) {
    let w = world(shape, Faults::default(), &["da"], |_| {}).await;
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
    assert!(!w.state.run(&w.run).metal_key().exists());
    w.assert_nothing_left().await;
}

async fn a_key_whose_create_answer_cannot_be_read_is_deleted_all_the_same(shape: Shape) {
    let faults = Faults {
        unreadable_key_creates: 1,
        ..Faults::default()
    };
    let w = world(shape, faults, &["da"], |_| {}).await;
    let err = w.provider.acquire(&w.run, 1, &w.hooks).await.err().unwrap();
    assert!(format!("{err:#}").contains("does not decode"), "{err:#}");
    let snap = w.server.snapshot();
    assert!(snap.devices.is_empty());
    assert!(
        snap.ssh_keys.len() == 1 && snap.ssh_keys[0].deleted_at.is_none(),
        "the create made the key: {:?}",
        snap.ssh_keys
    );
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
    assert!(!w.state.run(&w.run).metal_key().exists());
}

async fn a_key_that_cannot_be_deleted_fails_release_naming_it(shape: Shape) {
    let faults = Faults {
        refuse_key_deletes: true,
        ..Faults::default()
    };
    let w = world(shape, faults, &["da"], |_| {}).await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    let err = w.provider.release(&w.run, &w.hooks).await.err().unwrap();
    let shown = format!("{err:#}");
    // Not bad input: the run ends as an infrastructure error (3).
    assert!(err.downcast_ref::<InputError>().is_none(), "{shown}");
    assert!(
        shown.contains(&format!("SSH key metalab-{}", w.run)) && shown.contains("in use"),
        "{shown}"
    );
    let snap = w.server.snapshot();
    assert!(
        snap.live_devices().is_empty(),
        "the devices went all the same"
    );
    let pending = Journal::pending(&w.state.run(&w.run).journal());
    assert_eq!(
        pending.len(),
        1,
        "the key stays on record for reap: {pending:?}"
    );
}

async fn a_device_of_the_run_that_cannot_be_read_in_a_list_is_deleted_by_its_id(shape: Shape) {
    let faults = Faults {
        unreadable_in_lists: vec!["stray".into()],
        ..Faults::default()
    };
    let w = world(shape, faults, &["da"], |_| {}).await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    // A second device carrying the run's tag, which the lists show in a form that cannot be read.
    let stray = w
        .client()
        .create_device(&create_input(&w.run, "stray"))
        .await
        .unwrap();
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
    assert!(w.server.snapshot().device(&stray.id).unwrap().is_gone());
    let said = w.hooks.said_in(Stage::Release);
    assert!(
        said.iter()
            .any(|l| l.contains(&format!("id {}", stray.id)) && l.contains("cannot be read")),
        "{said:?}"
    );
}

async fn ssh_timeout_bounds_the_wait_for_ssh(shape: Shape) {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let w = world(shape, Faults::default(), &["da"], |m| {
        m.ssh_port = closed;
        m.ssh_timeout = Duration::from_secs(1);
    })
    .await;
    let started = std::time::Instant::now();
    let err = w.provider.acquire(&w.run, 1, &w.hooks).await.err().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(format!("{err:#}").contains("ssh_timeout"), "{err:#}");
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

async fn reap_deletes_a_dead_runs_device_and_key_but_never_a_locked_device(shape: Shape) {
    use metalab::journal::Owner;
    let faults = Faults {
        unreadable_in_lists: vec!["garbled".into(), "someone-elses-key".into()],
        ..Faults::default()
    };
    let w = world(shape, faults, &["da"], |_| {}).await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    // The run "died": its owner record names a process from another boot.
    let mut owner = Owner::me();
    owner.boot_id = "a boot long gone".into();
    owner.save(&w.state.run(&w.run)).unwrap();
    let client = w.client();
    let mut pet = create_input(&w.run, "someones-pet");
    pet.locked = Some(true);
    client.create_device(&pet).await.unwrap();
    // The dead run's too, shown in lists in a form that cannot be read: reap tells it by its id
    // and tags.
    let garbled = client
        .create_device(&create_input(&w.run, "garbled"))
        .await
        .unwrap();
    // A run of another state directory, begun just now: not this reap's business yet.
    let young_run = RunId::generate();
    client
        .create_device(&create_input(&young_run, "young"))
        .await
        .unwrap();
    // Someone else's key, whose label cannot be read.
    client
        .create_ssh_key("someone-elses-key", "ssh-ed25519 AAAA other")
        .await
        .unwrap();

    let dry = metalab::provider::metal::reap(&client, &w.state, Duration::from_secs(3600), true)
        .await
        .unwrap();
    assert!(
        dry.iter()
            .all(|f| !matches!(f.outcome, Outcome::Removed { .. }))
    );
    assert_eq!(w.server.snapshot().live_devices().len(), 4);

    let found = metalab::provider::metal::reap(&client, &w.state, Duration::from_secs(3600), false)
        .await
        .unwrap();
    let outcome = |what: &str| {
        found
            .iter()
            .find(|f| f.what.contains(what))
            .map(|f| f.outcome.clone())
            .unwrap_or_else(|| panic!("{what} not found: {found:?}"))
    };
    let snap = w.server.snapshot();
    let mut live: Vec<&str> = snap
        .live_devices()
        .iter()
        .map(|d| d.device.hostname.as_str())
        .collect();
    live.sort_unstable();
    assert_eq!(live, vec!["someones-pet", "young"], "{found:?}");
    assert!(snap.device(&garbled.id).unwrap().is_gone());
    assert!(
        snap.ssh_keys
            .iter()
            .all(|k| (k.key.label == "someone-elses-key") == k.deleted_at.is_none()),
        "{:?}",
        snap.ssh_keys
    );
    // Each kept device with its own reason.
    assert_eq!(
        outcome("someones-pet"),
        Outcome::Kept {
            why: "locked".into()
        }
    );
    let Outcome::Kept { why } = outcome("young") else {
        panic!("{found:?}")
    };
    assert!(why.contains("not known here"), "{why}");
    if shape == Shape::Strict {
        assert!(why.contains("age is unknown"), "{why}");
    }
    assert!(matches!(outcome("garbled"), Outcome::Removed { .. }));
    assert!(matches!(
        outcome("an SSH key"),
        Outcome::Unreadable { ours: false, .. }
    ));
    assert!(found.iter().all(|f| !f.left_behind()), "{found:?}");
}
