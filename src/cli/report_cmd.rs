//! `metalab report`: (re)builds a run's HTML report and the runs' index, from the run's
//! results.json when it is in the artifacts directory, else from the history; and
//! `metalab report merge`, which makes one result of several shards' (see [`super::merge`]).

use std::path::Path;

use clap::{Args, Subcommand};

use super::Failure;
use super::bench::GateArgs;
use super::history::{DbArg, failure, open, read_record, settings};
use crate::exit::Status;
use crate::paths::stays_inside;
use crate::report::files::RESULTS_JSON;
use crate::report::html;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    command: Option<ReportCommand>,
    /// The run: a run id, a unique prefix, or `latest` (default).
    #[arg(default_value = "latest")]
    run: String,
    #[command(flatten)]
    gate: GateArgs,
    #[command(flatten)]
    db: DbArg,
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    /// Merge the results of a pipeline's shards (`metalab run --shard I/N`) into one.
    ///
    /// Writes one results.json, junit.xml and report/index.html to --out, with every shard's
    /// logs beside them, and says which shards are missing or overlap. Exits with the worst of
    /// the shards' exit codes: 3 when a shard is missing, 2 when shards overlap or come from
    /// different splits.
    ///
    /// Examples:
    ///   metalab report merge shard-1/artifacts shard-2/artifacts
    ///   metalab report merge downloads/ --out merged
    #[command(verbatim_doc_comment)]
    Merge(super::merge::MergeArgs),
}

pub async fn report(config: Option<&Path>, args: ReportArgs) -> Result<Status, Failure> {
    if let Some(ReportCommand::Merge(merge)) = args.command {
        return super::merge::merge(config, merge, &args.db);
    }
    let settings = settings(config, &args.db)?;
    // Only a name inside the artifacts directory is looked up there; anything else goes to the
    // history, which knows run ids only.
    let direct = settings.artifacts.join(&args.run).join(RESULTS_JSON);
    let record = if stays_inside(Path::new(&args.run)) && direct.is_file() {
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
    let judged = crate::report::gate::judge(&settings.db, &record, &options);
    let built = html::build(&record, &run_dir, &judged).map_err(|e| {
        Failure::new(
            Status::InfraError,
            format!("cannot write the report: {e:#}"),
        )
    })?;
    if let Some(w) = &judged.warning {
        eprintln!("metalab: warning: {w}");
    }
    println!("{}", built.report.display());
    if let Some(index) = &built.index {
        println!("{}", index.display());
    }
    Ok(Status::Passed)
}
