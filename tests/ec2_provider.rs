//! The ec2 provider against moto, a local EC2 API metalab did not write, over real HTTP, with
//! the tests' proxy in front of it for the faults moto cannot show and a real sshd as the
//! "instance" (tests/common/ec2.rs). After every test, moto itself is asked, past the proxy,
//! whether anything of the run is left.

mod common;

use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use common::ec2::{Ec2Api, SECRET_ACCESS_KEY, sdk_config};
use common::hooks::Hooks;
use common::sshd::free_port;
use metalab::config::Ec2Config;
use metalab::ids::RunId;
use metalab::journal::Journal;
use metalab::provider::ec2::{Ec2Provider, run_name};
use metalab::provider::{InputError, Provider, Stage};
use metalab::state::StateDir;
use metalab::transport::{Collect, Command};

struct World {
    api: Ec2Api,
    state: StateDir,
    _state_dir: tempfile::TempDir,
    provider: Ec2Provider,
    hooks: Hooks,
    run: RunId,
}

const AMI: &str = "ami-0d1e2b3a4c5f60718";

/// The proxy and moto, and a provider for one run whose credentials carry `key_id`.
async fn world(key_id: &str, settings: &str, setup: impl FnOnce(&Ec2Api)) -> World {
    let ssh_port = free_port();
    let api = Ec2Api::start(ssh_port).await;
    setup(&api);
    let defaults = format!(
        r#"region = "us-east-1"
image = "{AMI}"
endpoint_url = "{}"
ssh_port = {ssh_port}
ssh_from = ["127.0.0.1/32"]
poll = "200ms"
provision_timeout = "30s"
ssh_timeout = "30s"
ttl = "2h"
tags = {{ team = "net" }}"#,
        api.url,
    );
    // A setting of the test's replaces the default of the same key.
    let set = |line: &str| {
        let key = line.split('=').next().unwrap_or_default().trim();
        settings
            .lines()
            .any(|l| l.split('=').next().unwrap_or_default().trim() == key)
    };
    let kept: Vec<&str> = defaults.lines().filter(|l| !set(l)).collect();
    let config: Ec2Config = toml::from_str(&format!("{}\n{settings}\n", kept.join("\n"))).unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let state = StateDir::at(state_dir.path().to_path_buf());
    let run = RunId::generate();
    let sdk = sdk_config(&api.url, "us-east-1", key_id).await;
    let provider = Ec2Provider::new(config, Some(&sdk), state_dir.path(), state.clone());
    let hooks = Hooks::new(&state, &run);
    World {
        api,
        state,
        _state_dir: state_dir,
        provider,
        hooks,
        run,
    }
}

/// The error of an acquire that was to fail.
fn failed(acquired: anyhow::Result<Vec<metalab::host::Host>>) -> anyhow::Error {
    match acquired {
        Ok(hosts) => panic!("acquired {} host(s)", hosts.len()),
        Err(e) => e,
    }
}

fn tag(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

impl World {
    /// The run's instances moto holds that are not terminated.
    async fn live_instances(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        let moto = self.api.moto_client("us-east-1").await;
        let out = moto
            .describe_instances()
            .filters(tag("metalab:run", &self.run.to_string()))
            .send()
            .await
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
            .cloned()
            .collect()
    }

    /// After release: no instance, key pair or security group of the run in moto, no private
    /// key on disk, nothing pending in the journal.
    async fn assert_nothing_left(&self) {
        let live = self.live_instances().await;
        assert!(live.is_empty(), "instances left: {live:?}");
        let moto = self.api.moto_client("us-east-1").await;
        let keys = moto.describe_key_pairs().send().await.unwrap();
        let name = run_name(&self.run);
        assert!(
            keys.key_pairs().iter().all(|k| k.key_name() != Some(&name)),
            "key pair left: {:?}",
            keys.key_pairs()
        );
        let groups = moto.describe_security_groups().send().await.unwrap();
        assert!(
            groups
                .security_groups()
                .iter()
                .all(|g| g.group_name() != Some(&name)),
            "security group left: {:?}",
            groups.security_groups()
        );
        let private_key = self.state.run(&self.run).ec2_key();
        assert!(!private_key.exists() && !private_key.with_extension("pub").exists());
        let pending = Journal::pending(&self.state.run(&self.run).journal());
        assert!(pending.is_empty(), "journal still lists {pending:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_is_launched_tagged_reached_over_ssh_and_everything_removed() {
    let w = world("AKIDTESTOK", "instance_types = [\"c5.metal\"]", |_| {}).await;
    let hosts = w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    assert_eq!(hosts.len(), 1);
    let mut out = Collect::default();
    hosts[0]
        .transport
        .exec(
            &Command::new("echo on-the-instance", Duration::from_secs(10)),
            &mut out,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "on-the-instance\n");

    // What moto holds: the tags, the expiry, how the instance ends, and who may reach it.
    let live = w.live_instances().await;
    assert_eq!(live.len(), 1, "{live:?}");
    let instance = &live[0];
    let tags: std::collections::BTreeMap<&str, &str> = instance
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags.get("metalab:run"), Some(&w.run.to_string().as_str()));
    assert_eq!(tags.get("team"), Some(&"net"));
    assert_eq!(
        tags.get("Name"),
        Some(&format!("{}-1", run_name(&w.run)).as_str())
    );
    assert!(tags.contains_key("metalab"));
    let expires = chrono::DateTime::parse_from_rfc3339(tags["metalab:expires"]).unwrap();
    let ttl = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        ttl > chrono::TimeDelta::minutes(110) && ttl <= chrono::TimeDelta::minutes(120),
        "{ttl}"
    );
    let launch = &w.api.launches()[0];
    assert_eq!(
        metalab::ec2::boot::expiry_of(&launch.user_data),
        Some(expires.timestamp()),
        "the user data powers the host off at the tagged expiry"
    );
    let moto = w.api.moto_client("us-east-1").await;
    let id = instance.instance_id().unwrap();
    let shutdown = moto
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .unwrap();
    assert_eq!(
        shutdown
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value()),
        Some("terminate")
    );
    let metadata = instance.metadata_options().unwrap();
    assert_eq!(metadata.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(metadata.http_put_response_hop_limit(), Some(1));
    let groups = moto
        .describe_security_groups()
        .filters(tag("metalab:run", &w.run.to_string()))
        .send()
        .await
        .unwrap();
    let group = &groups.security_groups()[0];
    let ingress = group.ip_permissions();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    let cidrs: Vec<_> = ingress[0]
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(cidrs, ["127.0.0.1/32"]);
    assert!(w.state.run(&w.run).ec2_key().exists());

    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
    let release = w.hooks.said_in(Stage::Release);
    assert!(
        release.iter().any(|l| l.ends_with(": terminated")),
        "{release:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_capacity_falls_back_to_the_next_type_at_once_and_says_so() {
    let w = world(
        "AKIDTESTOK",
        "instance_types = [\"c5.metal\", \"m5.metal\"]",
        |api| {
            api.faults()
                .no_capacity
                .insert("c5.metal".into(), "InsufficientInstanceCapacity");
        },
    )
    .await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    let launches = w.api.launches();
    assert_eq!(launches.len(), 1);
    assert_eq!(launches[0].instance_type, "m5.metal");
    // The refusal is not retried by the SDK: one try of each type.
    assert_eq!(w.api.calls("RunInstances"), 2);
    let acquire = w.hooks.said_in(Stage::Acquire);
    assert!(
        acquire
            .iter()
            .any(|l| l
                .contains("skipping c5.metal in the default VPC: InsufficientInstanceCapacity")),
        "{acquire:?}"
    );
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn when_no_type_has_capacity_the_run_fails_naming_each_and_leaves_nothing() {
    let w = world(
        "AKIDTESTOK",
        "instance_types = [\"c5.metal\", \"m5.metal\"]",
        |api| {
            let mut f = api.faults();
            f.no_capacity
                .insert("c5.metal".into(), "InsufficientInstanceCapacity");
            f.no_capacity.insert("m5.metal".into(), "Unsupported");
        },
    )
    .await;
    let e = failed(w.provider.acquire(&w.run, 1, &w.hooks).await);
    let text = format!("{e:#}");
    assert!(
        text.contains("c5.metal in the default VPC: InsufficientInstanceCapacity")
            && text.contains("m5.metal in the default VPC: Unsupported"),
        "{text}"
    );
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_with_the_sdks_backoff() {
    let w = world("AKIDTESTOK", "instance_types = [\"c5.metal\"]", |api| {
        let mut f = api.faults();
        f.throttle.insert("RunInstances".into(), 2);
        f.throttle.insert("DescribeInstances".into(), 2);
        f.throttle.insert("TerminateInstances".into(), 1);
    })
    .await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    assert_eq!(
        w.api.calls("RunInstances"),
        3,
        "two throttled, then the launch"
    );
    assert_eq!(w.api.launches().len(), 1);
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_whose_answer_is_lost_is_retried_into_the_same_instance() {
    let w = world("AKIDTESTOK", "instance_types = [\"c5.metal\"]", |api| {
        api.faults().lose_answer.insert("RunInstances".into(), 1);
    })
    .await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    assert_eq!(
        w.api.calls("RunInstances"),
        2,
        "the lost answer is asked again"
    );
    assert_eq!(
        w.live_instances().await.len(),
        1,
        "the client token made one instance"
    );
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_that_never_answers_fails_and_its_instance_is_still_terminated() {
    let w = world("AKIDTESTOK", "instance_types = [\"c5.metal\"]", |api| {
        api.faults().lose_answer.insert("RunInstances".into(), 100);
    })
    .await;
    let e = failed(w.provider.acquire(&w.run, 1, &w.hooks).await);
    assert!(format!("{e:#}").contains("InternalError"), "{e:#}");
    assert_eq!(
        w.live_instances().await.len(),
        1,
        "moto made it all the same"
    );
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_are_bad_input_and_the_secret_is_never_shown() {
    let w = world("AKIDREFUSED", "instance_types = [\"c5.metal\"]", |api| {
        api.faults().refused_key_id = Some("AKIDREFUSED".into());
    })
    .await;
    let e = failed(w.provider.acquire(&w.run, 1, &w.hooks).await);
    let input = e
        .downcast_ref::<InputError>()
        .expect("an input error: exit 2");
    assert!(input.0.contains("AuthFailure"), "{}", input.0);
    let said = format!("{e:#} {:?}", w.hooks.said.lock().unwrap());
    assert!(!said.contains(SECRET_ACCESS_KEY), "{said}");
    // Nor does it travel: requests are signed with it, never carry it.
    assert!(!w.api.seen().contains(SECRET_ACCESS_KEY));
    // Release checks with EC2 that nothing was made, once the credentials are let in again.
    w.api.faults().refused_key_id = None;
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

/// An instance made straight in moto, as another tool (or a person) would, with `tags`.
async fn foreign_instance(api: &Ec2Api, tags: &[(&str, String)]) -> String {
    let moto = api.moto_client("us-east-1").await;
    let mut spec = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(aws_sdk_ec2::types::Tag::builder().key(*k).value(v).build());
    }
    let mut run = moto
        .run_instances()
        .image_id(AMI)
        .instance_type("c5.metal".into())
        .min_count(1)
        .max_count(1);
    if !tags.is_empty() {
        run = run.tag_specifications(spec.build());
    }
    let out = run.send().await.unwrap();
    out.instances()[0].instance_id().unwrap().to_owned()
}

async fn state_of(api: &Ec2Api, id: &str) -> String {
    let moto = api.moto_client("us-east-1").await;
    let out = moto
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reap_goes_by_the_expiry_of_runs_not_known_here_and_never_touches_the_untagged() {
    let w = world("AKIDTESTOK", "instance_types = [\"c5.metal\"]", |_| {}).await;
    let now = chrono::Utc::now();
    // Another runner's runs, begun a day ago: one expired, one not.
    let old_run = |suffix: &str| {
        format!(
            "{}-{suffix}",
            (now - chrono::TimeDelta::days(1)).format("%Y%m%d-%H%M%S")
        )
    };
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339();
    let untagged = foreign_instance(&w.api, &[]).await;
    let only_metalab = foreign_instance(&w.api, &[("metalab", "some-lab".into())]).await;
    let expired = foreign_instance(
        &w.api,
        &[
            ("metalab:run", old_run("aaaa")),
            (
                "metalab:expires",
                stamp(now - chrono::TimeDelta::minutes(5)),
            ),
        ],
    )
    .await;
    let going = foreign_instance(
        &w.api,
        &[
            ("metalab:run", old_run("bbbb")),
            ("metalab:expires", stamp(now + chrono::TimeDelta::hours(2))),
        ],
    )
    .await;

    let dry = w.provider.reap(true).await.unwrap();
    assert_eq!(dry.len(), 2, "only what carries a run's tag: {dry:?}");
    assert_eq!(
        state_of(&w.api, &expired).await,
        "running",
        "a dry run removes nothing"
    );

    let found = w.provider.reap(false).await.unwrap();
    let outcome = |id: &str| {
        found
            .iter()
            .find(|f| f.what.contains(id))
            .map(|f| f.outcome.clone())
    };
    assert!(
        matches!(
            outcome(&expired),
            Some(metalab::provider::found::Outcome::Removed { .. })
        ),
        "{found:?}"
    );
    assert!(
        matches!(&outcome(&going), Some(metalab::provider::found::Outcome::Kept { why }) if why.contains("another runner")),
        "{found:?}"
    );
    assert_eq!(outcome(&untagged), None);
    assert_eq!(outcome(&only_metalab), None);
    assert_eq!(state_of(&w.api, &expired).await, "terminated");
    for id in [&going, &untagged, &only_metalab] {
        assert_eq!(state_of(&w.api, id).await, "running", "{id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spot_instance_taken_back_during_the_run_is_named_at_release() {
    let w = world(
        "AKIDTESTOK",
        "instance_types = [\"c5.metal\"]\nmarket = \"spot\"",
        |_| {},
    )
    .await;
    let hosts = w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    // AWS takes it back: the machine goes, and EC2 says why.
    let id = w.live_instances().await[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let moto = w.api.moto_client("us-east-1").await;
    moto.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    w.api.faults().spot_interruption = true;
    w.api.stop_instance_sshd();
    let mut out = Collect::default();
    let lost = hosts[0]
        .transport
        .exec(&Command::new("true", Duration::from_secs(10)), &mut out)
        .await;
    assert!(lost.is_err(), "the host is gone");

    w.provider.release(&w.run, &w.hooks).await.unwrap();
    let release = w.hooks.said_in(Stage::Release);
    assert!(
        release.iter().any(|l| l.contains(&id)
            && l.contains("AWS took the spot instance back (Server.SpotInstanceTermination")),
        "{release:?}"
    );
    w.assert_nothing_left().await;
}

/// A server on loopback that answers every request with `status` and `body`, as
/// checkip.amazonaws.com answers with the caller's address.
async fn checkip(status: u16, body: &'static str) -> String {
    let app = axum::Router::new()
        .fallback(move || async move { (axum::http::StatusCode::from_u16(status).unwrap(), body) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn without_ssh_from_ssh_is_admitted_from_the_address_checkip_gives_alone() {
    let url = checkip(200, "127.0.0.1\n").await;
    let w = world(
        "AKIDTESTOK",
        &format!("instance_types = [\"c5.metal\"]\nssh_from = []\ncheckip_url = \"{url}\""),
        |_| {},
    )
    .await;
    w.provider.acquire(&w.run, 1, &w.hooks).await.unwrap();
    let moto = w.api.moto_client("us-east-1").await;
    let groups = moto
        .describe_security_groups()
        .filters(tag("metalab:run", &w.run.to_string()))
        .send()
        .await
        .unwrap();
    let ranges: Vec<_> = groups.security_groups()[0].ip_permissions()[0]
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(ranges, ["127.0.0.1/32"]);
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkip_that_fails_is_bad_input_naming_ssh_from_and_nothing_is_made() {
    let url = checkip(503, "busy").await;
    let w = world(
        "AKIDTESTOK",
        &format!("instance_types = [\"c5.metal\"]\nssh_from = []\ncheckip_url = \"{url}\""),
        |_| {},
    )
    .await;
    let e = failed(w.provider.acquire(&w.run, 1, &w.hooks).await);
    let input = e.downcast_ref::<InputError>().expect("exit 2");
    assert!(input.0.contains("set `ssh_from`"), "{}", input.0);
    assert_eq!(w.api.calls("ImportKeyPair"), 0);
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_presenting_another_host_key_is_refused_and_terminated() {
    let w = world(
        "AKIDTESTOK",
        "instance_types = [\"c5.metal\"]\nssh_timeout = \"3s\"",
        |api| api.faults().impostor_host_key = true,
    )
    .await;
    let e = failed(w.provider.acquire(&w.run, 1, &w.hooks).await);
    assert!(format!("{e:#}").contains("host key"), "{e:#}");
    w.provider.release(&w.run, &w.hooks).await.unwrap();
    w.assert_nothing_left().await;
}
