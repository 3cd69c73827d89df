//! The Metal client against the local Metal API server, over real HTTP on loopback.
//!
//! Each test starts its own server with millisecond timings, drives it through the client,
//! and checks the server's own record (`/_admin/state`) of what the client did.

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use metalab::metal::api::CapacityServer;
use metalab::metal::server::{
    self, DeletedBy, Faults, RequestRecord, ServerConfig, ServerHandle, Shape, Snapshot, Timings,
};
use metalab::metal::{
    ApiToken, ClientConfig, DeviceCreateInput, DeviceState, MetalClient, MetalError, PollPolicy,
    RetryPolicy,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Distinctive, so that a leak is easy to spot in any text.
const TOKEN: &str = "tok-7d1e5c0ffee-secret";
const PROJECT: &str = "proj-metalab";
const RUN_TAG: &str = "run:test-1";

fn timings() -> Timings {
    Timings {
        queued: Duration::from_millis(20),
        provisioning: Duration::from_millis(120),
        deprovisioning: Duration::from_millis(30),
        tick: Duration::from_millis(10),
    }
}

fn server_config(faults: Faults) -> ServerConfig {
    let mut config = ServerConfig::new(ApiToken::new(TOKEN), PROJECT);
    config.timings = timings();
    config.ssh_address = Ipv4Addr::new(127, 0, 0, 1);
    config.ssh_port = 2222;
    config.faults = faults;
    config
}

async fn start(config: ServerConfig) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    server::serve(config, listener).expect("server starts")
}

fn client_config(server: &ServerHandle) -> ClientConfig {
    let mut config = ClientConfig::new(ApiToken::new(TOKEN), PROJECT);
    config.base_url = server.base_url();
    config.retry = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(50),
    };
    config.poll = PollPolicy {
        first_wait: Duration::from_millis(10),
        min_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(30),
    };
    config.request_timeout = Duration::from_secs(5);
    config
}

fn connect(config: ClientConfig) -> MetalClient {
    MetalClient::new(config).expect("client builds")
}

/// A server with `faults` and a client for it.
async fn lab(faults: Faults) -> (ServerHandle, MetalClient) {
    let server = start(server_config(faults)).await;
    let client = connect(client_config(&server));
    (server, client)
}

fn input(hostname: &str) -> DeviceCreateInput {
    DeviceCreateInput {
        plan: "c3.small.x86".into(),
        operating_system: "ubuntu_24_04".into(),
        metro: "da".into(),
        hostname: Some(hostname.into()),
        billing_cycle: Some("hourly".into()),
        tags: vec!["metalab".into(), RUN_TAG.into()],
        termination_time: Some(Utc::now() + TimeDelta::hours(1)),
        ..DeviceCreateInput::default()
    }
}

fn in_ms(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

/// The token in no printed form of the error.
fn assert_token_hidden(error: &MetalError) {
    let shown = format!("{error} / {error:?}");
    assert!(!shown.contains(TOKEN), "token leaked: {shown}");
}

fn gap_ms(earlier: &RequestRecord, later: &RequestRecord) -> i64 {
    (later.at - earlier.at).num_milliseconds()
}

fn statuses(requests: &[&RequestRecord]) -> Vec<u16> {
    requests.iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn a_device_goes_through_its_whole_life() {
    let (server, client) = lab(Faults::default()).await;
    let key = client
        .create_ssh_key("run-key", "ssh-ed25519 AAAAC3Nza test@metalab")
        .await
        .expect("key created");
    let mut wanted = input("host-a");
    wanted.project_ssh_keys = vec![key.id.clone()];
    let created = client.create_device(&wanted).await.expect("created");
    assert_eq!(created.state, DeviceState::Queued);

    let mut percentages = Vec::new();
    let active = client
        .wait_active(&created.id, in_ms(3000), |device| {
            percentages.extend(device.provisioning_percentage)
        })
        .await
        .expect("becomes active");
    assert!(!percentages.is_empty(), "progress was reported");
    assert!(
        percentages.windows(2).all(|w| w[0] <= w[1]),
        "{percentages:?}"
    );
    assert_eq!(active.hostname, "host-a");
    assert_eq!(active.plan_slug(), Some("c3.small.x86"));
    assert_eq!(active.metro_code(), Some("da"));
    assert_eq!(active.operating_system_slug(), Some("ubuntu_24_04"));
    assert_eq!(active.provisioning_percentage, None);
    let ssh = active.public_ipv4_management().expect("public v4");
    assert_eq!(ssh.address, "127.0.0.1");

    let tagged = client.list_devices(Some(RUN_TAG)).await.expect("list");
    assert_eq!(tagged.items.len(), 1);
    let events = client.device_events(&created.id).await.expect("events");
    let kinds: Vec<&str> = events.items.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"provisioning.complete"), "{kinds:?}");

    client
        .delete_device_until_gone(&created.id, in_ms(3000))
        .await
        .expect("deleted");
    let gone = client.get_device(&created.id).await.expect_err("gone");
    assert!(gone.means_gone());
    client.delete_ssh_key(&key.id).await.expect("key deleted");
    assert!(client.list_ssh_keys().await.expect("keys").items.is_empty());

    let state = server.snapshot();
    assert_eq!(state.ssh_port, 2222);
    let record = state.device(&created.id).expect("recorded");
    assert_eq!(
        record.deleted_by,
        Some(DeletedBy::Request { force_delete: true })
    );
    assert!(record.deleted_at.is_some());
    assert_eq!(record.project_ssh_keys, vec![key.id.clone()]);
    assert!(state.ssh_keys[0].deleted_at.is_some());
    let deletes = state.requests_to("DELETE", "/devices/");
    assert!(
        deletes
            .iter()
            .all(|r| r.query.as_deref() == Some("force_delete=true"))
    );
}

#[tokio::test]
async fn requests_carry_the_json_headers() {
    let (server, client) = lab(Faults::default()).await;
    client
        .create_device(&input("host-h"))
        .await
        .expect("created");
    client.list_devices(None).await.expect("list");
    let state = server.snapshot();
    let create = &state.requests_to("POST", "/projects/")[0];
    assert_eq!(create.content_type.as_deref(), Some("application/json"));
    assert_eq!(create.accept.as_deref(), Some("application/json"));
    let list = &state.requests_to("GET", "/projects/")[0];
    assert_eq!(list.accept.as_deref(), Some("application/json"));
    assert_eq!(list.body, None);
    let sent = create.body.as_ref().expect("a body");
    assert_eq!(sent["metro"], "da");
    assert!(sent["termination_time"].is_string());
}

#[tokio::test]
async fn lists_are_read_page_by_page() {
    let server = start(server_config(Faults::default())).await;
    let mut config = client_config(&server);
    config.per_page = 2;
    let client = connect(config);
    for n in 0..5 {
        client
            .create_device(&input(&format!("host-{n}")))
            .await
            .expect("created");
    }
    let mut other = input("other");
    other.tags = vec!["run:other".into()];
    client.create_device(&other).await.expect("created");

    let tagged = client.list_devices(Some(RUN_TAG)).await.expect("list");
    let mut names: Vec<String> = tagged.items.into_iter().map(|d| d.hostname).collect();
    names.sort();
    assert_eq!(names, ["host-0", "host-1", "host-2", "host-3", "host-4"]);
    assert_eq!(
        client.list_devices(None).await.expect("list").items.len(),
        6
    );

    let state = server.snapshot();
    let pages: Vec<Option<&str>> = state
        .requests_to("GET", "/projects/")
        .iter()
        .take(3)
        .map(|r| r.query.as_deref())
        .collect();
    assert_eq!(
        pages,
        [
            Some("tag=run%3Atest-1&per_page=2&page=1"),
            Some("tag=run%3Atest-1&per_page=2&page=2"),
            Some("tag=run%3Atest-1&per_page=2&page=3"),
        ]
    );
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_not_shown() {
    let server = start(server_config(Faults::default())).await;
    let mut config = client_config(&server);
    let wrong = "wrong-token-0b5e55ed";
    config.token = ApiToken::new(wrong);
    let client = connect(config);
    let error = client.list_devices(None).await.expect_err("refused");
    assert!(
        matches!(error, MetalError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    let shown = format!("{error} / {error:?} / {client:?}");
    assert!(!shown.contains(wrong), "{shown}");
    assert_eq!(server.snapshot().requests.len(), 1, "401 is not retried");
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says() {
    let faults = Faults {
        rate_limited_requests: 1,
        retry_after_secs: 1,
        ..Faults::default()
    };
    let server = start(server_config(faults)).await;
    let mut config = client_config(&server);
    config.retry.cap = Duration::from_secs(2);
    let client = connect(config);
    client.list_devices(None).await.expect("list after the 429");
    let state = server.snapshot();
    let requests = state.requests_to("GET", "/projects/");
    assert_eq!(statuses(&requests), [429, 200]);
    assert!(
        gap_ms(requests[0], requests[1]) >= 1000,
        "waited the second"
    );
}

#[tokio::test]
async fn a_huge_retry_after_is_capped() {
    let faults = Faults {
        rate_limited_requests: 1,
        retry_after_secs: 3600,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    client.list_devices(None).await.expect("list after the 429");
    let state = server.snapshot();
    let requests = state.requests_to("GET", "/projects/");
    assert_eq!(statuses(&requests), [429, 200]);
    let gap = gap_ms(requests[0], requests[1]);
    assert!(
        (50..1000).contains(&gap),
        "waited the 50 ms cap, not an hour: {gap} ms"
    );
}

#[tokio::test]
async fn without_retry_after_the_rate_limit_reset_is_honoured() {
    let faults = Faults {
        rate_limited_requests: 1,
        retry_after_secs: 1,
        send_retry_after: false,
        ..Faults::default()
    };
    let server = start(server_config(faults)).await;
    let mut config = client_config(&server);
    config.retry.cap = Duration::from_secs(3);
    let client = connect(config);
    client.list_devices(None).await.expect("list after the 429");
    let state = server.snapshot();
    let requests = state.requests_to("GET", "/projects/");
    assert_eq!(statuses(&requests), [429, 200]);
    assert!(
        gap_ms(requests[0], requests[1]) >= 1000,
        "waited for the reset"
    );
}

#[tokio::test]
async fn a_429_that_never_ends_gives_up_after_the_attempts() {
    let faults = Faults {
        rate_limited_requests: 100,
        retry_after_secs: 0,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    let error = client.get_device("any").await.expect_err("still limited");
    assert!(
        matches!(error, MetalError::RateLimited { attempts: 5, .. }),
        "{error:?}"
    );
    assert_eq!(server.snapshot().requests.len(), 5);
}

#[tokio::test]
async fn every_answer_carries_rate_limit_headers_and_the_window_is_enforced() {
    let mut config = server_config(Faults::default());
    config.rate_limit.limit = 2;
    config.rate_limit.window = Duration::from_secs(3600);
    let server = start(config).await;
    let http = reqwest::Client::new();
    let url = format!("{}/devices/nope", server.base_url());
    let mut answers = Vec::new();
    for token in [TOKEN, "bad", TOKEN] {
        let answer = http
            .get(&url)
            .header("X-Auth-Token", token)
            .send()
            .await
            .expect("answer");
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        answers.push((
            answer.status().as_u16(),
            header("x-ratelimit-limit"),
            header("x-ratelimit-remaining"),
            header("x-ratelimit-reset").is_some(),
            header("retry-after").is_some(),
        ));
    }
    let two = Some("2".to_owned());
    assert_eq!(
        answers,
        [
            (404, two.clone(), Some("1".into()), true, false),
            (401, two.clone(), Some("0".into()), true, false),
            (429, two, Some("0".into()), true, true),
        ]
    );
}

#[tokio::test]
async fn a_500_on_create_adopts_the_half_created_device() {
    let faults = Faults {
        create_500_after_create: 1,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    let device = client
        .create_device_safely(&input("host-500"), RUN_TAG)
        .await
        .expect("adopted");
    let state = server.snapshot();
    assert_eq!(state.devices.len(), 1, "exactly one device exists");
    assert_eq!(state.devices[0].id(), device.id);
    assert_eq!(statuses(&state.requests_to("POST", "/projects/")), [500]);
    assert_eq!(statuses(&state.requests_to("GET", "/projects/")), [200]);
}

#[tokio::test]
async fn a_502_before_create_sends_the_create_again() {
    let faults = Faults {
        bad_gateway_requests: 1,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    let mut wanted = input("host-502");
    wanted.tags = vec!["metalab".into()];
    let device = client
        .create_device_safely(&wanted, RUN_TAG)
        .await
        .expect("created on the second try");
    assert!(device.tags.iter().any(|t| t == RUN_TAG), "run tag added");
    let state = server.snapshot();
    assert_eq!(state.live_devices().len(), 1);
    assert_eq!(
        statuses(&state.requests_to("POST", "/projects/")),
        [502, 201]
    );
    assert_eq!(statuses(&state.requests_to("GET", "/projects/")), [200]);
}

#[tokio::test]
async fn a_load_balancer_502_is_retried_and_reported_by_its_status_line() {
    let faults = Faults {
        bad_gateway_requests: 2,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    assert!(
        client
            .list_devices(None)
            .await
            .expect("third try")
            .items
            .is_empty()
    );
    assert_eq!(server.snapshot().requests.len(), 3);

    server.set_faults(Faults {
        bad_gateway_requests: 10,
        ..Faults::default()
    });
    let error = client.get_device("x").await.expect_err("502 every time");
    match &error {
        MetalError::Server {
            status: 502,
            attempts: 5,
            message,
        } => assert_eq!(message, "502 Bad Gateway"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn no_capacity_is_reported_by_check_and_create() {
    let faults = Faults {
        no_capacity_metros: vec!["da".into()],
        ..Faults::default()
    };
    let mut config = server_config(faults);
    config.metros.insert("sv".into(), 0);
    let server = start(config).await;
    let client = connect(client_config(&server));

    assert!(
        !client
            .has_capacity("da", "c3.small.x86", 1)
            .await
            .expect("check")
    );
    assert!(
        !client
            .has_capacity("sv", "c3.small.x86", 1)
            .await
            .expect("check")
    );
    assert!(
        client
            .has_capacity("ny", "c3.small.x86", 1)
            .await
            .expect("check")
    );
    assert!(
        !client
            .has_capacity("ny", "c3.small.x86", 11)
            .await
            .expect("check")
    );
    let lines = client
        .check_capacity(&[CapacityServer {
            metro: "any".into(),
            plan: "c3.small.x86".into(),
            quantity: 1,
            available: None,
        }])
        .await
        .expect("check");
    assert_eq!(lines[0].available, Some(true));

    let error = client
        .create_device(&input("host-da"))
        .await
        .expect_err("no room");
    assert!(error.is_no_capacity(), "{error:?}");
    assert!(!error.is_delete_while_provisioning());
    let mut anywhere = input("host-any");
    anywhere.metro = "any".into();
    let placed = client.create_device(&anywhere).await.expect("placed");
    assert_ne!(placed.metro_code(), Some("da"));
    assert_ne!(placed.metro_code(), Some("sv"));
}

#[tokio::test]
async fn stuck_provisioning_ends_at_the_deadline_and_the_device_is_deleted() {
    let faults = Faults {
        stuck_provisioning: true,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    let device = client
        .create_device(&input("host-stuck"))
        .await
        .expect("created");
    let started = Instant::now();
    let error = client
        .wait_active(&device.id, in_ms(400), |_| {})
        .await
        .expect_err("never active");
    assert!(
        matches!(&error, MetalError::Deadline { last_state, .. } if last_state == "provisioning"),
        "{error:?}"
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(2));
    client
        .delete_device_until_gone(&device.id, in_ms(3000))
        .await
        .expect("deleted");
    assert!(server.snapshot().live_devices().is_empty());
}

#[tokio::test]
async fn a_failed_device_is_reported_then_forbidden_and_still_deletable() {
    let faults = Faults {
        fail_provisioning: true,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    let device = client
        .create_device(&input("host-fail"))
        .await
        .expect("created");
    let error = client
        .wait_active(&device.id, in_ms(3000), |_| {})
        .await
        .expect_err("failed");
    assert!(matches!(&error, MetalError::DeviceFailed { id, .. } if id == &device.id));
    let forbidden = client.get_device(&device.id).await.expect_err("403 now");
    assert!(matches!(
        forbidden,
        MetalError::Unauthorized { status: 403, .. }
    ));
    assert!(forbidden.means_gone());
    client
        .delete_device_until_gone(&device.id, in_ms(3000))
        .await
        .expect("deleted");
    let state = server.snapshot();
    assert!(state.live_devices().is_empty());
    assert_eq!(statuses(&state.requests_to("DELETE", "/devices/")), [204]);
}

#[tokio::test]
async fn a_delete_refused_while_provisioning_is_repeated_until_it_goes_through() {
    let faults = Faults {
        refuse_delete_while_provisioning: true,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    let device = client
        .create_device(&input("host-busy"))
        .await
        .expect("created");
    client
        .delete_device_until_gone(&device.id, in_ms(3000))
        .await
        .expect("deleted in the end");
    let state = server.snapshot();
    let deletes = statuses(&state.requests_to("DELETE", "/devices/"));
    assert!(deletes.len() >= 2, "{deletes:?}");
    assert!(
        deletes[..deletes.len() - 1].iter().all(|s| *s == 422),
        "{deletes:?}"
    );
    assert_eq!(deletes.last(), Some(&204));
    let record = state.device(&device.id).expect("recorded");
    assert!(record.is_gone());
    assert!(record.deleted_at.is_some());
    let after = client.get_device(&device.id).await.expect_err("gone");
    assert!(after.means_gone());
}

#[tokio::test]
async fn a_delete_refused_past_the_deadline_says_so() {
    let faults = Faults {
        refuse_delete_while_provisioning: true,
        stuck_provisioning: true,
        ..Faults::default()
    };
    let (_server, client) = lab(faults).await;
    let device = client
        .create_device(&input("host-jam"))
        .await
        .expect("created");
    let error = client
        .delete_device_until_gone(&device.id, in_ms(200))
        .await
        .expect_err("still provisioning");
    assert!(
        matches!(
            error,
            MetalError::Deadline {
                goal: "deleted",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn termination_time_deletes_unlocked_devices_by_itself() {
    let (server, client) = lab(Faults::default()).await;
    let soon = Utc::now() + TimeDelta::milliseconds(150);
    let mut expiring = input("host-expiring");
    expiring.termination_time = Some(soon);
    let mut locked = input("host-locked");
    locked.termination_time = Some(soon);
    locked.locked = Some(true);
    let expiring = client.create_device(&expiring).await.expect("created");
    let locked = client.create_device(&locked).await.expect("created");
    let requests_before = server.snapshot().requests.len();

    tokio::time::sleep(Duration::from_millis(400)).await;
    let state = server.snapshot();
    assert_eq!(
        state.requests.len(),
        requests_before,
        "no request moved it on"
    );
    let gone = state.device(&expiring.id).expect("recorded");
    assert!(gone.is_gone());
    assert_eq!(gone.deleted_by, Some(DeletedBy::TerminationTime));
    let kept = state.device(&locked.id).expect("recorded");
    assert!(!kept.is_gone());
    assert_eq!(kept.device.state, DeviceState::Active);
}

#[tokio::test]
async fn old_client_wire_quirks_are_accepted() {
    let (server, _client) = lab(Faults::default()).await;
    let http = reqwest::Client::new();
    let base = server.base_url();
    let created: Value = http
        .post(format!("{base}/projects/{PROJECT}/devices"))
        .header("X-Auth-Token", TOKEN)
        .json(&json!({
            "plan": "c3.small.x86", "operating_system": "ubuntu_24_04",
            "facility": ["ny5", "any"], "spot_instance": true, "spot_price_max": "1.5",
            "customdata": "{\"role\": \"ci\"}"
        }))
        .send()
        .await
        .expect("answer")
        .error_for_status()
        .expect("201")
        .json()
        .await
        .expect("device JSON");
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["metro"]["code"], "ny");

    let deleted = http
        .delete(format!("{base}/devices/{id}"))
        .header("X-Auth-Token", TOKEN)
        .json(&json!({"force_delete": true}))
        .send()
        .await
        .expect("answer");
    assert_eq!(deleted.status().as_u16(), 204);
    assert!(deleted.bytes().await.expect("body").is_empty());

    let capacity: Value = http
        .post(format!("{base}/capacity/metros"))
        .header("X-Auth-Token", TOKEN)
        .json(&json!({"servers": [{"metro": "da", "plan": "c3.small.x86", "quantity": 1}]}))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(capacity["servers"][0]["available"], true);

    let state = server.snapshot();
    let record = state.device(&id).expect("recorded");
    assert_eq!(record.spot_price_max, Some(1.5));
    assert_eq!(record.customdata, Some(json!({"role": "ci"})));
    assert_eq!(
        record.deleted_by,
        Some(DeletedBy::Request { force_delete: true })
    );
}

#[tokio::test]
async fn admin_endpoints_set_faults_and_show_the_state() {
    let (server, client) = lab(Faults::default()).await;
    let http = reqwest::Client::new();
    let admin = server.admin_url();
    let set: Faults = http
        .post(format!("{admin}/faults"))
        .json(&json!({"no_capacity_metros": ["da"]}))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("faults JSON");
    assert_eq!(set.no_capacity_metros, ["da"]);
    let typo = http
        .post(format!("{admin}/faults"))
        .json(&json!({"no_capacity": ["da"]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        typo.status().as_u16(),
        422,
        "unknown fault names are refused"
    );

    let error = client
        .create_device(&input("host-x"))
        .await
        .expect_err("no room");
    assert!(error.is_no_capacity());
    let state: Snapshot = http
        .get(format!("{admin}/state"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("state JSON");
    assert_eq!(state.faults.no_capacity_metros, ["da"]);
    assert_eq!(statuses(&state.requests_to("POST", "/projects/")), [422]);
    assert!(state.devices.is_empty());
}

#[tokio::test]
async fn the_server_answers_unknown_things_in_the_api_error_form() {
    let (server, client) = lab(Faults::default()).await;
    let http = reqwest::Client::new();
    let base = server.base_url();
    let unknown_path: Value = http
        .get(format!("{base}/no/such/thing"))
        .header("X-Auth-Token", TOKEN)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(unknown_path, json!({"error": "Not found"}));
    let invalid: Value = http
        .post(format!("{base}/projects/{PROJECT}/devices"))
        .header("X-Auth-Token", TOKEN)
        .json(&json!({"hostname": "x"}))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        invalid["errors"].as_array().map(Vec::len),
        Some(3),
        "{invalid}"
    );

    let mut other_project = client_config(&server);
    other_project.project_id = "someone-else".into();
    let error = connect(other_project)
        .list_devices(None)
        .await
        .expect_err("no such project");
    assert!(matches!(error, MetalError::NotFound { status: 404, .. }));
    let error = client
        .delete_device("no-such-device")
        .await
        .expect_err("404");
    assert!(error.means_gone());
    client
        .delete_device_until_gone("no-such-device", in_ms(1000))
        .await
        .expect("already gone counts as deleted");
}

/// The strict server sends only the contract's required fields, and unknown ones besides; the
/// client reads every answer all the same.
#[tokio::test]
async fn the_strict_shape_is_read_through_a_whole_life() {
    let mut config = server_config(Faults::default());
    config.shape = Shape::Strict;
    let server = start(config).await;
    let client = connect(client_config(&server));
    let key = client
        .create_ssh_key("run-key", "ssh-ed25519 AAAAC3Nza test@metalab")
        .await
        .expect("a key without created_at reads");
    assert_eq!(key.created_at, None);
    assert!(
        client
            .has_capacity("da", "c3.small.x86", 1)
            .await
            .expect("check")
    );
    let mut wanted = input("host-s");
    wanted.project_ssh_keys = vec![key.id.clone()];
    let created = client.create_device(&wanted).await.expect("created");
    assert_eq!((created.created_at, created.metro_code()), (None, None));
    let active = client
        .wait_active(&created.id, in_ms(3000), |_| {})
        .await
        .expect("becomes active");
    assert_eq!(
        active
            .public_ipv4_management()
            .map(|ip| ip.address.as_str()),
        Some("127.0.0.1")
    );
    let tagged = client.list_devices(Some(RUN_TAG)).await.expect("list");
    assert_eq!((tagged.items.len(), tagged.unreadable.len()), (1, 0));
    let events = client.device_events(&created.id).await.expect("events");
    assert!(
        events
            .items
            .iter()
            .any(|e| e.kind == "provisioning.complete")
    );
    client
        .delete_device_until_gone(&created.id, in_ms(3000))
        .await
        .expect("deleted");
    client.delete_ssh_key(&key.id).await.expect("key deleted");

    // What went over the wire: no timestamps, no nested objects, unknown fields.
    let http = reqwest::Client::new();
    let keys: Value = http
        .get(format!("{}/projects/{PROJECT}/ssh-keys", server.base_url()))
        .header("X-Auth-Token", TOKEN)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert!(keys["meta"].get("total").is_none(), "{keys}");
    let device: Value = http
        .post(format!("{}/projects/{PROJECT}/devices", server.base_url()))
        .header("X-Auth-Token", TOKEN)
        .json(&input("host-raw"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    for absent in [
        "created_at",
        "plan",
        "metro",
        "short_id",
        "termination_time",
    ] {
        assert!(device.get(absent).is_none(), "{absent} in {device}");
    }
    assert!(device.get("href").is_some() && device.get("metalab_strict_extra").is_some());
}

#[tokio::test]
async fn a_list_reads_on_past_an_element_it_cannot_read() {
    let faults = Faults {
        unreadable_in_lists: vec!["host-odd".into(), "odd-key".into()],
        ..Faults::default()
    };
    let (_server, client) = lab(faults).await;
    let fine = client.create_device(&input("host-fine")).await.expect("ok");
    let odd = client.create_device(&input("host-odd")).await.expect("ok");
    client
        .create_ssh_key("odd-key", "ssh-ed25519 AAAA x")
        .await
        .expect("ok");
    client
        .create_ssh_key("fine-key", "ssh-ed25519 AAAA y")
        .await
        .expect("ok");

    let devices = client.list_devices(Some(RUN_TAG)).await.expect("list");
    let names: Vec<&str> = devices.items.iter().map(|d| d.hostname.as_str()).collect();
    assert_eq!(names, ["host-fine"]);
    assert_eq!(devices.items[0].id, fine.id);
    assert_eq!(devices.unreadable.len(), 1);
    let unread = &devices.unreadable[0];
    assert_eq!(unread.id(), Some(odd.id.as_str()));
    assert!(unread.tags().contains(&RUN_TAG));
    assert!(
        unread.error.contains("state") || unread.error.contains("invalid type"),
        "{unread}"
    );

    let keys = client.list_ssh_keys().await.expect("list");
    let labels: Vec<&str> = keys.items.iter().map(|k| k.label.as_str()).collect();
    assert_eq!(labels, ["fine-key"]);
    assert_eq!(keys.unreadable.len(), 1);
    assert_eq!(keys.unreadable[0].text("label"), None);
}

#[tokio::test]
async fn a_device_hidden_behind_a_403_is_failed_with_the_reason_its_events_give() {
    let faults = Faults {
        fail_provisioning: true,
        hide_failed_devices: true,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    let device = client
        .create_device(&input("host-hid"))
        .await
        .expect("created");
    let error = client
        .wait_active(&device.id, in_ms(3000), |seen| {
            assert_ne!(seen.state, DeviceState::Failed, "never shown failed")
        })
        .await
        .expect_err("failed");
    let state = server.snapshot();
    let said = &state
        .device(&device.id)
        .expect("recorded")
        .events
        .last()
        .expect("events")
        .body;
    match &error {
        MetalError::DeviceFailed { id, reason } => {
            assert_eq!(id, &device.id);
            assert_eq!(reason.as_deref(), Some(said.as_str()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!error.means_gone(), "a failure, not a disappearance");
    assert!(
        state
            .requests_to("GET", "/devices/")
            .iter()
            .any(|r| r.status == 403)
    );
}

#[tokio::test]
async fn a_key_create_whose_answer_cannot_be_read_may_have_made_the_key() {
    let faults = Faults {
        unreadable_key_creates: 1,
        ..Faults::default()
    };
    let (server, client) = lab(faults).await;
    let error = client
        .create_ssh_key("run-key", "ssh-ed25519 AAAA k")
        .await
        .expect_err("no id in the answer");
    assert!(matches!(error, MetalError::Decode(_)), "{error:?}");
    assert!(error.may_have_acted() && !error.is_transient());
    assert_eq!(server.snapshot().ssh_keys.len(), 1);
    let listed = client.list_ssh_keys().await.expect("list");
    assert_eq!(listed.items[0].label, "run-key");
}

/// Every error variant the tests can provoke, with log lines captured at every level: the
/// token shows up in none of them.
#[tokio::test]
async fn the_token_appears_in_no_error_and_no_log_line() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut errors = Vec::new();
    let (server, client) = lab(Faults::default()).await;
    errors.push(client.get_device("missing").await.expect_err("404"));
    errors.push(client.create_ssh_key("", "").await.expect_err("422"));
    errors.push(
        client
            .create_device_safely(&DeviceCreateInput::default(), RUN_TAG)
            .await
            .expect_err("no hostname"),
    );
    server.set_faults(Faults {
        rate_limited_requests: 100,
        retry_after_secs: 0,
        ..Faults::default()
    });
    errors.push(client.list_devices(None).await.expect_err("429"));
    server.set_faults(Faults {
        bad_gateway_requests: 100,
        ..Faults::default()
    });
    errors.push(client.list_devices(None).await.expect_err("502"));
    server.set_faults(Faults {
        fail_provisioning: true,
        ..Faults::default()
    });
    let failing = client.create_device(&input("f")).await.expect("created");
    errors.push(
        client
            .wait_active(&failing.id, in_ms(3000), |_| {})
            .await
            .expect_err("failed"),
    );
    errors.push(client.get_device(&failing.id).await.expect_err("403"));
    server.set_faults(Faults {
        stuck_provisioning: true,
        ..Faults::default()
    });
    let stuck = client.create_device(&input("s")).await.expect("created");
    errors.push(
        client
            .wait_active(&stuck.id, in_ms(50), |_| {})
            .await
            .expect_err("deadline"),
    );
    let mut wrong = client_config(&server);
    wrong.token = ApiToken::new(format!("{TOKEN}-but-wrong"));
    errors.push(
        MetalClient::new(wrong)
            .expect("builds")
            .list_devices(None)
            .await
            .expect_err("401"),
    );
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut unreachable = client_config(&server);
    unreachable.base_url = format!("http://127.0.0.1:{closed_port}/metal/v1");
    errors.push(
        MetalClient::new(unreachable)
            .expect("builds")
            .get_device("x")
            .await
            .expect_err("transport"),
    );

    let kinds: Vec<String> = errors
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    for kind in [
        "NotFound",
        "Unprocessable",
        "InvalidInput",
        "RateLimited",
        "Server",
        "DeviceFailed",
        "Unauthorized",
        "Deadline",
        "Transport",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} not provoked: {kinds:?}"
        );
    }
    for error in &errors {
        assert_token_hidden(error);
    }
    let logged = logs.text();
    assert!(logged.contains("Metal API"), "logs were captured");
    assert!(!logged.contains(TOKEN), "token in the logs");
}

/// The `metal-api-server` binary: starts, prints its URLs, applies its flags, serves.
#[tokio::test]
async fn the_server_binary_serves_the_api() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_metal-api-server"))
        .args([
            "--project",
            PROJECT,
            "--queued",
            "10ms",
            "--provisioning",
            "50ms",
        ])
        .args([
            "--ssh-address",
            "127.0.0.9",
            "--metro",
            "da=1",
            "--metro",
            "ny=5",
        ])
        .args(["--faults", r#"{"no_capacity_metros": ["ny"]}"#])
        .env("METAL_API_SERVER_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base_url = lines.next_line().await.expect("read").expect("a URL line");
    assert!(base_url.starts_with("http://127.0.0.1:") && base_url.ends_with("/metal/v1"));

    let mut config = ClientConfig::new(ApiToken::new(TOKEN), PROJECT);
    config.base_url = base_url;
    config.poll = PollPolicy {
        first_wait: Duration::from_millis(10),
        min_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(20),
    };
    let client = connect(config);
    assert!(!client.has_capacity("ny", "p", 1).await.expect("check"));
    let device = client
        .create_device(&input("bin-host"))
        .await
        .expect("created");
    let active = client
        .wait_active(&device.id, in_ms(5000), |_| {})
        .await
        .expect("active");
    let ssh = active.public_ipv4_management().expect("v4");
    assert_eq!(ssh.address, "127.0.0.9");
    let full = client
        .create_device(&input("second"))
        .await
        .expect_err("da holds one");
    assert!(full.is_no_capacity());
    child.kill().await.expect("stopped");
}

/// `metal-api-server --strict` sends the strict shape.
#[tokio::test]
async fn the_server_binary_has_a_strict_switch() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_metal-api-server"))
        .args(["--project", PROJECT, "--strict"])
        .env("METAL_API_SERVER_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("stdout");
    // Kept until the end: the server prints a second line.
    let mut lines = BufReader::new(stdout).lines();
    let base_url = lines.next_line().await.expect("read").expect("a URL line");
    let device: Value = reqwest::Client::new()
        .post(format!("{base_url}/projects/{PROJECT}/devices"))
        .header("X-Auth-Token", TOKEN)
        .json(&input("bin-strict"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON");
    assert_eq!(device["hostname"], "bin-strict");
    assert!(device.get("created_at").is_none(), "{device}");
    assert!(device.get("metalab_strict_extra").is_some(), "{device}");
    child.kill().await.expect("stopped");
}

/// A `MakeWriter` that keeps everything logged, for the token-leak test.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
