//! The result files of a run, under `artifacts/<run-id>/`: `results.json` (the [`RunRecord`]) and
//! `junit.xml`. `artifacts/latest` points at the newest run, so pipelines can use fixed paths.

use std::path::{Path, PathBuf};

use crate::files::write_atomic;

use anyhow::Context;

use super::junit;
use crate::model::record::RunRecord;

pub const RESULTS_JSON: &str = "results.json";
pub const JUNIT_XML: &str = "junit.xml";
pub const LATEST_LINK: &str = "latest";

/// Writes `results.json` and `junit.xml` (and the extra JUnit copies) into `run_dir`, and points
/// `latest` at it.
pub fn write_results(
    run_dir: &Path,
    record: &RunRecord,
    junit_copies: &[PathBuf],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    let json = serde_json::to_string_pretty(record)?;
    write_atomic(&run_dir.join(RESULTS_JSON), json.as_bytes())?;
    let xml = junit::render(record, run_dir)?;
    write_atomic(&run_dir.join(JUNIT_XML), xml.as_bytes())?;
    for copy in junit_copies {
        write_atomic(copy, xml.as_bytes())?;
    }
    point_latest(run_dir)
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
