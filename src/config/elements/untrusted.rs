//! `[untrusted]`: what a run of an unreviewed change (`metalab run --untrusted`) may take from
//! the runner. Read only from the trusted lab definition in that mode, never from the change.

use std::net::IpAddr;

use serde::Deserialize;

use crate::config::located::refuse;

/// `[untrusted]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Untrusted {
    /// The runner's `LAB_*` variables that reach the suites of an untrusted run. Outside the
    /// mode every `LAB_*` variable does; in it, none unless listed here.
    #[serde(default, deserialize_with = "lab_variables")]
    pub lab_env: Vec<String>,
    /// Where an untrusted run's VMs may connect beyond each other: addresses or networks, each
    /// with an optional port. Nothing else on the host's networks answers them (see
    /// `host::fence`).
    #[serde(default, deserialize_with = "destinations")]
    pub allow: Vec<Destination>,
}

/// A destination an untrusted run's VMs may reach: `10.0.0.5`, `198.51.100.0/24`,
/// `10.0.0.5:443`, `[2001:db8::1]:443`, `2001:db8::/32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub addr: IpAddr,
    /// The network's prefix length (32 or 128 for one address).
    pub prefix: u8,
    /// TCP and UDP to this port only; any traffic when `None`.
    pub port: Option<u16>,
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Destination, String> {
        let (net, port) = split_port(s)?;
        let (addr, prefix) = match net.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (net, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`/{p}` is not a prefix length of {addr}"))?,
        };
        Ok(Destination { addr, prefix, port })
    }
}

/// `net:port` or `[v6net]:port` into the network and the port; a bare IPv6 network has none.
fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (net, port) = if let Some(rest) = s.strip_prefix('[') {
        let (net, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}` has no closing `]`"))?;
        (net, after.strip_prefix(':'))
    } else if s.matches(':').count() == 1 {
        let (net, port) = s.split_once(':').expect("one colon");
        (net, Some(port))
    } else {
        (s, None)
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{p}` is not a port"))
        })
        .transpose()?;
    Ok((net, port))
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whole = if self.addr.is_ipv4() { 32 } else { 128 };
        let net = match self.prefix == whole {
            true => self.addr.to_string(),
            false => format!("{}/{}", self.addr, self.prefix),
        };
        match (self.port, self.addr.is_ipv6()) {
            (None, _) => write!(f, "{net}"),
            (Some(p), false) => write!(f, "{net}:{p}"),
            (Some(p), true) => write!(f, "[{net}]:{p}"),
        }
    }
}

fn destinations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Destination>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.parse().map_err(|e| {
                refuse(
                    e,
                    "a destination is an address or network, with an optional port: \
                     \"10.0.0.5:443\", \"198.51.100.0/24\", \"[2001:db8::1]:443\"",
                )
            })
        })
        .collect()
}

/// Names of `LAB_*` variables: anything else could hand a secret of the runner to the VMs.
fn lab_variables<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    match names.iter().find(|n| !is_lab_variable(n)) {
        Some(bad) => Err(refuse(
            format!("`{bad}` is not a LAB_* variable"),
            "only variables named LAB_<NAME> (capitals, digits, _) reach the suites",
        )),
        None => Ok(names),
    }
}

fn is_lab_variable(name: &str) -> bool {
    name.strip_prefix("LAB_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    #[test]
    fn unset_lets_no_variable_through() {
        assert!(loaded("").untrusted.lab_env.is_empty());
        let c = loaded("[untrusted]\nlab_env = [\"LAB_MTU\", \"LAB_CUT_2\"]\n");
        assert_eq!(c.untrusted.lab_env, ["LAB_MTU", "LAB_CUT_2"]);
    }

    #[test]
    fn destinations_are_addresses_or_networks_with_an_optional_port() {
        let c = loaded(
            "[untrusted]\nallow = [\"10.0.0.5\", \"198.51.100.0/24:443\", \"[2001:db8::1]:53\", \"2001:db8::/32\"]\n",
        );
        let shown: Vec<String> = c.untrusted.allow.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            shown,
            [
                "10.0.0.5",
                "198.51.100.0/24:443",
                "[2001:db8::1]:53",
                "2001:db8::/32"
            ]
        );
        assert_eq!(c.untrusted.allow[1].port, Some(443));
        assert_eq!(c.untrusted.allow[3].prefix, 32);
        assert!(loaded("").untrusted.allow.is_empty());
    }

    #[test]
    fn a_destination_that_does_not_parse_is_located() {
        for (bad, message) in [
            ("example.com:443", "`example.com` is not an IP address"),
            ("10.0.0.0/33", "`/33` is not a prefix length of 10.0.0.0"),
            ("10.0.0.5:0", "`0` is not a port"),
            ("[2001:db8::1:443", "`[2001:db8::1:443` has no closing `]`"),
        ] {
            let e = rejected(&format!("[untrusted]\nallow = [\"{bad}\"]\n"));
            assert_eq!(e.line, 2, "{bad}");
            assert_eq!(e.key.as_deref(), Some("untrusted.allow"), "{bad}");
            assert_eq!(e.message, message);
        }
    }

    #[test]
    fn a_variable_that_is_not_lab_prefixed_is_located() {
        let e = rejected("[untrusted]\nlab_env = [\"LAB_MTU\", \"METAL_AUTH_TOKEN\"]\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.key.as_deref(), Some("untrusted.lab_env"));
        assert_eq!(e.message, "`METAL_AUTH_TOKEN` is not a LAB_* variable");
    }
}
