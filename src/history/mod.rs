//! Benchmark history: every run's results in one SQLite file, so that a run can be compared with
//! the runs before it (the regression gate), plotted over time (the HTML report) and exported.
//!
//! One file per host by default (`<state dir>/history.sqlite`, or `[history] path`), written by
//! every run at its end. Concurrent runs on a host write into the same file: WAL mode lets readers
//! and one writer proceed together, and a busy timeout makes a second writer wait its turn
//! instead of failing. A run is stored whole in one transaction and replaces any earlier copy of
//! itself, so importing a run twice changes nothing.

mod conditions;
mod error;
mod export;
mod schema;
mod store;

use std::path::PathBuf;

pub use conditions::{ComparableConditions, differences};
pub use error::HistoryError;
pub use export::write_csv;
pub use store::{History, MetricKey, MetricRun, RunSummary, SampleRow, TestResult};

use crate::state::StateDir;

/// The history's file name inside the state directory.
pub const DEFAULT_FILE: &str = "history.sqlite";

/// Where the history lives when `[history] path` is not set.
pub fn default_path(state: &StateDir) -> PathBuf {
    state.root().join(DEFAULT_FILE)
}

/// Overrides the history's path for every command, `metalab run` included.
pub const PATH_ENV: &str = "METALAB_HISTORY";

/// The history a run writes to: `METALAB_HISTORY`, else `[history] path`, else the default.
pub fn path(configured: Option<&PathBuf>, state: &StateDir) -> PathBuf {
    std::env::var_os(PATH_ENV)
        .map(PathBuf::from)
        .or_else(|| configured.cloned())
        .unwrap_or_else(|| default_path(state))
}
