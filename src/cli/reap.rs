//! `metalab reap`.

use clap::Args;

use super::Failure;
use crate::exit::Status;
use crate::reap::{self, Verdict};
use crate::state::StateDir;
use crate::transport::local::Local;

#[derive(Args, Debug)]
pub struct ReapArgs {
    /// List what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn reap(args: ReapArgs) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    let (findings, reaped) = reap::locked_survey_and_reap(&Local, &state, args.dry_run)
        .await
        .map_err(|e| Failure::new(Status::InfraError, format!("{e:#}")))?;
    if findings.is_empty() {
        println!("nothing left behind by earlier runs");
        return Ok(Status::Passed);
    }
    for f in &findings {
        let what = if f.leftovers.is_empty() {
            format!("{} Vagrant project(s) on record", f.projects.len())
        } else {
            f.leftovers.describe()
        };
        let verdict = match &f.verdict {
            Verdict::Live { pid } => format!("left alone: running (pid {pid})"),
            Verdict::Kept { until } => format!("left alone: kept until {until}"),
            Verdict::Recent => "left alone: not on record here and under an hour old".to_string(),
            Verdict::Reap { why } if args.dry_run => format!("would remove ({why})"),
            Verdict::Reap { why } => format!("removed ({why})"),
        };
        println!("{}  {verdict}\n    {what}", f.run_id);
    }
    if !args.dry_run {
        println!("{} run(s) reaped", reaped.len());
    }
    Ok(Status::Passed)
}
