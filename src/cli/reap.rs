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
    // A lab whose file does not load is refused: reaping this machine alone would leave its
    // inventory hosts and cloud resources unsurveyed, and say nothing of them.
    let lab = Config::find_optional(config).map_err(|e| {
        Failure::new(
            Status::BadInput,
            format!(
                "{e}\n  = note: nothing was reaped; fix the file, or run `metalab reap` where \
                 there is no lab to reap this machine alone"
            ),
        )
    })?;
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
    if let Some(lab) = &lab
        && let Some(m) = &lab.metal
    {
        status = status.worst(reap_metal(m, &state, args.dry_run).await);
    }
    if let Some(lab) = &lab
        && let Some(e) = &lab.ec2
    {
        status = status.worst(reap_ec2(lab, e, &state, args.dry_run).await);
    }
    Ok(status)
}

/// The EC2 half: instances, security groups and key pairs of runs that are over or past their
/// expiry.
async fn reap_ec2(
    lab: &Config,
    e: &crate::config::Ec2Config,
    state: &StateDir,
    dry_run: bool,
) -> Status {
    let provider =
        crate::provider::ec2::Ec2Provider::new(e.clone(), None, &lab.root, state.clone());
    let title = format!("ec2 region {}", e.region);
    report_cloud(
        &title,
        "no metalab instances, security groups or key pairs",
        provider.reap(dry_run).await,
    )
}

/// The Metal half: metalab devices and keys of the project whose run is over or past its TTL.
async fn reap_metal(m: &crate::config::MetalConfig, state: &StateDir, dry_run: bool) -> Status {
    let found = async {
        let client = crate::provider::metal::client(m, crate::provider::metal::token(m)?)?;
        crate::provider::metal::reap(&client, state, m.ttl, dry_run).await
    };
    report_cloud(
        &format!("metal project {}", m.project),
        "no metalab devices or keys",
        found.await,
    )
}

/// Prints what a cloud's half found, and what became of it. Bad input (2) when the credentials
/// are missing or refused; an infrastructure error (3) when the API cannot be read, or something
/// of metalab's it meant to remove (or could not read) is still there.
fn report_cloud(
    title: &str,
    nothing: &str,
    found: anyhow::Result<Vec<crate::provider::found::Found>>,
) -> Status {
    use crate::provider::found::Outcome;
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            eprintln!("metalab: error: {title}: {e:#}");
            return if e.downcast_ref::<crate::provider::InputError>().is_some() {
                Status::BadInput
            } else {
                Status::InfraError
            };
        }
    };
    println!("{title}:");
    if found.is_empty() {
        println!("  {nothing}");
    }
    for f in &found {
        let outcome = match &f.outcome {
            Outcome::Removed { why } => format!("removed ({why})"),
            Outcome::WouldRemove { why } => format!("would remove ({why})"),
            Outcome::Kept { why } => format!("left alone: {why}"),
            Outcome::NotRemoved { why, problem } => format!("NOT removed ({why}): {problem}"),
            Outcome::Unreadable { problem, .. } => format!("NOT judged: {problem}"),
        };
        println!("  {}  {outcome}", f.what);
    }
    if found.iter().any(crate::provider::found::Found::left_behind) {
        println!("  some of it is still there: see above; `metalab reap` tries again");
        return Status::InfraError;
    }
    Status::Passed
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metal::ApiToken;
    use crate::metal::server::{self, ServerConfig};
    use crate::provider::metal::{Found, Outcome};

    #[tokio::test]
    async fn a_refused_token_is_bad_input_and_an_api_failure_infrastructure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = server::serve(ServerConfig::new(ApiToken::new("right"), "p"), listener).unwrap();
        let mut config = crate::metal::ClientConfig::new(ApiToken::new("wrong"), "p");
        config.base_url = api.base_url();
        let client = crate::metal::MetalClient::new(config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().to_path_buf());
        let refused =
            crate::provider::metal::reap(&client, &state, std::time::Duration::from_secs(60), true)
                .await;
        assert_eq!(report_cloud("p", "none", refused), Status::BadInput);
        let down = Err(anyhow::anyhow!("Metal API unreachable after 10 attempts"));
        assert_eq!(report_cloud("p", "none", down), Status::InfraError);
    }

    #[test]
    fn something_left_behind_is_infrastructure_and_a_kept_device_is_not() {
        let found = |outcome| Found {
            what: "device x".into(),
            run: None,
            outcome,
        };
        let kept = found(Outcome::Kept {
            why: "locked".into(),
        });
        assert_eq!(report_cloud("p", "none", Ok(vec![kept])), Status::Passed);
        let failed = found(Outcome::NotRemoved {
            why: "run finished".into(),
            problem: "422".into(),
        });
        assert_eq!(
            report_cloud("p", "none", Ok(vec![failed])),
            Status::InfraError
        );
        let foreign = found(Outcome::Unreadable {
            problem: "no id".into(),
            ours: false,
        });
        assert_eq!(report_cloud("p", "none", Ok(vec![foreign])), Status::Passed);
        let ours = found(Outcome::Unreadable {
            problem: "no id".into(),
            ours: true,
        });
        assert_eq!(
            report_cloud("p", "none", Ok(vec![ours])),
            Status::InfraError
        );
    }
}
