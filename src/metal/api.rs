//! Serde types for the Metal API v1 wire format, shared by the client and the local server.
//!
//! The client sends exactly these forms. The server renders its answers with them too, but
//! parses requests through its own lenient types (see `server::wire`) because old clients sent
//! variants of some fields.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The body of `POST /projects/{id}/devices`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceCreateInput {
    /// Plan slug, e.g. `c3.small.x86`.
    pub plan: String,
    /// Operating system slug, e.g. `ubuntu_24_04`.
    pub operating_system: String,
    /// Metro code such as `da`, or `any`.
    pub metro: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `hourly` for ephemeral hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_cycle: Option<String>,
    /// A cloud-init script or any other user data, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userdata: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Project SSH key ids. When empty the platform injects every project and member key, so
    /// a run passes its own key explicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub project_ssh_keys: Vec<String>,
    /// The platform deletes the device by itself at this time (unless it is locked): the last
    /// line of defence against a leaked host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_instance: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_price_max: Option<f64>,
    /// Free-form JSON data; the API wants an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customdata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
}

/// A device as the API returns it. Only the fields metalab relies on are typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    #[serde(default)]
    pub short_id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub state: DeviceState,
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub locked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metro: Option<MetroRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system: Option<OperatingSystemRef>,
    /// Present only while the device is provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_percentage: Option<f64>,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
}

impl Device {
    /// The address to reach the device over SSH: the public management IPv4 entry.
    pub fn public_ipv4_management(&self) -> Option<&IpAddress> {
        self.ip_addresses
            .iter()
            .find(|ip| ip.address_family == 4 && ip.public && ip.management)
    }

    pub fn plan_slug(&self) -> Option<&str> {
        self.plan.as_ref().map(|plan| plan.slug.as_str())
    }

    pub fn metro_code(&self) -> Option<&str> {
        self.metro.as_ref().map(|metro| metro.code.as_str())
    }

    pub fn operating_system_slug(&self) -> Option<&str> {
        self.operating_system.as_ref().map(|os| os.slug.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRef {
    pub slug: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetroRef {
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingSystemRef {
    pub slug: String,
}

/// One entry of `Device::ip_addresses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpAddress {
    /// 4 or 6.
    pub address_family: u8,
    pub public: bool,
    pub management: bool,
    pub address: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub cidr: u8,
}

/// The lifecycle state of a device.
///
/// Unknown values land in `Other` so that a state the platform adds later does not break
/// decoding of the whole device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceState {
    Queued,
    Provisioning,
    Active,
    Failed,
    Inactive,
    Deprovisioning,
    Reinstalling,
    PoweringOn,
    PoweringOff,
    Deleted,
    Other(String),
}

impl DeviceState {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Queued => "queued",
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Failed => "failed",
            Self::Inactive => "inactive",
            Self::Deprovisioning => "deprovisioning",
            Self::Reinstalling => "reinstalling",
            Self::PoweringOn => "powering_on",
            Self::PoweringOff => "powering_off",
            Self::Deleted => "deleted",
            Self::Other(other) => other,
        }
    }
}

impl From<&str> for DeviceState {
    fn from(value: &str) -> Self {
        match value {
            "queued" => Self::Queued,
            "provisioning" => Self::Provisioning,
            "active" => Self::Active,
            "failed" => Self::Failed,
            "inactive" => Self::Inactive,
            "deprovisioning" => Self::Deprovisioning,
            "reinstalling" => Self::Reinstalling,
            "powering_on" => Self::PoweringOn,
            "powering_off" => Self::PoweringOff,
            "deleted" => Self::Deleted,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DeviceState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeviceState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self::from(text.as_str()))
    }
}

/// The `meta` object of a paginated list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub current_page: u32,
    pub last_page: u32,
    pub total: u32,
    #[serde(default)]
    pub first: Option<Href>,
    #[serde(default)]
    pub last: Option<Href>,
    #[serde(default)]
    pub previous: Option<Href>,
    #[serde(default)]
    pub next: Option<Href>,
}

/// A link in `meta`. Clients must not follow it: the values are relative and inconsistent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Href {
    pub href: String,
}

/// `GET /projects/{id}/devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceList {
    pub devices: Vec<Device>,
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// The body of `POST /projects/{id}/ssh-keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshKeyCreateInput {
    pub label: String,
    /// The public key in OpenSSH format.
    pub key: String,
}

/// A project SSH key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshKey {
    pub id: String,
    pub label: String,
    pub key: String,
    #[serde(default)]
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /projects/{id}/ssh-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshKeyList {
    pub ssh_keys: Vec<SshKey>,
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// One line of a capacity check, both asked (`available` absent) and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityServer {
    pub metro: String,
    pub plan: String,
    /// The API wants the quantity as a string.
    #[serde(with = "quantity_as_string")]
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
}

/// The body of `POST /capacity/metros`, and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacityCheck {
    pub servers: Vec<CapacityServer>,
}

/// One entry of `GET /devices/{id}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub state: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /devices/{id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventList {
    pub events: Vec<Event>,
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// A list answer split into its items and its pagination data.
pub trait Paged: serde::de::DeserializeOwned {
    type Item;
    fn into_parts(self) -> (Vec<Self::Item>, Option<Meta>);
}

impl Paged for DeviceList {
    type Item = Device;
    fn into_parts(self) -> (Vec<Device>, Option<Meta>) {
        (self.devices, self.meta)
    }
}

impl Paged for SshKeyList {
    type Item = SshKey;
    fn into_parts(self) -> (Vec<SshKey>, Option<Meta>) {
        (self.ssh_keys, self.meta)
    }
}

impl Paged for EventList {
    type Item = Event;
    fn into_parts(self) -> (Vec<Event>, Option<Meta>) {
        (self.events, self.meta)
    }
}

/// The capacity quantity is a string on the wire; old callers sent a number, so both parse.
mod quantity_as_string {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(quantity: &u32, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&quantity.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => text.trim().parse().map_err(D::Error::custom),
            Value::Number(number) => number
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| D::Error::custom("quantity must be a small positive integer")),
            other => Err(D::Error::custom(format!(
                "quantity must be a string, got {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device_json() -> Value {
        json!({
            "id": "d1", "short_id": "d1", "hostname": "h", "state": "provisioning",
            "tags": ["metalab"], "created_at": "2026-01-02T03:04:05Z", "locked": false,
            "plan": {"slug": "c3.small.x86"}, "metro": {"code": "da"},
            "operating_system": {"slug": "ubuntu_24_04"}, "provisioning_percentage": 42.5,
            "ip_addresses": [
                {"address_family": 6, "public": true, "management": true, "address": "2604::2"},
                {"address_family": 4, "public": false, "management": true, "address": "10.0.0.2"},
                {"address_family": 4, "public": true, "management": true, "address": "1.2.3.4"}
            ]
        })
    }

    #[test]
    fn device_decodes_and_finds_the_public_management_ipv4() {
        let device: Device = serde_json::from_value(device_json()).expect("device decodes");
        assert_eq!(device.state, DeviceState::Provisioning);
        assert_eq!(device.plan_slug(), Some("c3.small.x86"));
        assert_eq!(device.metro_code(), Some("da"));
        assert_eq!(device.operating_system_slug(), Some("ubuntu_24_04"));
        assert_eq!(device.provisioning_percentage, Some(42.5));
        let ip = device.public_ipv4_management().expect("has a public v4");
        assert_eq!(ip.address, "1.2.3.4");
    }

    #[test]
    fn unknown_state_is_kept_and_round_trips() {
        let mut raw = device_json();
        raw["state"] = json!("rescue_mode");
        let device: Device = serde_json::from_value(raw).expect("device decodes");
        assert_eq!(device.state, DeviceState::Other("rescue_mode".into()));
        assert_eq!(
            serde_json::to_value(&device.state).ok(),
            Some(json!("rescue_mode"))
        );
    }

    #[test]
    fn create_input_sends_only_the_given_fields() {
        let input = DeviceCreateInput {
            plan: "c3.small.x86".into(),
            operating_system: "ubuntu_24_04".into(),
            metro: "da".into(),
            tags: vec!["metalab".into()],
            ..DeviceCreateInput::default()
        };
        let sent = serde_json::to_value(&input).expect("serialises");
        assert_eq!(
            sent,
            json!({"plan": "c3.small.x86", "operating_system": "ubuntu_24_04", "metro": "da",
                   "tags": ["metalab"]})
        );
    }

    #[test]
    fn capacity_quantity_is_a_string_on_the_wire_and_parses_from_both() {
        let asked = CapacityServer {
            metro: "da".into(),
            plan: "p".into(),
            quantity: 2,
            available: None,
        };
        let sent = serde_json::to_value(&asked).expect("serialises");
        assert_eq!(sent, json!({"metro": "da", "plan": "p", "quantity": "2"}));
        let old: CapacityServer =
            serde_json::from_value(json!({"metro": "da", "plan": "p", "quantity": 3}))
                .expect("number form parses");
        assert_eq!(old.quantity, 3);
    }
}
