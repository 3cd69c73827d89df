//! `[vm]`: the resources of each lab VM.

use serde::Deserialize;

/// `kvm` where it works, `tcg` (software emulation) otherwise; `auto` probes once per host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM if the host has it, else TCG. The default.
    Auto,
    /// Hardware virtualization; a host without it fails.
    Kvm,
    /// Software emulation, slow but everywhere.
    Tcg,
}

/// Resources of each lab VM, handed to the Vagrantfile through `METALAB_*` variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmDefaults {
    /// vCPUs per VM. Default 1.
    #[serde(deserialize_with = "at_least::<1, _>")]
    pub cpus: u32,
    /// MiB of memory per VM. Default 768; a Debian VM needs at least 256.
    #[serde(deserialize_with = "at_least::<256, _>")]
    pub memory: u32,
    /// Accelerator. Default `auto`.
    pub accel: Accel,
}

impl Default for VmDefaults {
    fn default() -> Self {
        VmDefaults {
            cpus: 1,
            memory: 768,
            accel: Accel::Auto,
        }
    }
}

/// Rejects numbers below `MIN`; the toml deserializer attaches the value's span to the error.
fn at_least<'de, const MIN: u32, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n < MIN {
        return Err(serde::de::Error::custom(format!(
            "{n} is below the minimum of {MIN}"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    use super::*;

    #[test]
    fn defaults() {
        let vm = loaded("").vm;
        assert_eq!((vm.cpus, vm.memory, vm.accel), (1, 768, Accel::Auto));
    }

    #[test]
    fn settings_are_read() {
        let vm = loaded("[vm]\ncpus = 4\nmemory = 2048\naccel = \"tcg\"\n").vm;
        assert_eq!((vm.cpus, vm.memory, vm.accel), (4, 2048, Accel::Tcg));
    }

    #[test]
    fn too_little_memory_is_located_at_its_value() {
        let e = rejected("[vm]\nmemory = 100\n");
        assert_eq!((e.line, e.column), (2, 10));
        assert_eq!(e.key.as_deref(), Some("vm.memory"));
        assert_eq!(e.message, "100 is below the minimum of 256");
    }

    #[test]
    fn zero_cpus_are_refused() {
        let e = rejected("[vm]\ncpus = 0\n");
        assert_eq!(e.key.as_deref(), Some("vm.cpus"));
        assert_eq!(e.message, "0 is below the minimum of 1");
    }

    #[test]
    fn an_unknown_key_is_located_with_a_suggestion() {
        let e = rejected("[vm]\ncpus = 2\nmemroy = 512\n");
        assert_eq!((e.line, e.column), (3, 1));
        assert_eq!(e.key.as_deref(), Some("vm.memroy"));
        assert!(
            e.message.starts_with("unknown field `memroy`"),
            "{}",
            e.message
        );
        assert_eq!(e.hint.as_deref(), Some("did you mean `memory`?"));
    }

    #[test]
    fn an_unknown_accelerator_is_refused() {
        let e = rejected("[vm]\naccel = \"hvf\"\n");
        assert_eq!(e.key.as_deref(), Some("vm.accel"));
        assert!(
            e.message.starts_with("unknown variant `hvf`"),
            "{}",
            e.message
        );
    }
}
