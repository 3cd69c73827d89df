//! `metalab reap`.

use std::path::Path;

use clap::Args;

use super::{Failure, lab_hosts};
use crate::config::Config;
use crate::exit::Status;
use crate::reap::{self, Finding, Reaped, Verdict};
use crate::state::StateDir;

#[derive(Args, Debug)]
pub struct ReapArgs {
    /// List what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn reap(config: Option<&Path>, args: ReapArgs) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    let mut status = Status::Passed;
    let lab = load(config);
    for host in lab_hosts::all(lab.as_ref(), &state).await {
        let host = match host {
            Ok(h) => h,
            Err(e) => {
                eprintln!("metalab: error: {e:#}");
                status = Status::InfraError;
                continue;
            }
        };
        match reap::locked_survey_and_reap(&host, &state, args.dry_run).await {
            Ok((findings, reaped)) => {
                if !report(&host.name, &findings, &reaped, args.dry_run) {
                    status = Status::InfraError;
                }
            }
            Err(e) => {
                eprintln!("metalab: error: {}: {e:#}", host.name);
                status = Status::InfraError;
            }
        }
    }
    if let Some(m) = lab.and_then(|c| c.metal) {
        status = status.worst(reap_metal(&m, &state, args.dry_run).await);
    }
    Ok(status)
}

fn load(config: Option<&Path>) -> Option<Config> {
    Config::find(config).ok()
}

/// The Metal half: metalab devices and keys of the project whose run is over or past its TTL.
async fn reap_metal(m: &crate::config::MetalConfig, state: &StateDir, dry_run: bool) -> Status {
    let found = async {
        let client = crate::provider::metal::client(m, crate::provider::metal::token(m)?)?;
        crate::provider::metal::reap(&client, state, m.ttl, dry_run).await
    };
    match found.await {
        Ok(found) => {
            println!("metal project {}:", m.project);
            if found.is_empty() {
                println!("  no metalab devices or keys");
            }
            for f in found {
                let verdict = match (&f.verdict, f.removed) {
                    (_, true) => "removed".to_string(),
                    (Verdict::Reap { why }, false) => format!("would remove ({why})"),
                    (Verdict::Live { pid }, _) => format!("left alone: running (pid {pid})"),
                    (Verdict::Kept { until }, _) => format!("left alone: kept until {until}"),
                    (Verdict::Recent, _) => {
                        "left alone (locked, or a run not known here within its TTL)".to_string()
                    }
                };
                println!("  {}  {verdict}", f.what);
            }
            Status::Passed
        }
        Err(e) => {
            eprintln!("metalab: error: metal: {e:#}");
            Status::InfraError
        }
    }
}

/// Prints what the survey found and what became of it. `false` when something the reap meant to
/// remove is still there (or could not be checked).
fn report(host: &str, findings: &[Finding], reaped: &[Reaped], dry_run: bool) -> bool {
    if findings.is_empty() {
        println!("{host}: nothing left behind by earlier runs");
        return true;
    }
    println!("{host}:");
    for f in findings {
        let outcome = reaped.iter().find(|r| r.finding.run_id == f.run_id);
        let verdict = match (&f.verdict, outcome) {
            (Verdict::Live { pid }, _) => format!("left alone: running (pid {pid})"),
            (Verdict::Kept { until }, _) => format!("left alone: kept until {until}"),
            (Verdict::Recent, _) => {
                "left alone: not on record here and under an hour old".to_string()
            }
            (Verdict::Reap { why }, _) if dry_run => format!("would remove ({why})"),
            (Verdict::Reap { why }, Some(Reaped { problem: None, .. })) => {
                format!("removed ({why}), and a survey afterwards found nothing of it")
            }
            (
                Verdict::Reap { why },
                Some(Reaped {
                    problem: Some(p), ..
                }),
            ) => {
                format!("NOT removed ({why}): {p}")
            }
            (Verdict::Reap { why }, None) => format!("NOT removed ({why})"),
        };
        println!("  {}  {verdict}\n      {}", f.run_id, f.describe());
    }
    let failed = reaped.iter().filter(|r| r.problem.is_some()).count();
    if !dry_run {
        println!("{} run(s) reaped", reaped.len() - failed);
        if failed > 0 {
            println!("{failed} run(s) NOT reaped: see above; `metalab reap` tries again");
        }
    }
    failed == 0
}
