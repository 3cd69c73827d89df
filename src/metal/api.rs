//! Serde types for the Metal API v1 wire format, shared by the client and the local server.
//!
//! The client sends exactly these forms. The server renders its answers with them too, but
//! parses requests through its own lenient types (see `server::wire`) because old clients sent
//! variants of some fields.
//!
//! Answers are read leniently, field by field from the contract: a field is required only when
//! metalab uses it *and* the contract guarantees it (a device's `id`, `hostname` and `state`; a
//! key's `id` and `label`). Every other field may be missing, or of a form metalab does not
//! expect, and reads as absent (or empty); unknown fields are ignored. A list keeps the
//! elements it can read and hands back the others as [`Unreadable`], with whatever can still be
//! made out of them (an id, a label, tags).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
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
///
/// Required: `id`, `hostname` (how a half-created device is recognised) and `state`. The rest
/// may be missing or malformed and then reads as absent: `tags` as none, `locked` as false
/// (the API itself refuses to delete a locked device), `created_at` as an unknown age (reap
/// then goes by the run's owner record and `termination_time` only), and a malformed entry of
/// `ip_addresses` is left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub hostname: String,
    pub state: DeviceState,
    #[serde(default, deserialize_with = "or_default")]
    pub short_id: String,
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "readable_elements")]
    pub tags: Vec<String>,
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub termination_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "or_default")]
    pub locked: bool,
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub plan: Option<PlanRef>,
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub metro: Option<MetroRef>,
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub operating_system: Option<OperatingSystemRef>,
    /// Present only while the device is provisioning.
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub provisioning_percentage: Option<f64>,
    #[serde(default, deserialize_with = "readable_elements")]
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

/// One entry of `Device::ip_addresses`: the four fields that pick the SSH address are required
/// (an entry without them is left out of the device), `gateway` and `cidr` are not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpAddress {
    /// 4 or 6.
    pub address_family: u8,
    pub public: bool,
    pub management: bool,
    pub address: String,
    #[serde(default, deserialize_with = "or_default")]
    pub gateway: String,
    #[serde(default, deserialize_with = "or_default")]
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

/// The `meta` object of a paginated list. Every field may be missing: without `last_page`
/// the answer is taken as the only page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default, deserialize_with = "or_none")]
    pub current_page: Option<u32>,
    #[serde(default, deserialize_with = "or_none")]
    pub last_page: Option<u32>,
    #[serde(default, deserialize_with = "or_none")]
    pub total: Option<u32>,
    #[serde(default, deserialize_with = "or_none")]
    pub first: Option<Href>,
    #[serde(default, deserialize_with = "or_none")]
    pub last: Option<Href>,
    #[serde(default, deserialize_with = "or_none")]
    pub previous: Option<Href>,
    #[serde(default, deserialize_with = "or_none")]
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

/// A project SSH key. The contract promises `id`, `label`, `key` and `fingerprint`; metalab
/// uses `id` and `label` (the run's key is `metalab-<run-id>`), so only those are required.
/// Without `created_at` the key's age is unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshKey {
    pub id: String,
    pub label: String,
    #[serde(default, deserialize_with = "or_default")]
    pub key: String,
    #[serde(default, deserialize_with = "or_default")]
    pub fingerprint: String,
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<DateTime<Utc>>,
}

/// `GET /projects/{id}/ssh-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshKeyList {
    pub ssh_keys: Vec<SshKey>,
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// One line of a capacity check, both asked (`available` absent) and answered. Of an answer
/// only `available` counts; a line without it is not an availability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityServer {
    #[serde(default, deserialize_with = "or_default")]
    pub metro: String,
    #[serde(default, deserialize_with = "or_default")]
    pub plan: String,
    /// The API wants the quantity as a string.
    #[serde(with = "quantity_as_string", default)]
    pub quantity: u32,
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub available: Option<bool>,
}

/// The body of `POST /capacity/metros`, and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacityCheck {
    pub servers: Vec<CapacityServer>,
}

/// One entry of `GET /devices/{id}/events`. The contract says nothing of its fields; metalab
/// only reads `type`, `body` and `state` to say why a device failed, so none is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, deserialize_with = "or_default")]
    pub id: String,
    #[serde(rename = "type", default, deserialize_with = "or_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "or_default")]
    pub body: String,
    #[serde(default, deserialize_with = "or_default")]
    pub state: String,
    #[serde(
        default,
        deserialize_with = "or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<DateTime<Utc>>,
}

/// `GET /devices/{id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventList {
    pub events: Vec<Event>,
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// A list answer: the key of its items (`devices`, `ssh_keys`, `events`) and their type.
pub trait Paged {
    type Item: DeserializeOwned;
    const ITEMS: &'static str;
}

impl Paged for DeviceList {
    type Item = Device;
    const ITEMS: &'static str = "devices";
}

impl Paged for SshKeyList {
    type Item = SshKey;
    const ITEMS: &'static str = "ssh_keys";
}

impl Paged for EventList {
    type Item = Event;
    const ITEMS: &'static str = "events";
}

/// What a list call read: the elements it could, and the others.
#[derive(Debug, Clone)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub unreadable: Vec<Unreadable>,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            unreadable: Vec::new(),
        }
    }
}

/// A list element that does not read as its type, and what can still be made out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// The element as sent (the token redacted, should a server echo it).
    pub raw: Value,
    /// Why it does not read.
    pub error: String,
}

impl Unreadable {
    /// A string field of the element, if it has one.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.raw.get(field)?.as_str().filter(|s| !s.is_empty())
    }

    pub fn id(&self) -> Option<&str> {
        self.text("id")
    }

    /// Its `tags`, those that are strings.
    pub fn tags(&self) -> Vec<&str> {
        self.raw
            .get("tags")
            .and_then(Value::as_array)
            .map(|tags| tags.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Its `locked`, when that is a boolean.
    pub fn locked(&self) -> Option<bool> {
        self.raw.get("locked")?.as_bool()
    }

    /// "id X, hostname Y" from whatever of those it has, or "no id".
    pub fn describe(&self) -> String {
        let known: Vec<String> = ["id", "hostname", "label"]
            .into_iter()
            .filter_map(|field| self.text(field).map(|v| format!("{field} {v}")))
            .collect();
        if known.is_empty() {
            "no id".to_owned()
        } else {
            known.join(", ")
        }
    }
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an entry ({}) that cannot be read: {}",
            self.describe(),
            self.error
        )
    }
}

/// A field read when it can be: absent, `null` or of another form, it is `None`, so that one
/// odd optional field does not make the whole object unreadable.
fn or_none<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// [`or_none`] for fields with a natural empty value.
fn or_default<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    Ok(or_none(deserializer)?.unwrap_or_default())
}

/// A list field, without the elements that do not read (and empty when it is not a list).
pub(crate) fn readable_elements<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Array(values) => values
            .into_iter()
            .filter_map(|value| serde_json::from_value(value).ok())
            .collect(),
        _ => Vec::new(),
    })
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
    fn a_device_needs_only_id_hostname_and_state() {
        let device: Device =
            serde_json::from_value(json!({"id": "d1", "hostname": "h", "state": "queued"}))
                .expect("the minimal device decodes");
        assert_eq!(device.state, DeviceState::Queued);
        assert_eq!(device.created_at, None);
        assert!(device.tags.is_empty() && !device.locked && device.ip_addresses.is_empty());
        for missing in ["id", "hostname", "state"] {
            let mut raw = device_json();
            if let Some(object) = raw.as_object_mut() {
                object.remove(missing);
            }
            let error = serde_json::from_value::<Device>(raw).expect_err("required");
            assert!(error.to_string().contains(missing), "{error}");
        }
    }

    #[test]
    fn unknown_fields_and_odd_optional_ones_do_not_spoil_a_device() {
        let mut raw = device_json();
        raw["href"] = json!("/metal/v1/devices/d1");
        raw["network_ports"] = json!([{"type": "NetworkBondPort"}]);
        raw["created_at"] = json!(null);
        raw["termination_time"] = json!("next tuesday");
        raw["plan"] = json!("c3.small.x86");
        raw["metro"] = json!({"href": "/metros/da"});
        raw["provisioning_percentage"] = json!("42");
        raw["tags"] = json!(["metalab", 7, "run:x"]);
        if let Some(ips) = raw["ip_addresses"].as_array_mut() {
            ips.insert(0, json!({"address": "garbled"}));
        }
        let device: Device = serde_json::from_value(raw).expect("still decodes");
        assert_eq!((device.created_at, device.termination_time), (None, None));
        assert_eq!((device.plan_slug(), device.metro_code()), (None, None));
        assert_eq!(device.provisioning_percentage, None);
        assert_eq!(device.tags, ["metalab", "run:x"]);
        assert_eq!(device.ip_addresses.len(), 3);
        let ip = device.public_ipv4_management().expect("has a public v4");
        assert_eq!(ip.address, "1.2.3.4");
    }

    #[test]
    fn a_key_needs_only_id_and_label() {
        // What the server sent: the contract's fields, and no `created_at`.
        let key: SshKey = serde_json::from_value(json!({
            "id": "k1", "label": "metalab-x", "key": "ssh-ed25519 AAAA", "fingerprint": "aa:bb",
            "href": "/metal/v1/ssh-keys/k1", "owner": {"href": "/projects/p"}
        }))
        .expect("decodes");
        assert_eq!((key.id.as_str(), key.created_at), ("k1", None));
        let bare: SshKey = serde_json::from_value(json!({"id": "k2", "label": "l"})).expect("ok");
        assert_eq!((bare.key.as_str(), bare.fingerprint.as_str()), ("", ""));
        assert!(serde_json::from_value::<SshKey>(json!({"label": "l", "key": "k"})).is_err());
    }

    #[test]
    fn meta_and_events_read_whatever_they_carry() {
        let meta: Meta =
            serde_json::from_value(json!({"last_page": 3, "next": "page 2"})).expect("decodes");
        assert_eq!(
            (meta.current_page, meta.last_page, meta.next),
            (None, Some(3), None)
        );
        let event: Event =
            serde_json::from_value(json!({"type": "provisioning.failed", "body": "no disk"}))
                .expect("decodes");
        assert_eq!(
            (event.kind.as_str(), event.body.as_str()),
            ("provisioning.failed", "no disk")
        );
    }

    #[test]
    fn an_unreadable_element_still_says_what_it_can() {
        let odd = Unreadable {
            raw: json!({"id": "d9", "hostname": "h9", "tags": ["metalab", 3], "locked": true}),
            error: "missing field `state`".into(),
        };
        assert_eq!(odd.id(), Some("d9"));
        assert_eq!(odd.tags(), ["metalab"]);
        assert_eq!(odd.locked(), Some(true));
        assert_eq!(
            odd.to_string(),
            "an entry (id d9, hostname h9) that cannot be read: missing field `state`"
        );
        let blank = Unreadable {
            raw: json!(42),
            error: "not an object".into(),
        };
        assert_eq!((blank.id(), blank.describe().as_str()), (None, "no id"));
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
