//! Stores a finished run in the benchmark history.
//!
//! The history is a convenience on top of the run's own result files, never a condition of them:
//! a locked, corrupt, unreachable or too-new database is reported with a way to re-import the run later, and
//! changes neither the result files nor the run's exit status.

use std::path::Path;

use super::files::RESULTS_JSON;
use crate::history::{History, Location};
use crate::model::record::RunRecord;

pub fn store(db: &Location, run_dir: &Path, record: &RunRecord) {
    let stored = History::open(db).and_then(|mut h| h.insert(record));
    if let Err(e) = stored {
        eprintln!(
            "metalab: error: the run was not added to the history: {e}\n  \
             its results are intact; to add it later: metalab history import {}",
            run_dir.join(RESULTS_JSON).display()
        );
    }
}
