//! `[retries]`: how often failures are retried.

use serde::Deserialize;

/// How often failures are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retries {
    /// Infrastructure failures before any suite ran (a VM that does not boot, SSH that does not
    /// answer): retried with fresh VMs this many times. Default 1.
    pub infra: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Retries { infra: 1 }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    #[test]
    fn infrastructure_failures_are_retried_once_by_default() {
        assert_eq!(loaded("").retries.infra, 1);
        assert_eq!(loaded("[retries]\ninfra = 0\n").retries.infra, 0);
    }

    #[test]
    fn a_negative_count_is_refused() {
        let e = rejected("[retries]\ninfra = -1\n");
        assert_eq!((e.line, e.column), (2, 9));
        assert_eq!(e.key.as_deref(), Some("retries.infra"));
    }
}
