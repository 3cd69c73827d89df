//! An untrusted run's network fence: its VMs reach each other, the host's DHCP, and the
//! destinations the trusted config allows; nothing else. Not another run's VMs (on a shared
//! management network or through the host's routing), not the host's own services, not the LAN
//! or the internet.
//!
//! The fence keys on the VMs' tap devices, which the Vagrantfile wrapper names after the lane
//! (`METALAB_TAP_PREFIX`) before any VM starts: a name is the host kernel's, so a VM cannot
//! forge it as it could a MAC or an IP address. Two nftables tables, named with the lane's
//! prefix so `reap` and the teardown sweep find them:
//!
//! - `bridge <prefix>`: frames between one of the lane's taps and any other bridge port are
//!   dropped (a shared bridge is the lane's own only for its own ports); a frame from one of its
//!   taps to the host is marked with the lane's mark.
//! - `inet <prefix>`: a marked packet, to the host or routed through it, passes only as the
//!   answer of a connection the host opened (Vagrant's SSH), as DHCP, or to an allowed
//!   destination.
//!
//! The mark is set at the bridge and read at IP because connection tracking exists only at IP on
//! a Linux bridge; it is a property of the packet inside the host, out of the VM's reach.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Destination;
use crate::transport::{Command, Transport, sh_quote};

/// The nftables families of a fence's two tables.
pub const FAMILIES: [&str; 2] = ["bridge", "inet"];

/// One lane's fence.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The tables' name: the lane's prefix, as its libvirt names have it.
    pub name: String,
    /// What every tap device of the lane's VMs is named with (8 characters: Linux allows 15).
    pub tap_prefix: String,
    /// The packet mark of the lane's traffic to the host.
    pub mark: u32,
    pub allow: Vec<Destination>,
}

impl Fence {
    /// The fence of the lane named by `prefix` (its libvirt names' prefix).
    pub fn new(prefix: &str, allow: &[Destination]) -> Fence {
        let digest = Sha256::digest(prefix.as_bytes());
        let tag = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & 0x00ff_ffff;
        Fence {
            name: prefix.to_string(),
            tap_prefix: format!("mu{tag:06x}"),
            // "m" in the top byte: a mark no other tool here sets.
            mark: 0x6d00_0000 | tag,
            allow: allow.to_vec(),
        }
    }

    /// The fence as an nftables script, for `nft -f -`.
    pub fn ruleset(&self) -> String {
        let (name, taps, mark) = (&self.name, format!("\"{}*\"", self.tap_prefix), self.mark);
        let allowed: String = self
            .allow
            .iter()
            .map(|d| format!("    {} accept\n", match_destination(d)))
            .collect();
        format!(
            "table bridge {name} {{\n\
             \x20 chain to_host {{\n\
             \x20   type filter hook input priority filter; policy accept;\n\
             \x20   iifname {taps} meta mark set {mark:#x}\n\
             \x20 }}\n\
             \x20 chain between_ports {{\n\
             \x20   type filter hook forward priority filter; policy accept;\n\
             \x20   iifname {taps} oifname != {taps} drop\n\
             \x20   oifname {taps} iifname != {taps} drop\n\
             \x20 }}\n\
             }}\n\
             table inet {name} {{\n\
             \x20 chain to_host {{\n\
             \x20   type filter hook input priority filter; policy accept;\n\
             \x20   meta mark != {mark:#x} accept\n\
             \x20   ct state established,related accept\n\
             \x20   udp dport 67 accept\n\
             {allowed}\
             \x20   drop\n\
             \x20 }}\n\
             \x20 chain through_host {{\n\
             \x20   type filter hook forward priority filter; policy accept;\n\
             \x20   meta mark != {mark:#x} accept\n\
             \x20   ct state established,related accept\n\
             {allowed}\
             \x20   drop\n\
             \x20 }}\n\
             }}\n"
        )
    }
}

/// An nftables match for the packets to `d`.
fn match_destination(d: &Destination) -> String {
    let family = if d.addr.is_ipv4() { "ip" } else { "ip6" };
    let net = format!("{family} daddr {}/{}", d.addr, d.prefix);
    match d.port {
        None => net,
        Some(port) => format!("{net} meta l4proto {{ tcp, udp }} th dport {port}"),
    }
}

/// Puts `fence` up on `host`, replacing an older one of the same name. Fails when the host has
/// no nftables: an untrusted run never starts a VM unfenced.
pub async fn raise(host: &dyn Transport, fence: &Fence) -> anyhow::Result<()> {
    let name = sh_quote(&fence.name);
    let script = format!(
        "command -v nft >/dev/null || {{ echo 'nft (nftables) is not installed: run scripts/setup-host' >&2; exit 1; }}\n\
         for f in {families}; do nft delete table $f {name} 2>/dev/null || true; done\n\
         nft -f -\n",
        families = FAMILIES.join(" ")
    );
    let cmd = Command::new(script, Duration::from_secs(30))
        .sudo(true)
        .stdin(fence.ruleset().into_bytes());
    crate::transport::stdout_of(host, &cmd).await?;
    Ok(())
}

/// Checks that every network interface of `domains` is one of the fence's taps: one it did not
/// name (a public network, a tunnel) would bypass it. Returns those that are not.
pub async fn unfenced(
    host: &dyn Transport,
    fence: &Fence,
    domains: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut script = String::from("set -e\n");
    for d in domains {
        script.push_str(&format!(
            "virsh -c qemu:///system domiflist {} | awk 'NR > 2 && NF {{ print $1 }}'\n",
            sh_quote(d)
        ));
    }
    let cmd = Command::new(script, Duration::from_secs(30)).sudo(true);
    let listed = crate::transport::stdout_of(host, &cmd).await?;
    Ok(listed
        .lines()
        .map(str::trim)
        .filter(|i| !i.is_empty() && !i.starts_with(&fence.tap_prefix))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(allow: &[&str]) -> Fence {
        let allow: Vec<Destination> = allow.iter().map(|d| d.parse().unwrap()).collect();
        Fence::new("metalab-20261126-0600-ab12-", &allow)
    }

    #[test]
    fn a_lane_has_its_own_taps_and_mark_and_its_prefix_names_the_tables() {
        let a = fence(&[]);
        let b = Fence::new("metalab-20261126-0600-ab12-l2-", &[]);
        assert_eq!(a.tap_prefix.len(), 8);
        assert!(a.tap_prefix.starts_with("mu"));
        assert_ne!(a.tap_prefix, b.tap_prefix);
        assert_ne!(a.mark, b.mark);
        assert_eq!(a.mark >> 24, 0x6d);
        assert_eq!(a.tap_prefix, Fence::new(&a.name, &[]).tap_prefix);
        let rules = a.ruleset();
        assert!(rules.contains("table bridge metalab-20261126-0600-ab12- {"));
        assert!(rules.contains("table inet metalab-20261126-0600-ab12- {"));
    }

    #[test]
    fn marked_traffic_ends_in_a_drop_after_what_is_allowed() {
        let f = fence(&["192.168.121.1:8081", "198.51.100.0/24", "[2001:db8::1]:53"]);
        let rules = f.ruleset();
        let taps = format!("\"{}*\"", f.tap_prefix);
        assert!(rules.contains(&format!("iifname {taps} oifname != {taps} drop")));
        assert!(rules.contains(&format!("iifname {taps} meta mark set {:#x}", f.mark)));
        for chain in ["to_host", "through_host"] {
            let inet = rules.split("table inet").nth(1).expect("an inet table");
            let body = inet
                .split(&format!("chain {chain} {{"))
                .nth(1)
                .unwrap_or_else(|| panic!("no inet {chain}: {rules}"));
            let body = &body[..body.find("\n  }").unwrap()];
            let lines: Vec<&str> = body
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(lines[1], format!("meta mark != {:#x} accept", f.mark));
            assert_eq!(lines.last(), Some(&"drop"), "{body}");
            assert!(lines.contains(
                &"ip daddr 192.168.121.1/32 meta l4proto { tcp, udp } th dport 8081 accept"
            ));
            assert!(lines.contains(&"ip daddr 198.51.100.0/24 accept"));
            assert!(lines.contains(
                &"ip6 daddr 2001:db8::1/128 meta l4proto { tcp, udp } th dport 53 accept"
            ));
            assert_eq!(lines.contains(&"udp dport 67 accept"), chain == "to_host");
        }
    }
}
