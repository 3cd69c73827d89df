//! The run journal: before a run creates anything, it writes down what it is about to create,
//! durably (fsync), in `runs/<run-id>/journal.jsonl`. When the resource is torn down, a second
//! line marks it done. If metalab dies (even by SIGKILL), `metalab reap` reads the journals to
//! find what is left. Journals are a guide, not the truth: reap also looks at the real resources.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::RunId;
use crate::state::{RunDir, StateDir};

/// Something a run creates and must remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A Vagrant project: its VMs, and the libvirt domains, networks and volumes named
    /// `<prefix>*` on the host.
    VagrantProject {
        host: String,
        project: crate::vagrant::Project,
        prefix: String,
    },
    /// A claim on the run's private subnet.
    Subnet { prefix: String },
    /// A Metal device, by hostname (its id is known only after the create answers).
    MetalDevice {
        api_url: String,
        project: String,
        hostname: String,
    },
    /// The run's SSH key in a Metal project.
    MetalKey {
        api_url: String,
        project: String,
        label: String,
    },
    /// Something the run asks EC2 for: an instance, by the `Name` tag it is launched with; the
    /// run's key pair or security group, by name. Each carries the run's tags, by which release
    /// and reap find it whether or not its create answered.
    Ec2 {
        region: String,
        endpoint_url: Option<String>,
        what: Ec2Kind,
        name: String,
    },
}

/// What kind of EC2 resource a journal entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ec2Kind {
    Instance,
    KeyPair,
    SecurityGroup,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    time: DateTime<Utc>,
    /// Numbers entries; a `done` line refers to one.
    entry: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Resource>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    done: bool,
}

/// An open journal, appended to by the engine.
pub struct Journal {
    file: File,
    next: u32,
}

/// Refers to a journal entry, to mark it done.
#[derive(Debug, Clone, Copy)]
pub struct EntryId(u32);

impl Journal {
    pub fn open(run: &RunDir) -> std::io::Result<Journal> {
        std::fs::create_dir_all(run.root())?;
        let path = run.journal();
        let next = Self::read(&path)
            .iter()
            .map(|l| l.entry + 1)
            .max()
            .unwrap_or(0);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        // A line torn by a crash must not swallow the next one.
        let text = std::fs::read(&path)?;
        if text.last().is_some_and(|&b| b != b'\n') {
            file.write_all(b"\n")?;
        }
        Ok(Journal { file, next })
    }

    /// Records a resource that is about to be created.
    pub fn record(&mut self, resource: Resource) -> std::io::Result<EntryId> {
        let id = self.next;
        self.next += 1;
        self.append(&Line {
            time: Utc::now(),
            entry: id,
            resource: Some(resource),
            done: false,
        })?;
        Ok(EntryId(id))
    }

    /// Marks a resource as torn down.
    pub fn done(&mut self, id: EntryId) -> std::io::Result<()> {
        self.append(&Line {
            time: Utc::now(),
            entry: id.0,
            resource: None,
            done: true,
        })
    }

    fn append(&mut self, line: &Line) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()
    }

    fn read(path: &Path) -> Vec<Line> {
        let Ok(f) = File::open(path) else {
            return Vec::new();
        };
        // A line torn by a crash mid-write is skipped; the fsync before each create means the
        // entries that matter are whole.
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    /// The resources of a journal that were never marked done, in the order they were created.
    pub fn pending(path: &Path) -> Vec<(EntryId, Resource)> {
        let lines = Self::read(path);
        let done: Vec<u32> = lines.iter().filter(|l| l.done).map(|l| l.entry).collect();
        lines
            .into_iter()
            .filter(|l| !done.contains(&l.entry))
            .filter_map(|l| l.resource.map(|r| (EntryId(l.entry), r)))
            .collect()
    }
}

/// Who owns a run, so that nothing else touches its resources while it lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: a pid from before a reboot belongs to nobody.
    pub boot_id: String,
    pub started: DateTime<Utc>,
    /// When the run ended with its VMs kept: the time after which reap may remove them.
    pub keep_until: Option<DateTime<Utc>>,
    /// Set once the run has torn everything down.
    pub finished: bool,
}

impl Owner {
    pub fn me() -> Owner {
        Owner {
            pid: std::process::id(),
            boot_id: boot_id(),
            started: Utc::now(),
            keep_until: None,
            finished: false,
        }
    }

    pub fn save(&self, run: &RunDir) -> anyhow::Result<()> {
        crate::files::write_atomic(&run.owner(), serde_json::to_string_pretty(self)?.as_bytes())
    }

    pub fn load(run: &RunDir) -> Option<Owner> {
        serde_json::from_str(&std::fs::read_to_string(run.owner()).ok()?).ok()
    }

    /// The owning process still runs (same boot, pid alive and a metalab process).
    pub fn alive(&self) -> bool {
        if self.boot_id != boot_id() {
            return false;
        }
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains("metalab")
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A run with no record in this state directory is left alone while younger than this: it may
/// belong to a metalab using another state directory.
const UNKNOWN_RUN_GRACE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// What may be done with a run's leftovers, from who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its owner process is running.
    Live { pid: u32 },
    /// Kept on purpose until then.
    Kept { until: DateTime<Utc> },
    /// Unknown here and recent: perhaps another state directory's.
    Recent,
    /// Nobody owns it any more: remove it.
    Reap { why: String },
}

/// Whether a run's leftovers may be removed: never while its metalab lives, nor kept VMs before
/// their expiry, nor a run this state directory does not know while it is recent.
pub fn judge(state: &StateDir, run: &RunId, now: DateTime<Utc>) -> Verdict {
    match Owner::load(&state.run(run)) {
        Some(o) if !o.finished && o.keep_until.is_none() && o.alive() => {
            Verdict::Live { pid: o.pid }
        }
        Some(Owner {
            keep_until: Some(until),
            ..
        }) if until > now => Verdict::Kept { until },
        Some(Owner {
            keep_until: Some(_),
            ..
        }) => Verdict::Reap {
            why: "kept VMs expired".into(),
        },
        Some(o) if o.finished => Verdict::Reap {
            why: "run finished, resources remain".into(),
        },
        Some(o) => Verdict::Reap {
            why: format!("its process ({}) is gone", o.pid),
        },
        None => match run.started() {
            Some(started) if now - started < UNKNOWN_RUN_GRACE => Verdict::Recent,
            _ => Verdict::Reap {
                why: "no owner on record, older than an hour".into(),
            },
        },
    }
}

/// The journal file of a run directory.
pub fn path(run: &RunDir) -> PathBuf {
    run.journal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RunId;
    use crate::state::StateDir;

    #[test]
    fn pending_entries_survive_until_marked_done() {
        let dir = tempfile::tempdir().unwrap();
        let run = StateDir::at(dir.path().to_path_buf()).run(&RunId::generate());
        let mut j = Journal::open(&run).unwrap();
        let a = j
            .record(Resource::Subnet {
                prefix: "10.77.3".into(),
            })
            .unwrap();
        j.record(Resource::Subnet {
            prefix: "10.77.4".into(),
        })
        .unwrap();
        j.done(a).unwrap();
        drop(j);
        // A torn last line, as a crash mid-write leaves it.
        OpenOptions::new()
            .append(true)
            .open(run.journal())
            .unwrap()
            .write_all(b"{\"time\":")
            .unwrap();
        let pending = Journal::pending(&run.journal());
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending[0].1,
            Resource::Subnet {
                prefix: "10.77.4".into()
            }
        );
        // Reopening continues the numbering, so a later `done` cannot hit an old entry.
        let mut j = Journal::open(&run).unwrap();
        let c = j
            .record(Resource::Subnet {
                prefix: "10.77.5".into(),
            })
            .unwrap();
        assert_eq!(c.0, 2);
        drop(j);
        let pending = Journal::pending(&run.journal());
        assert_eq!(
            pending.len(),
            2,
            "the entry after the torn line was lost: {pending:?}"
        );
    }

    #[test]
    fn my_own_process_is_alive_and_a_stranger_is_not() {
        assert!(Owner::me().alive());
        let mut other = Owner::me();
        other.boot_id = "another boot".into();
        assert!(!other.alive());
    }
}
