//! `metalab bench compare`: the regression gate on a run from the history.

use std::path::Path;

use clap::{Args, Subcommand};

use super::Failure;
use super::history::{DbArg, failure, open, settings};
use crate::exit::Status;
use crate::gate::{self, BaselineSpec, Options};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Compare a run's benchmarks with a baseline: exit 4 when a metric regressed.
    ///
    /// Each metric's samples are compared with the baseline's pooled samples by a
    /// Mann–Whitney U test (alpha 0.05); a change counts only when it is also at least the
    /// minimum effect. Runs measured under other conditions (host, accelerator, VM cpus and
    /// memory, box) are left out of the baseline; if nothing is left, the metric is
    /// `not comparable`. Change points of each metric's history (same conditions) are listed
    /// below it.
    ///
    /// Examples:
    ///   metalab bench compare                              newest run vs the 5 before it
    ///   metalab bench compare 20261122-2039 --baseline commit:16dbf78
    ///   metalab bench compare --baseline run:20261122-202905-326c --min-effect 10%
    #[command(verbatim_doc_comment)]
    Compare(CompareArgs),
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The run to judge: a run id, a unique prefix, or `latest` (default).
    #[arg(default_value = "latest")]
    run: String,
    #[command(flatten)]
    gate: GateArgs,
    /// Print the verdicts as JSON instead of the table (same exit status): the run, the
    /// baseline, and per metric its medians, change, p-value, verdict, baseline runs and change
    /// points.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArg,
}

/// How a run is judged; shared by `bench compare` and `report`.
#[derive(Args, Debug, Clone)]
pub struct GateArgs {
    /// What to compare with: last:N (the N newest earlier runs under the same conditions),
    /// run:<run-id>, or commit:<sha> (every run of that lab commit).
    #[arg(long, value_name = "BASELINE", default_value = "last:5")]
    pub baseline: BaselineSpec,
    /// Smallest change of a median that counts, as 5% or 0.05 (default: `[bench] min_effect`
    /// in metalab.toml, else 5%).
    #[arg(long, value_name = "FRACTION", value_parser = gate::parse_fraction)]
    pub min_effect: Option<f64>,
    /// Compare with baseline runs measured under other conditions too (the output says what
    /// differs).
    #[arg(long)]
    pub allow_different_conditions: bool,
}

impl GateArgs {
    pub fn options(&self, default_min_effect: f64) -> Options {
        Options {
            baseline: self.baseline.clone(),
            min_effect: self.min_effect.unwrap_or(default_min_effect),
            allow_different_conditions: self.allow_different_conditions,
        }
    }
}

pub async fn run(config: Option<&Path>, cmd: BenchCommand) -> Result<Status, Failure> {
    match cmd {
        BenchCommand::Compare(args) => compare(config, args),
    }
}

fn compare(config: Option<&Path>, args: CompareArgs) -> Result<Status, Failure> {
    let settings = settings(config, &args.db)?;
    let history = open(&settings.db)?;
    let id = history.resolve(&args.run).map_err(failure)?;
    let record = history.record(&id).map_err(failure)?;
    let options = args.gate.options(settings.min_effect);
    let report = gate::evaluate(&history, &record, &options).map_err(failure)?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::new(Status::InfraError, format!("the verdicts as JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", gate::render(&report));
    }
    Ok(report.status())
}
