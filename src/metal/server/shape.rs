//! How the server renders its answers: in full, as the platform did, or strictly, with only
//! the fields the contract requires plus fields no client knows. A client that reads the
//! strict shape reads any server that keeps the contract.
//!
//! Faults that garble list elements are applied here too, whatever the shape.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::config::Faults;
use super::routes::API_ROOT;
use crate::metal::api::{CapacityCheck, Device, Event, Meta, SshKey};

/// How much of each object the server sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shape {
    /// Every field the server knows, as the platform sent them.
    #[default]
    Full,
    /// Only the fields the contract requires, and fields no client knows besides.
    Strict,
}

/// What a device must carry: who it is, where it stands, whose it is, and how to reach it.
const DEVICE_FIELDS: &[&str] = &["id", "hostname", "state", "tags", "locked", "ip_addresses"];
/// What picks the SSH address out of `ip_addresses`.
const IP_FIELDS: &[&str] = &["address_family", "public", "management", "address"];
/// What the contract promises of an SSH key.
const KEY_FIELDS: &[&str] = &["id", "label", "key", "fingerprint"];
/// What paging by number needs.
const META_FIELDS: &[&str] = &["current_page", "last_page"];
/// What says what happened to a device.
const EVENT_FIELDS: &[&str] = &["type", "body"];
/// The answer of a capacity line.
const CAPACITY_FIELDS: &[&str] = &["available"];

/// The server's answers, rendered in one shape under the faults in force.
pub struct Render<'a> {
    pub shape: Shape,
    pub faults: &'a Faults,
}

impl Render<'_> {
    pub fn device(&self, device: &Device) -> Value {
        let mut value = to_value(device);
        if self.shape == Shape::Strict {
            keep_only(&mut value, DEVICE_FIELDS);
            if let Some(ips) = value.get_mut("ip_addresses").and_then(Value::as_array_mut) {
                for ip in ips {
                    keep_only(ip, IP_FIELDS);
                    add(ip, "href", json!(format!("{API_ROOT}/ips/{}", device.id)));
                    add(
                        ip,
                        "parent_block",
                        json!({"network": "192.0.2.0", "cidr": 29}),
                    );
                }
            }
            add(
                &mut value,
                "href",
                json!(format!("{API_ROOT}/devices/{}", device.id)),
            );
            add(
                &mut value,
                "network_ports",
                json!([{"name": "bond0", "type": "NetworkBondPort", "data": {"bonded": true}}]),
            );
            add(&mut value, "sos", json!(format!("{}@sos.local", device.id)));
            unknown(&mut value);
        }
        value
    }

    /// A device as an element of a list: under the `unreadable_in_lists` fault, its `state`
    /// is an object, which no client reads as a state.
    fn listed_device(&self, device: &Device) -> Value {
        let mut value = self.device(device);
        if self.faults.unreadable_in_lists.contains(&device.hostname) {
            value["state"] = json!({"name": device.state.as_str()});
        }
        value
    }

    pub fn device_list(&self, devices: &[Device], meta: &Meta) -> Value {
        let items = devices.iter().map(|d| self.listed_device(d)).collect();
        self.list("devices", items, meta)
    }

    pub fn key(&self, key: &SshKey) -> Value {
        let mut value = to_value(key);
        if self.shape == Shape::Strict {
            keep_only(&mut value, KEY_FIELDS);
            add(
                &mut value,
                "href",
                json!(format!("{API_ROOT}/ssh-keys/{}", key.id)),
            );
            add(&mut value, "owner", json!({"href": "/metal/v1/projects"}));
            unknown(&mut value);
        }
        value
    }

    /// A key as a create answers it under the `unreadable_key_creates` fault: without its id.
    pub fn key_without_id(&self, key: &SshKey) -> Value {
        let mut value = self.key(key);
        if let Some(object) = value.as_object_mut() {
            object.remove("id");
        }
        value
    }

    /// A key as an element of a list: under the `unreadable_in_lists` fault, its `label` is an
    /// object.
    fn listed_key(&self, key: &SshKey) -> Value {
        let mut value = self.key(key);
        if self.faults.unreadable_in_lists.contains(&key.label) {
            value["label"] = json!({"text": key.label});
        }
        value
    }

    pub fn key_list(&self, keys: &[SshKey], meta: &Meta) -> Value {
        let items = keys.iter().map(|k| self.listed_key(k)).collect();
        self.list("ssh_keys", items, meta)
    }

    pub fn event_list(&self, events: &[Event], meta: &Meta) -> Value {
        let items = events
            .iter()
            .map(|event| {
                let mut value = to_value(event);
                if self.shape == Shape::Strict {
                    keep_only(&mut value, EVENT_FIELDS);
                    let body = value["body"].clone();
                    add(&mut value, "interpolated", body);
                    unknown(&mut value);
                }
                value
            })
            .collect();
        self.list("events", items, meta)
    }

    pub fn capacity(&self, answer: &CapacityCheck) -> Value {
        let mut value = to_value(answer);
        if self.shape == Shape::Strict
            && let Some(lines) = value.get_mut("servers").and_then(Value::as_array_mut)
        {
            for line in lines {
                keep_only(line, CAPACITY_FIELDS);
                unknown(line);
            }
        }
        value
    }

    fn list(&self, key: &str, items: Vec<Value>, meta: &Meta) -> Value {
        let mut meta = to_value(meta);
        let mut list = Map::new();
        list.insert(key.to_owned(), Value::Array(items));
        let mut value = Value::Object(list);
        if self.shape == Shape::Strict {
            keep_only(&mut meta, META_FIELDS);
            add(&mut meta, "cursor", json!({"opaque": true}));
            add(&mut value, "links", json!({"self": {"href": "?page=1"}}));
        }
        value["meta"] = meta;
        value
    }
}

fn to_value(item: &impl Serialize) -> Value {
    serde_json::to_value(item).unwrap_or(Value::Null)
}

/// Drops every field not in `fields`, and every field that is `null`.
fn keep_only(value: &mut Value, fields: &[&str]) {
    if let Some(object) = value.as_object_mut() {
        object.retain(|name, v| fields.contains(&name.as_str()) && !v.is_null());
    }
}

fn add(value: &mut Value, name: &str, field: Value) {
    if let Some(object) = value.as_object_mut() {
        object.insert(name.to_owned(), field);
    }
}

/// A field of every form no client can know about.
fn unknown(value: &mut Value) {
    add(
        value,
        "metalab_strict_extra",
        json!({"nested": [1, "two", null, {"three": 3.0}], "flag": false}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metal::api::{DeviceState, IpAddress, PlanRef};

    fn device() -> Device {
        Device {
            id: "d1".into(),
            hostname: "h1".into(),
            state: DeviceState::Provisioning,
            short_id: "d1".into(),
            description: Some("x".into()),
            tags: vec!["metalab".into()],
            created_at: Some(chrono::Utc::now()),
            termination_time: Some(chrono::Utc::now()),
            locked: false,
            plan: Some(PlanRef { slug: "p".into() }),
            metro: None,
            operating_system: None,
            provisioning_percentage: Some(12.0),
            ip_addresses: vec![IpAddress {
                address_family: 4,
                public: true,
                management: true,
                address: "127.0.0.1".into(),
                gateway: "127.0.0.1".into(),
                cidr: 31,
            }],
        }
    }

    fn fields(value: &Value) -> Vec<&str> {
        let mut names: Vec<&str> = value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        names.sort_unstable();
        names
    }

    #[test]
    fn strict_devices_carry_the_required_fields_and_unknown_ones_only() {
        let faults = Faults::default();
        let strict = Render {
            shape: Shape::Strict,
            faults: &faults,
        };
        let value = strict.device(&device());
        assert_eq!(
            fields(&value),
            [
                "hostname",
                "href",
                "id",
                "ip_addresses",
                "locked",
                "metalab_strict_extra",
                "network_ports",
                "sos",
                "state",
                "tags"
            ]
        );
        assert_eq!(
            fields(&value["ip_addresses"][0]),
            [
                "address",
                "address_family",
                "href",
                "management",
                "parent_block",
                "public"
            ]
        );
        let full = Render {
            shape: Shape::Full,
            faults: &faults,
        };
        assert!(full.device(&device()).get("created_at").is_some());
    }

    #[test]
    fn the_unreadable_fault_garbles_list_elements_only() {
        let faults = Faults {
            unreadable_in_lists: vec!["h1".into()],
            ..Faults::default()
        };
        let render = Render {
            shape: Shape::Full,
            faults: &faults,
        };
        assert!(render.device(&device())["state"].is_string());
        let list = render.device_list(&[device()], &Meta::default());
        assert!(list["devices"][0]["state"].is_object());
    }
}
