//! What the local server is started with, and the faults it can inject.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::shape::Shape;
use crate::metal::ApiToken;

/// Everything the local Metal API server is started with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The only token accepted in `X-Auth-Token`.
    pub token: ApiToken,
    /// The only project that exists; other project ids answer 404.
    pub project_id: String,
    pub timings: Timings,
    pub rate_limit: RateLimit,
    /// How many devices each metro can hold at once. A metro not listed has none.
    pub metros: BTreeMap<String, u32>,
    /// The public management IPv4 of every device: where the provider connects over SSH.
    pub ssh_address: Ipv4Addr,
    /// The SSH port behind `ssh_address`. The API has no field for it, so the provider is told
    /// through its own config; the server only reports it in `/_admin/state`.
    pub ssh_port: u16,
    /// Faults active from the start; `POST /_admin/faults` replaces them at run time.
    pub faults: Faults,
    /// Whether answers carry every field, or only the contract's required ones (and unknown
    /// ones besides).
    pub shape: Shape,
}

impl ServerConfig {
    /// A server for `project_id` with room in four metros, reachable on 127.0.0.1:22.
    pub fn new(token: ApiToken, project_id: impl Into<String>) -> Self {
        let metros = ["am", "da", "ny", "sv"]
            .into_iter()
            .map(|metro| (metro.to_owned(), 10))
            .collect();
        Self {
            token,
            project_id: project_id.into(),
            timings: Timings::default(),
            rate_limit: RateLimit::default(),
            metros,
            ssh_address: Ipv4Addr::LOCALHOST,
            ssh_port: 22,
            faults: Faults::default(),
            shape: Shape::Full,
        }
    }
}

/// How long each device state lasts. Real provisioning takes minutes; tests use milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    pub queued: Duration,
    pub provisioning: Duration,
    pub deprovisioning: Duration,
    /// How often the background task moves devices on and enforces `termination_time`.
    pub tick: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            queued: Duration::from_secs(2),
            provisioning: Duration::from_secs(10),
            deprovisioning: Duration::from_secs(2),
            tick: Duration::from_millis(200),
        }
    }
}

/// The server's own fixed-window request limit, reported on every answer through
/// `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            limit: 5000,
            window: Duration::from_secs(3600),
        }
    }
}

/// Failures to inject. Counts are used up one request at a time; flags stay until changed.
///
/// Unknown fields are rejected, so that a misspelt fault fails loudly instead of testing
/// nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer the next N API requests with 429.
    pub rate_limited_requests: u32,
    /// The wait those 429s ask for, in seconds.
    pub retry_after_secs: u64,
    /// Whether those 429s carry `Retry-After`; without it only `X-RateLimit-Reset` says when
    /// to come back.
    pub send_retry_after: bool,
    /// Answer the next N API requests with a non-JSON 502, as a load balancer in front of the
    /// API would. Nothing behind it sees the request.
    pub bad_gateway_requests: u32,
    /// Answer the next N device creates with 500 after the device was created.
    pub create_500_after_create: u32,
    /// Metros that have no capacity, whatever `ServerConfig::metros` says.
    pub no_capacity_metros: Vec<String>,
    /// Devices created while this is set never finish provisioning.
    pub stuck_provisioning: bool,
    /// Devices created while this is set end in `failed`; once a GET has shown that, GETs
    /// answer 403.
    pub fail_provisioning: bool,
    /// A failed device answers 403 to a GET at once, without ever showing `failed`, as the
    /// contract allows.
    pub hide_failed_devices: bool,
    /// Devices with these hostnames and SSH keys with these labels come in list answers in a
    /// form no client can read: a device's `state`, a key's `label`, as an object.
    pub unreadable_in_lists: Vec<String>,
    /// The next N SSH key creates make the key, and answer 201 without its `id`.
    pub unreadable_key_creates: u32,
    /// Deleting an SSH key answers 422.
    pub refuse_key_deletes: bool,
    /// Deleting a queued or provisioning device answers 422 "Cannot delete a device while it
    /// is provisioning".
    pub refuse_delete_while_provisioning: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rate_limited_requests: 0,
            retry_after_secs: 1,
            send_retry_after: true,
            bad_gateway_requests: 0,
            create_500_after_create: 0,
            no_capacity_metros: Vec::new(),
            stuck_provisioning: false,
            fail_provisioning: false,
            hide_failed_devices: false,
            unreadable_in_lists: Vec::new(),
            unreadable_key_creates: 0,
            refuse_key_deletes: false,
            refuse_delete_while_provisioning: false,
        }
    }
}
