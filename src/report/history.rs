//! Stores each run in the benchmark history when it finishes.
//!
//! The history is a convenience on top of the run's own result files, never a condition of them:
//! a locked, corrupt or too-new database is reported with a way to re-import the run later, and
//! changes neither the result files nor the run's exit status.

use std::path::PathBuf;

use super::Reporter;
use super::files::RESULTS_JSON;
use crate::history::History;
use crate::model::event::{Event, EventKind};
use crate::model::record::RunRecord;

pub struct HistoryRecorder {
    db: PathBuf,
    run_dir: PathBuf,
    record: RunRecord,
}

impl HistoryRecorder {
    pub fn new(db: PathBuf, run_dir: PathBuf, record: RunRecord) -> HistoryRecorder {
        HistoryRecorder {
            db,
            run_dir,
            record,
        }
    }

    fn store(&self) {
        let stored = History::open(&self.db).and_then(|mut h| h.insert(&self.record));
        if let Err(e) = stored {
            eprintln!(
                "metalab: error: the run was not added to the history: {e}\n  \
                 its results are intact; to add it later: metalab history import {}",
                self.run_dir.join(RESULTS_JSON).display()
            );
        }
    }
}

impl Reporter for HistoryRecorder {
    fn on_event(&mut self, event: &Event) {
        self.record.apply(event);
        if let EventKind::RunFinished { .. } = event.kind {
            self.store();
        }
    }
}
