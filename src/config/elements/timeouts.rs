//! `[timeouts]`: the deadline of each phase of a run.

use std::time::Duration;

use serde::Deserialize;

use crate::config::values::positive_duration;

/// Deadlines of each phase. A test or step may set its own `timeout` in its suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Bringing the VMs up, until each answers SSH. Default 15m.
    #[serde(deserialize_with = "positive_duration")]
    pub up: Duration,
    /// One setup or teardown step of a suite. Default 5m.
    #[serde(deserialize_with = "positive_duration")]
    pub setup: Duration,
    /// One test. Default 5m.
    #[serde(deserialize_with = "positive_duration")]
    pub test: Duration,
    /// Destroying the VMs. Default 3m.
    #[serde(deserialize_with = "positive_duration")]
    pub destroy: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            up: Duration::from_secs(15 * 60),
            setup: Duration::from_secs(5 * 60),
            test: Duration::from_secs(5 * 60),
            destroy: Duration::from_secs(3 * 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    use super::*;

    const MIN: u64 = 60;

    #[test]
    fn defaults() {
        let t = loaded("").timeouts;
        assert_eq!(t.up, Duration::from_secs(15 * MIN));
        assert_eq!(t.setup, Duration::from_secs(5 * MIN));
        assert_eq!(t.test, Duration::from_secs(5 * MIN));
        assert_eq!(t.destroy, Duration::from_secs(3 * MIN));
    }

    #[test]
    fn one_set_leaves_the_others_at_their_defaults() {
        let t = loaded("[timeouts]\ntest = \"90s\"\n").timeouts;
        assert_eq!(t.test, Duration::from_secs(90));
        assert_eq!(t.up, Duration::from_secs(15 * MIN));
    }

    #[test]
    fn a_zero_timeout_is_located_at_its_value() {
        for key in ["up", "setup", "test", "destroy"] {
            let e = rejected(&format!("[timeouts]\n{key} = \"0s\"\n"));
            assert_eq!((e.line, e.column), (2, key.len() + 4), "{key}");
            assert_eq!(e.key, Some(format!("timeouts.{key}")));
            assert_eq!(
                e.message,
                "0s is no time at all: this duration must be above zero"
            );
            assert_eq!(
                e.hint.as_deref(),
                Some("e.g. \"90s\", \"5m\" or \"1h 30m\"")
            );
        }
    }

    #[test]
    fn a_duration_without_a_unit_is_located() {
        let e = rejected("[timeouts]\nup = \"15\"\n");
        assert_eq!((e.line, e.column), (2, 6));
        assert_eq!(e.key.as_deref(), Some("timeouts.up"));
    }
}
