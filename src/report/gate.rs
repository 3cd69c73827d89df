//! The regression gate at the end of a run: the benchmarks are judged once against the history
//! ([`judge`]), and the verdicts feed both the report and, with `metalab run --baseline`, the
//! printed table, `junit-benchmarks.xml` and the exit status ([`announce`]).

use std::path::Path;

use crate::files::write_atomic;
use crate::gate::{self, GateReport, Options};
use crate::history::{History, HistoryError, Location, RunSummary};
use crate::model::record::RunRecord;
use crate::report::grid::{self, Grid};

/// The run judged against the history, with what the dashboard needs.
pub struct Judged {
    pub report: GateReport,
    /// What the dashboard shows; `None` when the history could not be read.
    pub browsed: Option<Browsed>,
    /// Why the benchmarks are not judged, when the history could not be read.
    pub warning: Option<String>,
}

/// The runs the dashboard lists, and the grid of the newest.
pub struct Browsed {
    /// The newest [`INDEX_RUNS`] runs, newest first.
    pub runs: Vec<RunSummary>,
    /// How many runs the history holds.
    pub total: usize,
    pub grid: Grid,
}

/// How many runs the dashboard lists: the page stays small and quick to write however long the
/// history grows; `metalab history --limit N` lists more.
pub const INDEX_RUNS: usize = 200;

/// Judges the run with the history at `db`. An unreadable history is not an error: the verdicts
/// are "not comparable", and the warning says why.
pub fn judge(db: &Location, record: &RunRecord, options: &Options) -> Judged {
    let judged = History::open(db).and_then(|h| {
        Ok((
            gate::evaluate(&h, record, options)?,
            browse(&h, options.min_effect)?,
        ))
    });
    match judged {
        Ok((report, browsed)) => Judged {
            report,
            browsed: Some(browsed),
            warning: None,
        },
        Err(e) => Judged {
            report: gate::unjudged(record, options),
            browsed: None,
            warning: Some(format!("The benchmarks are not judged: {e}")),
        },
    }
}

/// The newest runs of the history, and the grid of the newest (shifts of at least
/// `min_effect`).
pub fn browse(h: &History, min_effect: f64) -> Result<Browsed, HistoryError> {
    let runs = h.runs(Some(INDEX_RUNS))?;
    let newest = runs.iter().take(grid::RUNS).cloned().collect();
    let grid = Grid::new(
        newest,
        &h.test_results(grid::RUNS)?,
        &h.newest_samples(Some(grid::RUNS))?,
        min_effect,
    );
    Ok(Browsed {
        runs,
        total: h.run_count()?,
        grid,
    })
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
