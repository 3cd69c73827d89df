//! `metalab run --shard I/N`: which suites this shard runs (see [`crate::shard`] for the
//! split), and the run of a shard that got none.

use std::path::{Path, PathBuf};

use super::{Failure, lab};
use crate::exit::Status;
use crate::ids::RunId;
use crate::model::event::{EventKind, Events};
use crate::model::record::{RunRecord, ShardRecord};
use crate::report;
use crate::report::ending::Ending;
use crate::report::github::{self, GitHubActions};
use crate::report::terminal::Terminal;
use crate::shard::{Durations, ShardSpec};
use crate::suite::Suite;

/// This shard's share of `selected`, balanced by the durations in `durations` (else in the
/// lab's history); says which suites it got and why.
pub(super) fn plan(
    lab: &lab::Lab,
    spec: ShardSpec,
    durations: Option<&Path>,
    selected: &[Suite],
) -> Result<ShardRecord, Failure> {
    let durations = match durations {
        Some(path) => Durations::read(path)
            .map_err(|e| Failure::new(Status::BadInput, format!("--shard-durations: {e:#}")))?,
        None => history_durations(lab),
    };
    let names: Vec<String> = selected.iter().map(|s| s.name.clone()).collect();
    let share = crate::shard::assign(spec, &names, &durations);
    eprintln!(
        "shard    {spec}: {} of {} suite(s), balanced by {}",
        if share.suites.is_empty() {
            "none".to_string()
        } else {
            share.suites.join(", ")
        },
        names.len(),
        share.balanced_by
    );
    Ok(share)
}

/// The durations in the lab's history, agreed through the pipeline's shard plan when there is
/// one; none (a split by name) when the history has none or cannot be read, which is said.
fn history_durations(lab: &lab::Lab) -> Durations {
    let db = &lab.history;
    let read = match crate::shard::plan_id() {
        Some(id) => Durations::agreed(db, &id),
        None => Durations::from_history_at(db),
    };
    read.unwrap_or_else(|e| {
        eprintln!("metalab: warning: the split is by name: {e:#}");
        Durations::none(&format!("the history {db} unreadable"))
    })
}

/// A shard that got no suites starts nothing: it writes empty results and passes.
pub(super) async fn empty(
    lab: &lab::Lab,
    share: ShardRecord,
    junit: Vec<PathBuf>,
    quiet: bool,
) -> Status {
    let run_id = RunId::generate();
    let run_dir = lab.config.artifacts_dir.join(run_id.as_str());
    let mut record = RunRecord::new(run_id, "none".into(), chrono::Utc::now());
    record.shard = Some(share.clone());
    let terminal = Terminal::new(quiet);
    let ending = Ending {
        run_dir,
        junit_copies: junit,
        history: None,
        github: github::active().then(|| GitHubActions::from_env(&[])),
        color: terminal.is_live(),
    };
    let (events, rx) = Events::channel();
    let reporting = tokio::spawn(report::drive(rx, record, terminal, ending));
    events.emit(EventKind::Notice {
        message: format!(
            "shard {} has no suites: {} suite(s) over {} shards leave none for it",
            share.label(),
            share.selected.len(),
            share.count
        ),
    });
    events.emit(EventKind::RunFinished {
        status: Status::Passed,
        duration: std::time::Duration::ZERO,
    });
    drop(events);
    let _ = reporting.await;
    Status::Passed
}
