//! Benchmark history: every run's results, so that a run can be compared with the runs before
//! it (the regression gate), plotted over time (the HTML report) and exported.
//!
//! Two stores, the same schema and behaviour ([`backend`]):
//! - a SQLite file, the default: one per host (`<state dir>/history.sqlite`, or
//!   `[history] path`), written by every run at its end. Concurrent runs on a host write into
//!   the same file: WAL mode lets readers and one writer proceed together, and a busy timeout
//!   makes a second writer wait its turn instead of failing;
//! - a PostgreSQL server (`[history] url`, or a `postgres://` URL in `METALAB_HISTORY`) that the
//!   hosts of a fleet share, so that every host's runs are one history: shards read the same
//!   durations and baselines, and the dashboard shows every run.
//!
//! A run is stored whole in one transaction and replaces any earlier copy of itself, so
//! importing a run twice changes nothing.

mod backend;
mod conditions;
mod error;
mod export;
mod location;
mod schema;
mod store;
pub(crate) mod value;

use std::path::{Path, PathBuf};

pub use conditions::{ComparableConditions, differences};
pub use error::HistoryError;
pub use export::write_csv;
pub use location::{Location, Server, is_url};
pub use store::{
    History, MetricKey, MetricRun, MetricWindow, RunSummary, SampleRow, StoredPlan, TestResult,
};

use crate::state::StateDir;

/// The history's file name inside the state directory.
pub const DEFAULT_FILE: &str = "history.sqlite";

/// Where the history lives when `[history]` says nothing.
pub fn default_path(state: &StateDir) -> PathBuf {
    state.root().join(DEFAULT_FILE)
}

/// Overrides the history for every command, `metalab run` included: a file's path, or a
/// `postgres://` URL (which may hold the password; no child process inherits it).
pub const ENV: &str = "METALAB_HISTORY";

/// The history a command uses: `METALAB_HISTORY`, else `[history]`, else the default file.
pub fn location(configured: Option<&Location>, state: &StateDir) -> Result<Location, String> {
    match std::env::var(ENV) {
        Ok(text) if !text.is_empty() => Location::parse(&text).map_err(|e| format!("{ENV}: {e}")),
        _ => Ok(configured
            .cloned()
            .unwrap_or_else(|| Location::File(default_path(state)))),
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Location {
        Location::File(p.to_path_buf())
    }
}

impl From<&PathBuf> for Location {
    fn from(p: &PathBuf) -> Location {
        Location::File(p.clone())
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Location {
        Location::File(p)
    }
}

impl From<&Location> for Location {
    fn from(l: &Location) -> Location {
        l.clone()
    }
}
