//! `[capacity]`: how much a host may run at once.

use serde::Deserialize;

use crate::config::located::refuse;

/// How much a host may run at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// At most this many VMs at once on one host. Default: what the host's cores and free
    /// memory allow (under TCG each VM keeps a core busy). At least 1.
    #[serde(default, deserialize_with = "at_least_one")]
    pub vms: Option<usize>,
}

/// Zero VMs at once would run nothing, ever.
fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match Option::<usize>::deserialize(d)? {
        Some(0) => Err(refuse(
            "0 is below the minimum of 1",
            "leave `vms` out for what the host's cores and memory allow",
        )),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    #[test]
    fn unset_means_what_the_host_allows() {
        assert_eq!(loaded("").capacity.vms, None);
        assert_eq!(loaded("[capacity]\nvms = 3\n").capacity.vms, Some(3));
    }

    #[test]
    fn zero_vms_is_located_at_its_value() {
        let e = rejected("[capacity]\nvms = 0\n");
        assert_eq!((e.line, e.column), (2, 7));
        assert_eq!(e.key.as_deref(), Some("capacity.vms"));
        assert_eq!(e.message, "0 is below the minimum of 1");
        assert!(e.hint.unwrap().starts_with("leave `vms` out"));
    }

    #[test]
    fn an_unknown_key_is_located_and_names_the_known_one() {
        let e = rejected("[capacity]\nvm = 3\n");
        assert_eq!((e.line, e.column), (2, 1));
        assert_eq!(e.key.as_deref(), Some("capacity.vm"));
        assert_eq!(e.message, "unknown field `vm`, expected `vms`");
    }
}
