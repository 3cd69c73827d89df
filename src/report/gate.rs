//! The regression gate at the end of a run: the benchmarks are judged once against the history
//! ([`judge`]), and the verdicts feed both the report and, with `metalab run --baseline`, the
//! printed table, `junit-benchmarks.xml` and the exit status ([`announce`]).

use std::path::Path;

use crate::files::write_atomic;
use crate::gate::{self, GateReport, Options};
use crate::history::{History, HistoryError, RunSummary};
use crate::model::record::RunRecord;
use crate::report::grid::{self, Grid};

/// The run judged against the history, with what the dashboard needs.
pub struct Judged {
    pub report: GateReport,
    /// Every run of the history, newest first, and the grid of the newest; `None` when the
    /// history could not be read.
    pub runs: Option<(Vec<RunSummary>, Grid)>,
    /// Why the benchmarks are not judged, when the history could not be read.
    pub warning: Option<String>,
}

/// Judges the run with the history at `db`. An unreadable history is not an error: the verdicts
/// are "not comparable", and the warning says why.
pub fn judge(db: &Path, record: &RunRecord, options: &Options) -> Judged {
    let judged = History::open(db).and_then(|h| {
        Ok((
            gate::evaluate(&h, record, options)?,
            browse(&h, options.min_effect)?,
        ))
    });
    match judged {
        Ok((report, runs)) => Judged {
            report,
            runs: Some(runs),
            warning: None,
        },
        Err(e) => Judged {
            report: gate::unjudged(record, options),
            runs: None,
            warning: Some(format!("The benchmarks are not judged: {e}")),
        },
    }
}

/// Every run of the history, and the grid of the newest (shifts of at least `min_effect`).
pub fn browse(h: &History, min_effect: f64) -> Result<(Vec<RunSummary>, Grid), HistoryError> {
    let runs = h.runs(None)?;
    let newest = runs.iter().take(grid::RUNS).cloned().collect();
    let grid = Grid::new(
        newest,
        &h.test_results(grid::RUNS)?,
        &h.newest_samples(Some(grid::RUNS))?,
        min_effect,
    );
    Ok((runs, grid))
}

/// Prints the verdicts and writes `junit-benchmarks.xml`; true when a metric regressed, which
/// turns a run that otherwise passed into exit 4.
pub fn announce(judged: &Judged, record: &RunRecord, run_dir: &Path) -> bool {
    let xml = match &judged.warning {
        None => {
            print!("\n{}", gate::render(&judged.report));
            gate::junit::render(&judged.report)
        }
        Some(why) => {
            eprintln!("metalab: error: {why}");
            gate::junit::render_error(&record.run_id, why)
        }
    };
    let written = xml
        .map_err(anyhow::Error::from)
        .and_then(|x| write_atomic(&run_dir.join(gate::junit::FILE), x.as_bytes()));
    if let Err(e) = written {
        eprintln!("metalab: error: cannot write {}: {e:#}", gate::junit::FILE);
    }
    judged.warning.is_none() && judged.report.regressed()
}
