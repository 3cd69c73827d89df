//! How many bytes of what the VMs send back a run keeps: each log up to `outputs.log_cap`, and
//! all of the run's logs and artifacts together up to `outputs.run_cap`. A suite may come from
//! a hostile pull request; whatever it prints or leaves, the host's disk and metalab's memory
//! stay bounded. Writers ask before they write, and say where they were cut.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::Outputs;

/// Which cap stopped bytes from being kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The log reached `outputs.log_cap`, this many bytes.
    Log(u64),
    /// The run's logs and artifacts together reached `outputs.run_cap`, this many bytes.
    Run(u64),
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cap::Log(n) => write!(f, "{} (outputs.log_cap)", size_text(*n)),
            Cap::Run(n) => write!(f, "the run's cap of {} (outputs.run_cap)", size_text(*n)),
        }
    }
}

/// How much of what a writer asked for it may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub kept: usize,
    /// Set when less than asked was granted: the cap that was reached.
    pub cut: Option<Cap>,
}

/// A run's byte budget, shared by everything that writes the VMs' output to disk.
#[derive(Debug)]
pub struct Budget {
    caps: Outputs,
    used: Mutex<Used>,
}

#[derive(Debug, Default)]
struct Used {
    run: u64,
    /// Bytes kept per log, however many writers (attempts, VMs side by side) share it.
    logs: HashMap<PathBuf, u64>,
    run_cap_reached: bool,
}

impl Budget {
    pub fn new(caps: Outputs) -> Budget {
        Budget {
            caps,
            used: Mutex::default(),
        }
    }

    /// Up to `want` more bytes for the log at `log`, within its cap and the run's.
    pub fn for_log(&self, log: &Path, want: usize) -> Grant {
        let mut used = self.used.lock().expect("not poisoned");
        let log_used = used.logs.get(log).copied().unwrap_or(0);
        let log_left = self.caps.log_cap.saturating_sub(log_used);
        let run_left = self.caps.run_cap.saturating_sub(used.run);
        let grant = used.take(want, log_left.min(run_left));
        *used.logs.entry(log.to_path_buf()).or_default() += grant as u64;
        let cut = (grant < want).then(|| {
            if log_left <= run_left {
                Cap::Log(self.caps.log_cap)
            } else {
                used.run_cap_reached = true;
                Cap::Run(self.caps.run_cap)
            }
        });
        Grant { kept: grant, cut }
    }

    /// Up to `want` more bytes for an artifact, within the run's cap.
    pub fn for_artifact(&self, want: usize) -> Grant {
        let mut used = self.used.lock().expect("not poisoned");
        let run_left = self.caps.run_cap.saturating_sub(used.run);
        let grant = used.take(want, run_left);
        let cut = (grant < want).then(|| {
            used.run_cap_reached = true;
            Cap::Run(self.caps.run_cap)
        });
        Grant { kept: grant, cut }
    }

    /// The run's cap, when it was reached: something of the run was dropped.
    pub fn run_cap_reached(&self) -> Option<Cap> {
        let used = self.used.lock().expect("not poisoned");
        used.run_cap_reached.then_some(Cap::Run(self.caps.run_cap))
    }
}

impl Used {
    /// Takes up to `want` bytes of the `left` allowed, from the run's total.
    fn take(&mut self, want: usize, left: u64) -> usize {
        let grant = usize::try_from(left).map_or(want, |left| want.min(left));
        self.run += grant as u64;
        grant
    }
}

/// `16 MiB`, `1 GiB`, `1.5 KiB`, `300 B`: a size as people read it, in the units the caps are
/// written in.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut unit = "B";
    let mut scale = 1u64;
    for (i, name) in UNITS.iter().enumerate() {
        let next = 1u64 << (10 * (i + 1));
        if bytes < next {
            break;
        }
        (unit, scale) = (name, next);
    }
    if bytes.is_multiple_of(scale) {
        format!("{} {unit}", bytes / scale)
    } else {
        format!("{:.1} {unit}", bytes as f64 / scale as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(log_cap: u64, run_cap: u64) -> Budget {
        Budget::new(Outputs { log_cap, run_cap })
    }

    #[test]
    fn a_log_keeps_up_to_its_cap_across_writers() {
        let b = budget(10, 100);
        let log = Path::new("a.log");
        assert_eq!(b.for_log(log, 6), Grant { kept: 6, cut: None });
        // A second writer of the same log (a retry) shares what is left.
        assert_eq!(
            b.for_log(log, 6),
            Grant {
                kept: 4,
                cut: Some(Cap::Log(10))
            }
        );
        assert_eq!(b.for_log(log, 1).kept, 0);
        assert_eq!(b.for_log(Path::new("b.log"), 6).kept, 6);
        assert_eq!(b.run_cap_reached(), None);
    }

    #[test]
    fn the_run_cap_binds_logs_and_artifacts_together() {
        let b = budget(10, 15);
        assert_eq!(b.for_artifact(8).kept, 8);
        assert_eq!(
            b.for_log(Path::new("a.log"), 10),
            Grant {
                kept: 7,
                cut: Some(Cap::Run(15))
            }
        );
        assert_eq!(
            b.for_artifact(1),
            Grant {
                kept: 0,
                cut: Some(Cap::Run(15))
            }
        );
        assert_eq!(b.run_cap_reached(), Some(Cap::Run(15)));
    }

    #[test]
    fn caps_read_as_their_keys() {
        assert_eq!(Cap::Log(16 << 20).to_string(), "16 MiB (outputs.log_cap)");
        assert_eq!(
            Cap::Run(1 << 30).to_string(),
            "the run's cap of 1 GiB (outputs.run_cap)"
        );
        assert_eq!(size_text(300), "300 B");
        assert_eq!(size_text(1536), "1.5 KiB");
    }
}
