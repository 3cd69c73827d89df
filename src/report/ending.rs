//! The end of a run's reporting, as explicit steps in a fixed order, each reading the one record:
//! 1. `results.json` and `junit.xml` (and `artifacts/latest`): the run's own results, first, so
//!    nothing after them can keep them from being written;
//! 2. the history, which the gate and the report read (an untrusted run is not stored);
//! 3. the gate, judged once, against the history including this run's neighbours;
//! 4. the views: the summary, the gate's table and `junit-benchmarks.xml` (with `--baseline`), the
//!    HTML report and the runs' index, GitHub's annotations and step summary.
//!
//! A step that fails says so and the next ones still run: losing the history or the report must
//! not lose the results.

use std::io::Write;
use std::path::PathBuf;

use super::gate::Judged;
use super::github::GitHubActions;
use super::{files, gate, history, html, summary};
use crate::gate::Options;
use crate::history::Location;
use crate::model::record::RunRecord;

/// What the end of a run does.
pub struct Ending {
    /// `artifacts/<run-id>/`.
    pub run_dir: PathBuf,
    /// Extra copies of `junit.xml` (`--junit`).
    pub junit_copies: Vec<PathBuf>,
    /// The history, for a run that goes into it (not `metalab up`).
    pub history: Option<HistoryEnd>,
    /// Under GitHub Actions: annotations and the step summary.
    pub github: Option<GitHubActions>,
    /// Colours in the summary (a terminal).
    pub color: bool,
}

/// The history steps: storing the run, judging it, and its HTML report.
pub struct HistoryEnd {
    pub db: Location,
    pub options: Options,
    /// `--baseline`: print the verdicts, write `junit-benchmarks.xml`, and let a regression set
    /// the exit status.
    pub judge: bool,
}

/// How the reporting ended.
pub struct Ended {
    pub record: RunRecord,
    /// A benchmark regressed (only ever set with `--baseline`).
    pub regressed: bool,
}

impl Ending {
    pub fn finish(self, record: RunRecord) -> Ended {
        if let Err(e) = files::write_results(&self.run_dir, &record, &self.junit_copies) {
            eprintln!("metalab: error: cannot write the results: {e:#}");
        }
        let judged = self.history.as_ref().map(|h| {
            match &record.untrusted {
                None => history::store(&h.db, &self.run_dir, &record),
                Some(_) => println!(
                    "history  not recorded: an untrusted run is judged, but never a baseline"
                ),
            }
            gate::judge(&h.db, &record, &h.options)
        });
        print!("\n{}", summary::render(&record, &self.run_dir, self.color));
        let _ = std::io::stdout().flush();
        let mut regressed = false;
        if let (Some(h), Some(judged)) = (&self.history, &judged) {
            if h.judge {
                regressed = gate::announce(judged, &record, &self.run_dir);
            }
            write_report(&record, &self.run_dir, judged);
        }
        if let Some(github) = self.github {
            github.finish(&record);
        }
        Ended { record, regressed }
    }
}

fn write_report(record: &RunRecord, run_dir: &std::path::Path, judged: &Judged) {
    match html::build(record, run_dir, judged) {
        Ok(built) => {
            println!("report   {}", built.report.display());
            if let Some(w) = &judged.warning {
                eprintln!("metalab: warning: {w}");
            }
        }
        Err(e) => eprintln!("metalab: error: cannot write the HTML report: {e:#}"),
    }
}
