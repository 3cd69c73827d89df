//! `metalab run --baseline`: judges the run's benchmarks against the history when it finishes,
//! prints the verdicts, writes `junit-benchmarks.xml`, and tells the command whether a metric
//! regressed (through a [`GateOutcome`]) so that a run which otherwise passed exits with
//! [`Status::Regressed`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Reporter;
use crate::exit::Status;
use crate::files::write_atomic;
use crate::gate::{self, Options};
use crate::history::History;
use crate::model::event::{Event, EventKind};
use crate::model::record::RunRecord;

/// Whether the gate found a regression; shared between the reporter and the command.
#[derive(Debug, Clone, Default)]
pub struct GateOutcome(Arc<AtomicBool>);

impl GateOutcome {
    /// The run's exit status with the gate's verdict applied: a regression turns a pass into
    /// [`Status::Regressed`] and leaves every worse status as it is.
    pub fn apply(&self, status: Status) -> Status {
        if self.0.load(Ordering::SeqCst) {
            status.worst(Status::Regressed)
        } else {
            status
        }
    }

    fn set_regressed(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub struct BenchGate {
    db: PathBuf,
    run_dir: PathBuf,
    record: RunRecord,
    options: Options,
    outcome: GateOutcome,
}

impl BenchGate {
    pub fn new(
        db: PathBuf,
        run_dir: PathBuf,
        record: RunRecord,
        options: Options,
        outcome: GateOutcome,
    ) -> BenchGate {
        BenchGate {
            db,
            run_dir,
            record,
            options,
            outcome,
        }
    }

    fn judge(&self) {
        let judged =
            History::open(&self.db).and_then(|h| gate::evaluate(&h, &self.record, &self.options));
        let xml = match &judged {
            Ok(report) => {
                print!("\n{}", gate::render(report));
                if report.regressed() {
                    self.outcome.set_regressed();
                }
                gate::junit::render(report)
            }
            Err(e) => {
                eprintln!("metalab: error: the benchmarks could not be judged: {e}");
                gate::junit::render_error(&self.record.run_id, &e.to_string())
            }
        };
        let written = xml
            .map_err(anyhow::Error::from)
            .and_then(|x| write_atomic(&self.run_dir.join(gate::junit::FILE), x.as_bytes()));
        if let Err(e) = written {
            eprintln!("metalab: error: cannot write {}: {e:#}", gate::junit::FILE);
        }
    }
}

impl Reporter for BenchGate {
    fn on_event(&mut self, event: &Event) {
        self.record.apply(event);
        if let EventKind::RunFinished { .. } = event.kind {
            self.judge();
        }
    }
}
