//! `metalab report`: (re)builds a run's HTML report and the runs' index, from the run's
//! results.json when it is in the artifacts directory, else from the history.

use std::path::Path;

use clap::Args;

use super::Failure;
use super::bench::GateArgs;
use super::history::{DbArg, failure, open, read_record, settings};
use crate::exit::Status;
use crate::report::files::RESULTS_JSON;
use crate::report::html;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run: a run id, a unique prefix, or `latest` (default).
    #[arg(default_value = "latest")]
    run: String,
    #[command(flatten)]
    gate: GateArgs,
    #[command(flatten)]
    db: DbArg,
}

pub async fn report(config: Option<&Path>, args: ReportArgs) -> Result<Status, Failure> {
    let settings = settings(config, &args.db)?;
    let direct = settings.artifacts.join(&args.run).join(RESULTS_JSON);
    let record = if direct.is_file() {
        read_record(&direct).map_err(|m| Failure::new(Status::BadInput, m))?
    } else {
        let history = open(&settings.db)?;
        let id = history.resolve(&args.run).map_err(failure)?;
        let stored = settings.artifacts.join(id.as_str()).join(RESULTS_JSON);
        if stored.is_file() {
            read_record(&stored).map_err(|m| Failure::new(Status::BadInput, m))?
        } else {
            history.record(&id).map_err(failure)?
        }
    };
    let run_dir = settings.artifacts.join(record.run_id.as_str());
    let options = args.gate.options(settings.min_effect);
    let built = html::build(&record, &run_dir, &settings.db, &options).map_err(|e| {
        Failure::new(
            Status::InfraError,
            format!("cannot write the report: {e:#}"),
        )
    })?;
    if let Some(w) = &built.warning {
        eprintln!("metalab: warning: {w}");
    }
    println!("{}", built.report.display());
    if let Some(index) = &built.index {
        println!("{}", index.display());
    }
    Ok(Status::Passed)
}
