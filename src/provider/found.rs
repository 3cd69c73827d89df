//! What `metalab reap` found of metalab's in a provider's cloud, and what became of each.

use crate::ids::RunId;

/// One of metalab's resources in a cloud (a Metal device or key; an EC2 instance, key pair or
/// security group), and what reap makes of it.
#[derive(Debug)]
pub struct Found {
    pub what: String,
    pub run: Option<RunId>,
    pub outcome: Outcome,
}

/// What reap did with one resource, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Deleted, being due for the reason given.
    Removed { why: String },
    /// Due, and left because of `--dry-run`.
    WouldRemove { why: String },
    /// Not due, for the reason given.
    Kept { why: String },
    /// Due, but its delete failed.
    NotRemoved { why: String, problem: String },
    /// It cannot be read, nor told by its id; `ours` when it is metalab's all the same (it
    /// carries the `metalab` tag).
    Unreadable { problem: String, ours: bool },
}

impl Found {
    /// Something of metalab's that reap meant to remove, or could not judge, is still there.
    pub fn left_behind(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::NotRemoved { .. } | Outcome::Unreadable { ours: true, .. }
        )
    }
}
