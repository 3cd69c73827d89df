//! `[provider]`: where the lab's VMs run, and the settings of that place.

use serde::Deserialize;
use serde_spanned::Spanned;

use super::ec2::RawEc2;
use super::metal::RawMetal;
use super::ssh_hosts::SshHostConfig;

/// Where the lab's VMs run (`provider.kind`). Default `local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// This machine.
    Local,
    /// Machines of an SSH inventory (`[[provider.hosts]]`).
    Ssh,
    /// Bare-metal devices made for the run through the Packet / Equinix Metal API v1
    /// (`[provider.metal]`).
    Metal,
    /// AWS EC2 bare-metal instances launched for the run (`[provider.ec2]`).
    Ec2,
}

/// `[provider]` as written; the kind keeps its place in the file for errors about it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawProvider {
    pub kind: Spanned<ProviderKind>,
    #[serde(default)]
    pub hosts: Vec<SshHostConfig>,
    pub metal: Option<RawMetal>,
    pub ec2: Option<RawEc2>,
}

impl Default for RawProvider {
    fn default() -> Self {
        RawProvider {
            kind: Spanned::new(0..0, ProviderKind::Local),
            hosts: Vec::new(),
            metal: None,
            ec2: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{lab, load, loaded, rejected};

    use super::*;

    #[test]
    fn the_default_is_this_machine_with_no_inventory() {
        let c = loaded("");
        assert_eq!(c.provider, ProviderKind::Local);
        assert!(c.ssh_hosts.is_empty());
        assert!(c.metal.is_none());
    }

    #[test]
    fn the_kind_is_read() {
        let dir = lab(
            "[provider]\nkind = \"ssh\"\n[[provider.hosts]]\naddress = \"h\"\nidentity = \"k\"\n",
        );
        std::fs::write(dir.path().join("k"), "").unwrap();
        assert_eq!(load(&dir).unwrap().provider, ProviderKind::Ssh);
    }

    #[test]
    fn an_unknown_kind_is_located_at_its_value() {
        let e = rejected("[provider]\nkind = \"cloud\"\n");
        assert_eq!((e.line, e.column), (2, 8));
        assert_eq!(e.key.as_deref(), Some("provider.kind"));
        assert!(
            e.message.starts_with("unknown variant `cloud`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_table_without_a_kind_is_refused() {
        let e = rejected("[provider]\nhosts = []\n");
        assert_eq!((e.line, e.column), (1, 1));
        assert_eq!(e.key.as_deref(), Some("provider.kind"));
        assert_eq!(e.message, "missing required key `kind` in [provider]");
    }
}
