//! Which conditions make two runs' numbers comparable: the machine (its CPU, cores and kernel,
//! not its name), the VMs' shape and accelerator, and the box. The lab's commit and metalab's version are deliberately left out: a change there
//! is exactly what the regression gate is meant to judge.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::record::{Conditions, HostFingerprint};

/// The comparable part of a run's [`Conditions`]: the machine (not its name: identical
/// machines of a fleet are comparable), its accelerator, the VMs' shape and the box.
#[derive(Debug, Serialize)]
pub struct ComparableConditions<'a> {
    pub cpu_model: &'a str,
    pub cores: u32,
    pub kernel: &'a str,
    pub accel: &'a str,
    pub vm_cpus: u32,
    pub vm_memory_mib: u32,
    pub box_sha256: &'a str,
}

impl<'a> ComparableConditions<'a> {
    pub fn of(c: &'a Conditions) -> ComparableConditions<'a> {
        ComparableConditions {
            cpu_model: &c.host.cpu_model,
            cores: c.host.cores,
            kernel: &c.host.kernel,
            accel: &c.accel,
            vm_cpus: c.vm_cpus,
            vm_memory_mib: c.vm_memory_mib,
            box_sha256: &c.box_sha256,
        }
    }

    /// A short hash: two runs have the same key exactly when their numbers may be compared.
    pub fn key(&self) -> String {
        short_hash(self)
    }
}

/// A short hash of the host alone (hostname, CPU model, cores, kernel), for exports.
pub fn host_fingerprint(host: &HostFingerprint) -> String {
    short_hash(host)
}

fn short_hash(value: &impl Serialize) -> String {
    // Serializing plain strings and numbers cannot fail; an empty input would still hash.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

/// What differs between two runs' comparable conditions, one `field: a → b` per difference.
pub fn differences(a: &Conditions, b: &Conditions) -> Vec<String> {
    let fields: [(&str, String, String); 7] = [
        ("cpu", a.host.cpu_model.clone(), b.host.cpu_model.clone()),
        ("cores", a.host.cores.to_string(), b.host.cores.to_string()),
        ("kernel", a.host.kernel.clone(), b.host.kernel.clone()),
        ("accel", a.accel.clone(), b.accel.clone()),
        ("vm.cpus", a.vm_cpus.to_string(), b.vm_cpus.to_string()),
        (
            "vm.memory",
            format!("{} MiB", a.vm_memory_mib),
            format!("{} MiB", b.vm_memory_mib),
        ),
        ("box", short_sha(&a.box_sha256), short_sha(&b.box_sha256)),
    ];
    fields
        .into_iter()
        .filter(|(_, x, y)| x != y)
        .map(|(name, x, y)| format!("{name}: {x} → {y}"))
        .collect()
}

fn short_sha(sha: &str) -> String {
    sha.get(..12).unwrap_or(sha).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions() -> Conditions {
        Conditions {
            host: HostFingerprint {
                hostname: "lab1".into(),
                cpu_model: "EPYC".into(),
                cores: 2,
                kernel: "6.1.0".into(),
            },
            vm_cpus: 1,
            vm_memory_mib: 768,
            accel: "tcg".into(),
            box_sha256: "cfeda526654a47fa646c35ec6db2037b".into(),
            metalab_version: "0.1.0".into(),
            lab_commit: Some("abc".into()),
        }
    }

    #[test]
    fn commit_version_and_host_name_do_not_change_the_key() {
        let a = conditions();
        let mut b = conditions();
        b.lab_commit = Some("def".into());
        b.metalab_version = "0.2.0".into();
        b.host.hostname = "lab2".into();
        assert_eq!(
            ComparableConditions::of(&a).key(),
            ComparableConditions::of(&b).key()
        );
        assert!(differences(&a, &b).is_empty());
    }

    #[test]
    fn accel_and_memory_change_the_key_and_are_named() {
        let a = conditions();
        let mut b = conditions();
        b.accel = "kvm".into();
        b.vm_memory_mib = 1024;
        assert_ne!(
            ComparableConditions::of(&a).key(),
            ComparableConditions::of(&b).key()
        );
        assert_eq!(
            differences(&a, &b),
            vec!["accel: tcg → kvm", "vm.memory: 768 MiB → 1024 MiB"]
        );
    }
}
