//! The server's in-memory state and the API operations on it.
//!
//! Nothing is ever removed: deleted devices and keys stay, marked with when they went, so that
//! `/_admin/state` can show tests exactly what a client did.

use std::net::Ipv4Addr;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{Faults, ServerConfig};
use super::device::{DeletedBy, DeviceRecord, Fate};
use super::ids;
use super::rate::RateWindow;
use super::reply::ApiError;
use super::shape::Render;
use super::wire::{self, Location};
use crate::metal::api::{
    CapacityCheck, CapacityServer, Device, DeviceState, Event, SshKey, SshKeyCreateInput,
};

/// A project SSH key, kept after deletion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub project_id: String,
    pub key: SshKey,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One API request as the server saw it. `X-Auth-Token` is never recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// When it arrived.
    pub at: DateTime<Utc>,
    pub method: String,
    /// The path below the API root, e.g. `/devices/{id}`.
    pub path: String,
    pub query: Option<String>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The JSON body, or the raw text of a body that is not JSON.
    pub body: Option<Value>,
    pub status: u16,
}

/// Everything the server holds, as `GET /_admin/state` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub devices: Vec<DeviceRecord>,
    pub ssh_keys: Vec<KeyRecord>,
    pub requests: Vec<RequestRecord>,
    pub faults: Faults,
    pub ssh_address: Ipv4Addr,
    pub ssh_port: u16,
}

impl Snapshot {
    /// Devices the API still shows: not yet `deleted`.
    pub fn live_devices(&self) -> Vec<&DeviceRecord> {
        self.devices.iter().filter(|d| !d.is_gone()).collect()
    }

    pub fn device(&self, id: &str) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.id() == id)
    }

    /// The requests with this method whose path starts with `path`.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<&RequestRecord> {
        self.requests
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path))
            .collect()
    }
}

/// The mutable state behind the server's mutex.
pub struct Store {
    pub(super) config: ServerConfig,
    pub(super) faults: Faults,
    pub(super) window: RateWindow,
    devices: Vec<DeviceRecord>,
    keys: Vec<KeyRecord>,
    requests: Vec<RequestRecord>,
}

impl Store {
    pub fn new(config: ServerConfig, now: DateTime<Utc>) -> Self {
        Self {
            faults: config.faults.clone(),
            config,
            window: RateWindow::new(now),
            devices: Vec::new(),
            keys: Vec::new(),
            requests: Vec::new(),
        }
    }

    /// Brings every device to where it is at `now`.
    pub fn advance(&mut self, now: DateTime<Utc>) {
        let timings = &self.config.timings;
        for device in &mut self.devices {
            device.advance(now, timings);
        }
    }

    /// How answers are rendered now: the configured shape, the faults in force.
    pub fn render(&self) -> Render<'_> {
        Render {
            shape: self.config.shape,
            faults: &self.faults,
        }
    }

    pub fn log_request(&mut self, record: RequestRecord) {
        self.requests.push(record);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            devices: self.devices.clone(),
            ssh_keys: self.keys.clone(),
            requests: self.requests.clone(),
            faults: self.faults.clone(),
            ssh_address: self.config.ssh_address,
            ssh_port: self.config.ssh_port,
        }
    }

    /// `POST /projects/{id}/devices`. Under the `create_500_after_create` fault the device is
    /// created and kept, and the answer is a 500 all the same.
    pub fn create_device(
        &mut self,
        project_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Device, ApiError> {
        self.check_project(project_id)?;
        let request = wire::parse_create(body)
            .map_err(|problems| ApiError::many(StatusCode::UNPROCESSABLE_ENTITY, problems))?;
        let metro = self.place(&request.location)?;
        self.check_keys_exist(project_id, &request.project_ssh_keys)?;
        let fate = self.fate_of_new_device();
        let record = DeviceRecord::create(
            project_id,
            request,
            metro,
            fate,
            self.config.ssh_address,
            now,
        );
        let device = record.device.clone();
        self.devices.push(record);
        if take_one(&mut self.faults.create_500_after_create) {
            return Err(ApiError::one(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            ));
        }
        Ok(device)
    }

    /// `GET /devices/{id}`. A failed device is shown once (under `hide_failed_devices`,
    /// never); then it answers 403, as the API did.
    pub fn get_device(&mut self, id: &str) -> Result<Device, ApiError> {
        let record = self.visible_device(id)?;
        if record.state() == &DeviceState::Failed {
            record.failure_shown = true;
        }
        Ok(record.device.clone())
    }

    pub fn list_devices(
        &self,
        project_id: &str,
        tag: Option<&str>,
    ) -> Result<Vec<Device>, ApiError> {
        self.check_project(project_id)?;
        Ok(self
            .devices
            .iter()
            .filter(|d| d.project_id == project_id && !d.is_gone())
            .filter(|d| tag.is_none_or(|tag| d.device.tags.iter().any(|t| t == tag)))
            .map(|d| d.device.clone())
            .collect())
    }

    /// `DELETE /devices/{id}`: starts deprovisioning. A failed device can always be deleted,
    /// even once it answers 403 to a GET.
    pub fn delete_device(
        &mut self,
        id: &str,
        force_delete: bool,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let refuse_while_provisioning = self.faults.refuse_delete_while_provisioning;
        let record = self.live_device(id)?;
        if record.device.locked {
            return Err(ApiError::unprocessable("Cannot delete a locked device"));
        }
        if refuse_while_provisioning && record.is_provisioning() {
            return Err(ApiError::unprocessable(
                "Cannot delete a device while it is provisioning",
            ));
        }
        record.delete(DeletedBy::Request { force_delete }, now);
        Ok(())
    }

    /// The device's events; those of a failed device too, which say why it failed.
    pub fn device_events(&mut self, id: &str) -> Result<Vec<Event>, ApiError> {
        Ok(self.live_device(id)?.events.clone())
    }

    pub fn create_key(
        &mut self,
        project_id: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<SshKey, ApiError> {
        self.check_project(project_id)?;
        let input: SshKeyCreateInput =
            serde_json::from_slice(body).map_err(|e| ApiError::unprocessable(e.to_string()))?;
        let problems: Vec<String> = [("Label", &input.label), ("Key", &input.key)]
            .into_iter()
            .filter(|(_, value)| value.trim().is_empty())
            .map(|(name, _)| format!("{name} can't be blank"))
            .collect();
        if !problems.is_empty() {
            return Err(ApiError::many(StatusCode::UNPROCESSABLE_ENTITY, problems));
        }
        let key = SshKey {
            id: ids::uuid(),
            fingerprint: ids::fingerprint(&input.key),
            label: input.label,
            key: input.key,
            created_at: Some(now),
        };
        self.keys.push(KeyRecord {
            project_id: project_id.to_owned(),
            key: key.clone(),
            deleted_at: None,
        });
        Ok(key)
    }

    pub fn list_keys(&self, project_id: &str) -> Result<Vec<SshKey>, ApiError> {
        self.check_project(project_id)?;
        Ok(self
            .keys
            .iter()
            .filter(|k| k.project_id == project_id && k.deleted_at.is_none())
            .map(|k| k.key.clone())
            .collect())
    }

    /// Whether this key create is answered without the key's id (the
    /// `unreadable_key_creates` fault).
    pub fn take_unreadable_key_create(&mut self) -> bool {
        take_one(&mut self.faults.unreadable_key_creates)
    }

    pub fn delete_key(&mut self, id: &str, now: DateTime<Utc>) -> Result<(), ApiError> {
        if self.faults.refuse_key_deletes {
            return Err(ApiError::unprocessable("SSH key is in use"));
        }
        let record = self
            .keys
            .iter_mut()
            .find(|k| k.key.id == id && k.deleted_at.is_none())
            .ok_or_else(ApiError::not_found)?;
        record.deleted_at = Some(now);
        Ok(())
    }

    /// `POST /capacity/metros`: each line back with `available` set.
    pub fn check_capacity(&self, body: &[u8]) -> Result<CapacityCheck, ApiError> {
        let asked: CapacityCheck =
            serde_json::from_slice(body).map_err(|e| ApiError::unprocessable(e.to_string()))?;
        let servers = asked
            .servers
            .into_iter()
            .map(|line| CapacityServer {
                available: Some(
                    self.pick_metro(&location_of(&line.metro), line.quantity)
                        .is_some(),
                ),
                ..line
            })
            .collect();
        Ok(CapacityCheck { servers })
    }

    fn check_project(&self, project_id: &str) -> Result<(), ApiError> {
        if project_id == self.config.project_id {
            Ok(())
        } else {
            Err(ApiError::not_found())
        }
    }

    /// A device that is not gone yet.
    fn live_device(&mut self, id: &str) -> Result<&mut DeviceRecord, ApiError> {
        self.devices
            .iter_mut()
            .find(|d| d.id() == id && !d.is_gone())
            .ok_or_else(ApiError::not_found)
    }

    /// A live device the caller may look at: not one whose failure was already shown.
    fn visible_device(&mut self, id: &str) -> Result<&mut DeviceRecord, ApiError> {
        let hide = self.faults.hide_failed_devices;
        let record = self.live_device(id)?;
        if (record.failure_shown || hide) && record.state() == &DeviceState::Failed {
            return Err(ApiError::one(
                StatusCode::FORBIDDEN,
                "You are not authorized to view this device",
            ));
        }
        Ok(record)
    }

    /// The metro a new device goes to, or the API's 422 when there is no room.
    fn place(&self, location: &Location) -> Result<String, ApiError> {
        if let Location::Metro(code) = location
            && !self.config.metros.contains_key(code)
        {
            return Err(ApiError::unprocessable(format!(
                "Metro {code} does not exist"
            )));
        }
        self.pick_metro(location, 1)
            .ok_or_else(|| ApiError::unprocessable("There aren't available servers in that metro"))
    }

    fn pick_metro(&self, location: &Location, quantity: u32) -> Option<String> {
        match location {
            Location::Metro(code) => (self.free_in(code) >= quantity).then(|| code.clone()),
            Location::Any => self
                .config
                .metros
                .keys()
                .find(|metro| self.free_in(metro) >= quantity)
                .cloned(),
        }
    }

    /// Room left in a metro: its stock less the devices it holds.
    fn free_in(&self, metro: &str) -> u32 {
        if self.faults.no_capacity_metros.iter().any(|m| m == metro) {
            return 0;
        }
        let stock = self.config.metros.get(metro).copied().unwrap_or(0);
        let held = self
            .devices
            .iter()
            .filter(|d| !d.is_gone() && d.device.metro_code() == Some(metro))
            .count();
        stock.saturating_sub(u32::try_from(held).unwrap_or(u32::MAX))
    }

    fn check_keys_exist(&self, project_id: &str, key_ids: &[String]) -> Result<(), ApiError> {
        let missing: Vec<String> = key_ids
            .iter()
            .filter(|id| {
                !self.keys.iter().any(|k| {
                    &k.key.id == *id && k.project_id == project_id && k.deleted_at.is_none()
                })
            })
            .map(|id| format!("SSH key {id} not found in the project"))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ApiError::many(StatusCode::UNPROCESSABLE_ENTITY, missing))
        }
    }

    fn fate_of_new_device(&self) -> Fate {
        if self.faults.fail_provisioning {
            Fate::Failed
        } else if self.faults.stuck_provisioning {
            Fate::StuckProvisioning
        } else {
            Fate::Active
        }
    }
}

fn location_of(metro: &str) -> Location {
    match metro {
        "any" => Location::Any,
        code => Location::Metro(code.to_lowercase()),
    }
}

/// Uses up one from a fault's count. True when there was one.
pub(super) fn take_one(count: &mut u32) -> bool {
    if *count == 0 {
        return false;
    }
    *count -= 1;
    true
}
