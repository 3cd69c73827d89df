//! What a lab's Vagrantfile defines, as Vagrant resolves it: each machine's box, private
//! networks and provisioners, in the Vagrantfile's order. Written by the wrapper
//! (`METALAB_DESCRIBE`) while `vagrant status` loads every machine, so metalab plans with what
//! Vagrant will really do, without asking the Vagrantfile to cooperate.

use std::time::Duration;

use serde::Deserialize;

use super::{Project, VagrantError, parse_machine_names};
use crate::transport::{Command, Transport, sh_quote, stdout_of};

/// The machines of a lab, in the Vagrantfile's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabDescription {
    pub machines: Vec<Machine>,
}

/// One machine, as Vagrant resolved its configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Machine {
    #[serde(skip)]
    pub name: String,
    /// `config.vm.box`.
    #[serde(rename = "box", default)]
    pub box_name: Option<String>,
    /// `config.vm.box_version`: a version or a constraint.
    #[serde(default)]
    pub box_version: Option<String>,
    /// The box Vagrant found for it, when one is registered.
    #[serde(default)]
    pub box_found: Option<FoundBox>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub provisioners: Vec<Provisioner>,
}

/// A registered box, as Vagrant found it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FoundBox {
    pub name: String,
    pub version: String,
    /// Its directory in Vagrant's home, on the host that described the lab.
    pub directory: String,
}

/// A private network of a machine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Network {
    /// The libvirt network's name (after the wrapper scoped it to the run, when it did).
    #[serde(default)]
    pub name: Option<String>,
    /// The machine's fixed address on it, if the Vagrantfile gives one.
    #[serde(default)]
    pub ip: Option<String>,
    /// Whether the machine takes its address by DHCP.
    #[serde(default)]
    pub dhcp: bool,
    /// `a.b.c.d/len`: the network the addresses come from, when known.
    #[serde(default)]
    pub subnet: Option<String>,
    /// A network that already exists on the host and is used as it is.
    #[serde(default)]
    pub shared: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Provisioner {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl LabDescription {
    pub fn names(&self) -> Vec<String> {
        self.machines.iter().map(|m| m.name.clone()).collect()
    }

    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }

    /// Whether any of the machines has a provisioner.
    pub fn provisions(&self, vms: &[String]) -> bool {
        self.machines
            .iter()
            .any(|m| vms.contains(&m.name) && !m.provisioners.is_empty())
    }

    /// The subnets the named machines' networks pin on the host: fixed by the Vagrantfile, so two
    /// runs of the lab cannot both have them at once. `floating` is a subnet the lab took from
    /// metalab (`METALAB_SUBNET`), which metalab hands out per run and is not pinned.
    pub fn pinned_subnets(&self, vms: &[String], floating: Option<&str>) -> Vec<String> {
        let mut subnets: Vec<String> = self
            .machines
            .iter()
            .filter(|m| vms.contains(&m.name))
            .flat_map(|m| m.networks.iter())
            .filter_map(|n| n.subnet.clone())
            .filter(|s| Some(s.as_str()) != floating)
            .collect();
        subnets.sort();
        subnets.dedup();
        subnets
    }

    /// Whether any network of the lab follows `METALAB_SUBNET`, described with `probe`.
    pub fn follows_subnet(&self, probe: &str) -> bool {
        self.machines
            .iter()
            .flat_map(|m| m.networks.iter())
            .any(|n| n.subnet.as_deref() == Some(probe))
    }
}

impl Machine {
    /// The fixed address the Vagrantfile gives the machine, on its first network that has one.
    pub fn fixed_address(&self) -> Option<&str> {
        self.networks.iter().find_map(|n| n.ip.as_deref())
    }
}

impl Project {
    /// Loads every machine through the wrapper (`vagrant status`), and reads what it described.
    pub async fn describe(&self, host: &dyn Transport) -> Result<LabDescription, VagrantError> {
        let file = format!(
            "{}/{}",
            self.dotfile_dir.trim_end_matches('/'),
            crate::state::VAGRANT_DESCRIBE
        );
        let describing = Project {
            vars: [
                self.vars.clone(),
                vec![("METALAB_DESCRIBE".to_string(), file.clone())],
            ]
            .concat(),
            ..self.clone()
        };
        let out = describing
            .checked(host, "status --machine-readable", Duration::from_secs(120))
            .await?;
        let names = parse_machine_names(&out.stdout_text());
        let cmd = Command::new(format!("cat {}", sh_quote(&file)), Duration::from_secs(30));
        let text = stdout_of(host, &cmd)
            .await
            .map_err(|e| VagrantError::Failed {
                command: "status".into(),
                outcome: "no description".into(),
                detail: format!(": {e:#}"),
            })?;
        parse(&text, &names).map_err(|e| VagrantError::Failed {
            command: "status".into(),
            outcome: "a description metalab cannot read".into(),
            detail: format!(": {e}"),
        })
    }
}

/// The wrapper's JSON (machine name → description), ordered as `vagrant status` listed them.
pub fn parse(text: &str, order: &[String]) -> Result<LabDescription, serde_json::Error> {
    let mut by_name: std::collections::HashMap<String, Machine> = serde_json::from_str(text)?;
    Ok(LabDescription {
        machines: order
            .iter()
            .filter_map(|n| {
                by_name.remove(n).map(|mut m| {
                    m.name = n.clone();
                    m
                })
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{
      "edge-b": {"box": "acme/bookworm", "box_version": null, "box_found": null, "hostname": "edge-b",
                 "networks": [{"name": "m-transit", "ip": "192.168.60.12", "dhcp": false,
                               "subnet": "192.168.60.0/24", "shared": false, "auto_config": true}],
                 "provisioners": [{"name": "shell", "type": "shell"}]},
      "edge-a": {"box": "acme/bookworm", "networks": [
                   {"name": "m-transit", "ip": "192.168.60.11", "dhcp": false, "subnet": "192.168.60.0/24"},
                   {"name": "m-lab", "ip": null, "dhcp": true, "subnet": "10.77.255.0/24"}],
                 "provisioners": [], "unknown": 1}
    }"#;

    fn order() -> Vec<String> {
        vec!["edge-a".into(), "edge-b".into()]
    }

    #[test]
    fn machines_come_in_the_vagrantfile_order_with_their_networks() {
        let d = parse(TEXT, &order()).unwrap();
        assert_eq!(d.names(), order());
        assert_eq!(
            d.machine("edge-b").unwrap().fixed_address(),
            Some("192.168.60.12")
        );
        assert!(d.machine("edge-a").unwrap().networks[1].dhcp);
        assert!(d.provisions(&["edge-b".into()]));
        assert!(!d.provisions(&["edge-a".into()]));
    }

    #[test]
    fn pinned_subnets_leave_out_the_one_metalab_hands_out() {
        let d = parse(TEXT, &order()).unwrap();
        assert!(d.follows_subnet("10.77.255.0/24"));
        assert_eq!(
            d.pinned_subnets(&order(), Some("10.77.255.0/24")),
            vec!["192.168.60.0/24"]
        );
        assert_eq!(
            d.pinned_subnets(&["edge-a".into()], None),
            vec!["10.77.255.0/24", "192.168.60.0/24"]
        );
    }
}
