//! The static HTML report of a run, under `artifacts/<run-id>/report/` (index.html, style.css and
//! one SVG per plot; nothing loaded from the network), and an index of every run in the history
//! at `artifacts/index.html`.
//!
//! Made to be read at the end of a long day: the status and what failed come first, failed
//! tests are open and every log line has its own anchor (`#<suite>-<test>-L<n>`) to share.

mod dashboard;
mod index_page;
mod logs;
mod page;
mod plots;
mod run_page;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::files::write_atomic;
use crate::gate::GateReport;

use crate::model::record::RunRecord;
use crate::report::gate::{Browsed, Judged};

/// The report's directory inside the run's artifacts directory.
pub const REPORT_DIR: &str = "report";
/// The report's page, and the runs' index beside the runs.
pub const REPORT_FILE: &str = "index.html";
pub const PLOTS_DIR: &str = "plots";
const STYLE_FILE: &str = "style.css";
const STYLE: &str = include_str!("style.css");

/// Files listed under "Artifacts" at most; a run that collected more is summarised.
const MAX_ARTIFACTS: usize = 2000;

/// What [`build`] wrote.
#[derive(Debug)]
pub struct Built {
    pub report: PathBuf,
    /// The runs' index, unless the history could not be read.
    pub index: Option<PathBuf>,
}

/// Writes the run's report with its verdicts, and the runs' index when the history was read.
pub fn build(record: &RunRecord, run_dir: &Path, judged: &Judged) -> anyhow::Result<Built> {
    let report = write_run(record, run_dir, &judged.report, judged.warning.as_deref())?;
    let index = match (&judged.browsed, run_dir.parent()) {
        (Some(browsed), Some(artifacts)) => Some(write_index(artifacts, browsed)?),
        _ => None,
    };
    Ok(Built { report, index })
}

/// Writes `<run_dir>/report/`: the page, its style sheet and its plots.
pub fn write_run(
    record: &RunRecord,
    run_dir: &Path,
    gate: &GateReport,
    gate_note: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let dir = run_dir.join(REPORT_DIR);
    for m in &gate.metrics {
        let (samples, history) = run_page::plot_names(m);
        write(&dir.join(PLOTS_DIR).join(samples), &plots::samples(m)?)?;
        write(&dir.join(PLOTS_DIR).join(history), &plots::history(m)?)?;
    }
    let artifacts = list_artifacts(run_dir);
    let page = run_page::RunPage {
        record,
        run_dir,
        gate,
        gate_note,
        artifacts: &artifacts,
    };
    let title = format!("{} · metalab run {}", record.status.word(), record.run_id);
    let style = format!("<link rel=\"stylesheet\" href=\"{STYLE_FILE}\">");
    write(&dir.join(STYLE_FILE), STYLE)?;
    let path = dir.join(REPORT_FILE);
    write(&path, &page::document(&title, &style, &page.body()))?;
    Ok(path)
}

/// Writes `<artifacts>/index.html`: the dashboard of the newest runs' tests, then the newest runs
/// (newest first). Its style and script are inline, so the file stands alone beside the run
/// directories, with no server.
pub fn write_index(artifacts: &Path, browsed: &Browsed) -> anyhow::Result<PathBuf> {
    let style = format!("<style>\n{STYLE}</style>");
    let path = artifacts.join(REPORT_FILE);
    let body = index_page::body(browsed, artifacts);
    write(&path, &page::document("metalab dashboard", &style, &body))?;
    Ok(path)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    write_atomic(path, text.as_bytes()).with_context(|| format!("report file {}", path.display()))
}

/// Every file of the run (but the report itself), relative to the run directory, with its size.
fn list_artifacts(run_dir: &Path) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut dirs = vec![run_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && path != run_dir.join(REPORT_DIR) {
                dirs.push(path);
            } else if meta.is_file()
                && let Ok(rel) = path.strip_prefix(run_dir)
            {
                found.push((rel.to_string_lossy().into_owned(), meta.len()));
            }
        }
    }
    found.sort();
    found.truncate(MAX_ARTIFACTS);
    found
}
