//! One device on the server, and how it walks through its states over time.

use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::Timings;
use super::ids;
use super::wire::CreateRequest;
use crate::metal::api::{
    Device, DeviceState, Event, IpAddress, MetroRef, OperatingSystemRef, PlanRef,
};

/// The body of the event that says a device failed to provision.
pub const FAILURE: &str = "Provisioning failed: the operating system image could not be written";

/// How a device's provisioning ends, fixed when it is created from the faults then active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    Active,
    StuckProvisioning,
    Failed,
}

/// What deleted a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum DeletedBy {
    Request { force_delete: bool },
    TerminationTime,
}

/// A device and everything the server knows about it, kept after deletion so that tests can
/// see what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub project_id: String,
    /// What the API shows, kept current by [`DeviceRecord::advance`].
    pub device: Device,
    pub fate: Fate,
    /// When the current state began.
    pub state_since: DateTime<Utc>,
    /// Whether a GET has shown the `failed` state; later GETs answer 403.
    pub failure_shown: bool,
    pub userdata: Option<String>,
    pub customdata: Option<Value>,
    pub spot_instance: Option<bool>,
    pub spot_price_max: Option<f64>,
    pub project_ssh_keys: Vec<String>,
    pub deleted_by: Option<DeletedBy>,
    /// When the device reached `deleted` and disappeared from the API.
    pub deleted_at: Option<DateTime<Utc>>,
    pub events: Vec<Event>,
}

impl DeviceRecord {
    /// A new `queued` device in `metro`.
    pub fn create(
        project_id: &str,
        request: CreateRequest,
        metro: String,
        fate: Fate,
        ssh_address: Ipv4Addr,
        now: DateTime<Utc>,
    ) -> Self {
        let id = ids::uuid();
        let short_id = id[..8].to_owned();
        let device = Device {
            hostname: request
                .hostname
                .unwrap_or_else(|| format!("metal-{short_id}")),
            id,
            short_id,
            description: request.description,
            state: DeviceState::Queued,
            tags: request.tags,
            created_at: Some(now),
            termination_time: request.termination_time,
            locked: request.locked,
            plan: Some(PlanRef { slug: request.plan }),
            metro: Some(MetroRef { code: metro }),
            operating_system: Some(OperatingSystemRef {
                slug: request.operating_system,
            }),
            provisioning_percentage: None,
            ip_addresses: ip_addresses(ssh_address),
        };
        let mut record = Self {
            project_id: project_id.to_owned(),
            device,
            fate,
            state_since: now,
            failure_shown: false,
            userdata: request.userdata,
            customdata: request.customdata,
            spot_instance: request.spot_instance,
            spot_price_max: request.spot_price_max,
            project_ssh_keys: request.project_ssh_keys,
            deleted_by: None,
            deleted_at: None,
            events: Vec::new(),
        };
        record.log_event("instance.created", "Device created and queued", now);
        record
    }

    pub fn id(&self) -> &str {
        &self.device.id
    }

    pub fn state(&self) -> &DeviceState {
        &self.device.state
    }

    /// Gone from the API: only `/_admin/state` still shows it.
    pub fn is_gone(&self) -> bool {
        self.device.state == DeviceState::Deleted
    }

    pub fn is_provisioning(&self) -> bool {
        matches!(
            self.device.state,
            DeviceState::Queued | DeviceState::Provisioning
        )
    }

    /// Starts deprovisioning, unless that is already under way.
    pub fn delete(&mut self, by: DeletedBy, now: DateTime<Utc>) {
        if matches!(
            self.device.state,
            DeviceState::Deprovisioning | DeviceState::Deleted
        ) {
            return;
        }
        let body = match by {
            DeletedBy::TerminationTime => "Termination time reached, deprovisioning",
            DeletedBy::Request { .. } => "Deletion requested, deprovisioning",
        };
        self.deleted_by = Some(by);
        self.enter(
            DeviceState::Deprovisioning,
            now,
            "instance.deprovisioning",
            body,
        );
    }

    /// Moves the device to where it is at `now`: enforces `termination_time`, walks every
    /// state whose time is up, and updates `provisioning_percentage`.
    pub fn advance(&mut self, now: DateTime<Utc>, timings: &Timings) {
        if self.termination_due(now) {
            self.delete(DeletedBy::TerminationTime, now);
        }
        while self.step(now, timings) {}
        self.device.provisioning_percentage = self.percentage(now, timings);
    }

    fn termination_due(&self, now: DateTime<Utc>) -> bool {
        !self.device.locked && self.device.termination_time.is_some_and(|at| at <= now)
    }

    /// Takes one transition whose time is up. False when there is none.
    fn step(&mut self, now: DateTime<Utc>, timings: &Timings) -> bool {
        let elapsed = self.elapsed(now);
        match self.device.state {
            DeviceState::Queued if elapsed >= timings.queued => {
                let at = self.state_since + timings.queued;
                self.enter(
                    DeviceState::Provisioning,
                    at,
                    "provisioning.started",
                    "Provisioning started",
                );
            }
            DeviceState::Provisioning if elapsed >= timings.provisioning => {
                let at = self.state_since + timings.provisioning;
                match self.fate {
                    Fate::Active => self.enter(
                        DeviceState::Active,
                        at,
                        "provisioning.complete",
                        "Provisioning complete",
                    ),
                    Fate::Failed => {
                        self.enter(DeviceState::Failed, at, "provisioning.failed", FAILURE)
                    }
                    Fate::StuckProvisioning => return false,
                }
            }
            DeviceState::Deprovisioning if elapsed >= timings.deprovisioning => {
                let at = self.state_since + timings.deprovisioning;
                self.enter(
                    DeviceState::Deleted,
                    at,
                    "instance.deleted",
                    "Device deleted",
                );
                self.deleted_at = Some(at);
            }
            _ => return false,
        }
        true
    }

    /// Rises linearly over the provisioning time; a stuck device stops at 99.
    fn percentage(&self, now: DateTime<Utc>, timings: &Timings) -> Option<f64> {
        if self.device.state != DeviceState::Provisioning {
            return None;
        }
        let total = timings.provisioning.as_secs_f64().max(f64::EPSILON);
        let share = self.elapsed(now).as_secs_f64() / total;
        Some((share * 100.0).clamp(0.0, 99.0).floor())
    }

    fn elapsed(&self, now: DateTime<Utc>) -> Duration {
        (now - self.state_since).to_std().unwrap_or(Duration::ZERO)
    }

    fn enter(&mut self, state: DeviceState, at: DateTime<Utc>, kind: &str, body: &str) {
        self.device.state = state;
        self.state_since = at;
        self.log_event(kind, body, at);
    }

    fn log_event(&mut self, kind: &str, body: &str, at: DateTime<Utc>) {
        self.events.push(Event {
            id: ids::uuid(),
            kind: kind.to_owned(),
            body: body.to_owned(),
            state: self.device.state.to_string(),
            created_at: Some(at),
        });
    }
}

/// A public IPv6, a private IPv4 and the public IPv4 the provider connects to. The first two
/// are from documentation ranges (RFC 3849, RFC 5737): nothing ever answers there.
fn ip_addresses(ssh_address: Ipv4Addr) -> Vec<IpAddress> {
    let entry = |family, public, address: String, gateway: &str, cidr| IpAddress {
        address_family: family,
        public,
        management: true,
        address,
        gateway: gateway.to_owned(),
        cidr,
    };
    vec![
        entry(6, true, "2001:db8::2".into(), "2001:db8::1", 127),
        entry(4, false, "192.0.2.2".into(), "192.0.2.1", 31),
        entry(
            4,
            true,
            ssh_address.to_string(),
            &ssh_address.to_string(),
            31,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metal::server::wire::{Location, parse_create};

    fn timings() -> Timings {
        Timings {
            queued: Duration::from_secs(1),
            provisioning: Duration::from_secs(10),
            deprovisioning: Duration::from_secs(1),
            tick: Duration::from_millis(10),
        }
    }

    fn record(fate: Fate, now: DateTime<Utc>) -> DeviceRecord {
        let request = parse_create(br#"{"plan":"p","operating_system":"os","metro":"da"}"#)
            .expect("valid request");
        assert_eq!(request.location, Location::Metro("da".into()));
        DeviceRecord::create("proj", request, "da".into(), fate, Ipv4Addr::LOCALHOST, now)
    }

    fn at(start: DateTime<Utc>, millis: i64) -> DateTime<Utc> {
        start + chrono::TimeDelta::milliseconds(millis)
    }

    #[test]
    fn walks_queued_provisioning_active_with_rising_percentage() {
        let start = Utc::now();
        let mut device = record(Fate::Active, start);
        device.advance(at(start, 500), &timings());
        assert_eq!(device.state(), &DeviceState::Queued);
        device.advance(at(start, 6000), &timings());
        assert_eq!(device.state(), &DeviceState::Provisioning);
        assert_eq!(device.device.provisioning_percentage, Some(50.0));
        device.advance(at(start, 11_000), &timings());
        assert_eq!(device.state(), &DeviceState::Active);
        assert_eq!(device.device.provisioning_percentage, None);
        let kinds: Vec<&str> = device.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "instance.created",
                "provisioning.started",
                "provisioning.complete"
            ]
        );
    }

    #[test]
    fn stuck_and_failed_fates() {
        let start = Utc::now();
        let mut stuck = record(Fate::StuckProvisioning, start);
        stuck.advance(at(start, 100_000), &timings());
        assert_eq!(stuck.state(), &DeviceState::Provisioning);
        assert_eq!(stuck.device.provisioning_percentage, Some(99.0));
        let mut failed = record(Fate::Failed, start);
        failed.advance(at(start, 100_000), &timings());
        assert_eq!(failed.state(), &DeviceState::Failed);
    }

    #[test]
    fn termination_time_deletes_unless_locked() {
        let start = Utc::now();
        let mut device = record(Fate::Active, start);
        device.device.termination_time = Some(at(start, 2000));
        let mut locked = device.clone();
        locked.device.locked = true;
        for record in [&mut device, &mut locked] {
            record.advance(at(start, 2000), &timings());
            record.advance(at(start, 3500), &timings());
        }
        assert!(device.is_gone());
        assert_eq!(device.deleted_by, Some(DeletedBy::TerminationTime));
        assert_eq!(device.deleted_at, Some(at(start, 3000)));
        assert!(!locked.is_gone());
    }
}
