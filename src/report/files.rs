//! The result files of a run, under `artifacts/<run-id>/`: `results.json` (the [`RunRecord`]) and
//! `junit.xml`. `artifacts/latest` points at the newest run, so pipelines can use fixed paths.

use std::path::{Path, PathBuf};

use crate::files::write_atomic;

use anyhow::Context;

use super::Reporter;
use super::junit;
use crate::model::event::{Event, EventKind};
use crate::model::record::RunRecord;

pub const RESULTS_JSON: &str = "results.json";
pub const JUNIT_XML: &str = "junit.xml";
pub const LATEST_LINK: &str = "latest";

/// Builds the run's record from events and writes the result files when the run ends.
pub struct ResultFiles {
    run_dir: PathBuf,
    record: RunRecord,
    /// Extra copies of the JUnit file requested on the command line.
    junit_copies: Vec<PathBuf>,
}

impl ResultFiles {
    pub fn new(run_dir: PathBuf, record: RunRecord, junit_copies: Vec<PathBuf>) -> ResultFiles {
        ResultFiles {
            run_dir,
            record,
            junit_copies,
        }
    }

    fn write(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.run_dir)
            .with_context(|| format!("cannot create {}", self.run_dir.display()))?;
        let json = serde_json::to_string_pretty(&self.record)?;
        write_atomic(&self.run_dir.join(RESULTS_JSON), json.as_bytes())?;
        let xml = junit::render(&self.record, &self.run_dir)?;
        write_atomic(&self.run_dir.join(JUNIT_XML), xml.as_bytes())?;
        for copy in &self.junit_copies {
            write_atomic(copy, xml.as_bytes())?;
        }
        point_latest(&self.run_dir)
    }
}

impl Reporter for ResultFiles {
    fn on_event(&mut self, event: &Event) {
        self.record.apply(event);
        if let EventKind::RunFinished { .. } = event.kind
            && let Err(e) = self.write()
        {
            eprintln!("metalab: error: cannot write the results: {e:#}");
        }
    }
}

fn point_latest(run_dir: &Path) -> anyhow::Result<()> {
    let (Some(parent), Some(name)) = (run_dir.parent(), run_dir.file_name()) else {
        return Ok(());
    };
    let link = parent.join(LATEST_LINK);
    let tmp = parent.join(format!(".{LATEST_LINK}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp)?;
    std::fs::rename(&tmp, &link).with_context(|| format!("cannot update {}", link.display()))
}
