//! `[capacity]`: how much a host may run at once.

use serde::Deserialize;

/// How much a host may run at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// At most this many VMs at once on one host. Default: what the host's cores and free
    /// memory allow (under TCG each VM keeps a core busy).
    pub vms: Option<usize>,
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
    fn an_unknown_key_is_located_and_names_the_known_one() {
        let e = rejected("[capacity]\nvm = 3\n");
        assert_eq!((e.line, e.column), (2, 1));
        assert_eq!(e.key.as_deref(), Some("capacity.vm"));
        assert_eq!(e.message, "unknown field `vm`, expected `vms`");
    }
}
