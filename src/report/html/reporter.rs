//! Writes the run's HTML report when the run finishes, after its result files (it comes after
//! `ResultFiles` and `HistoryRecorder` in the reporters, so the index lists this run too).

use std::path::PathBuf;

use crate::gate::Options;
use crate::model::event::{Event, EventKind};
use crate::model::record::RunRecord;
use crate::report::Reporter;

pub struct HtmlReport {
    db: PathBuf,
    run_dir: PathBuf,
    record: RunRecord,
    options: Options,
}

impl HtmlReport {
    pub fn new(db: PathBuf, run_dir: PathBuf, record: RunRecord, options: Options) -> HtmlReport {
        HtmlReport {
            db,
            run_dir,
            record,
            options,
        }
    }

    fn write(&self) {
        match super::build(&self.record, &self.run_dir, &self.db, &self.options) {
            Ok(built) => {
                println!("report   {}", built.report.display());
                if let Some(w) = built.warning {
                    eprintln!("metalab: warning: {w}");
                }
            }
            Err(e) => eprintln!("metalab: error: cannot write the HTML report: {e:#}"),
        }
    }
}

impl Reporter for HtmlReport {
    fn on_event(&mut self, event: &Event) {
        self.record.apply(event);
        if let EventKind::RunFinished { .. } = event.kind {
            self.write();
        }
    }
}
