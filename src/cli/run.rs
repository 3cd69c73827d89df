//! `metalab run` and `metalab up`: plan, say how the run's reporting ends, run the engine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::{Failure, lab, shard};
use crate::exit::Status;
use crate::gate::{BaselineSpec, Options};
use crate::ids::RunId;
use crate::model::event::Events;
use crate::model::record::{RunRecord, ShardRecord};
use crate::report;
use crate::report::ending::{Ending, HistoryEnd};
use crate::report::github::{self, GitHubActions};
use crate::report::terminal::Terminal;
use crate::run::{self, Keep, Plan};
use crate::shard::ShardSpec;
use crate::signal::Shutdown;
use crate::suite::{self, Suite};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Suites to run (default: all). `metalab list` shows them.
    suites: Vec<String>,
    /// Also write the JUnit XML here (it is always in artifacts/<run-id>/junit.xml).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Keep the VMs of a failed run for debugging with `metalab exec`, for DURATION (default
    /// 2h); `metalab reap` removes them afterwards. Never done unless asked, and never after a
    /// signal.
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "2h", value_parser = humantime::parse_duration)]
    keep_on_failure: Option<Duration>,
    /// Judge the benchmarks at the end against a baseline from the history: last:N, run:<id>
    /// or commit:<sha> (see `metalab bench compare`). Writes
    /// artifacts/<run-id>/junit-benchmarks.xml; exits 4 when a metric regressed and the run
    /// otherwise passed.
    #[arg(long, value_name = "BASELINE")]
    baseline: Option<BaselineSpec>,
    /// Run only shard I of N (1 ≤ I ≤ N) of the selected suites, for N CI machines: a stable
    /// share, balanced by the suites' durations in the history (by name where it has none).
    /// `metalab report merge` joins the shards' results.
    #[arg(long, value_name = "I/N")]
    shard: Option<ShardSpec>,
    /// Balance --shard by the suite durations in FILE, a results.json (e.g. the last merged
    /// run's) or a history database, instead of this host's history. Every shard must read the
    /// same durations, or shards may overlap (`report merge` says so).
    #[arg(long, value_name = "FILE", requires = "shard")]
    shard_durations: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Bring up the VMs these suites need (default: all the Vagrantfile defines).
    suites: Vec<String>,
    /// How long the VMs may live before `metalab reap` removes them.
    #[arg(long, value_name = "DURATION", default_value = "8h", value_parser = humantime::parse_duration)]
    keep: Duration,
}

pub async fn run(config: Option<&Path>, args: RunArgs) -> Result<Status, Failure> {
    let lab = lab::load(config).await?;
    let mut selected = select(&lab.suites, &args.suites)?;
    let junit = args.junit.into_iter().collect();
    let shard = match args.shard {
        Some(spec) => {
            let share = shard::plan(&lab, spec, args.shard_durations.as_deref(), &selected)?;
            selected.retain(|s| share.suites.contains(&s.name));
            Some(share)
        }
        None => None,
    };
    if let Some(share) = shard.as_ref().filter(|s| s.suites.is_empty()) {
        return Ok(shard::empty(&lab, share.clone(), junit).await);
    }
    let vms = needed_vms(&lab.machines, &selected);
    let keep = args.keep_on_failure.map_or(Keep::Never, Keep::OnFailure);
    execute(lab, selected, vms, keep, junit, args.baseline, shard).await
}

pub async fn up(config: Option<&Path>, args: UpArgs) -> Result<Status, Failure> {
    let lab = lab::load(config).await?;
    let selected = select(&lab.suites, &args.suites)?;
    let vms = if args.suites.is_empty() {
        lab.machines.clone()
    } else {
        needed_vms(&lab.machines, &selected)
    };
    // The suites' files are copied into the VMs, but none of them runs.
    execute(
        lab,
        Vec::new(),
        vms,
        Keep::Always(args.keep),
        Vec::new(),
        None,
        None,
    )
    .await
}

fn select(all: &[Suite], names: &[String]) -> Result<Vec<Suite>, Failure> {
    suite::select(all, names).map_err(|e| Failure::new(Status::BadInput, e))
}

/// The Vagrantfile's machines that at least one suite uses, in the Vagrantfile's order.
fn needed_vms(machines: &[String], suites: &[Suite]) -> Vec<String> {
    machines
        .iter()
        .filter(|m| suites.iter().any(|s| s.vms.contains(m)))
        .cloned()
        .collect()
}

async fn execute(
    lab: lab::Lab,
    suites: Vec<Suite>,
    vms: Vec<String>,
    keep: Keep,
    junit: Vec<PathBuf>,
    baseline: Option<BaselineSpec>,
    shard: Option<ShardRecord>,
) -> Result<Status, Failure> {
    let shutdown = Shutdown::install().map_err(|e| {
        Failure::new(
            Status::InfraError,
            format!("cannot install signal handlers: {e}"),
        )
    })?;
    let run_id = RunId::generate();
    let provider =
        crate::provider::from_config(&lab.config, &lab.state).map_err(Failure::from_error)?;
    let run_dir = lab.config.artifacts_dir.join(run_id.as_str());
    let mut record = RunRecord::new(run_id.clone(), provider.describe(), chrono::Utc::now());
    if let Some(share) = shard {
        record.notices.push(format!(
            "shard {} of the suites {}, balanced by {}",
            share.label(),
            share.selected.join(", "),
            share.balanced_by
        ));
        record.shard = Some(share);
    }
    let terminal = Terminal::new();
    let ending = Ending {
        run_dir,
        junit_copies: junit,
        // A lab brought up for debugging (no suites) has nothing for the history.
        history: (!suites.is_empty()).then(|| HistoryEnd {
            db: crate::history::path(lab.config.history_path.as_ref(), &lab.state),
            judge: baseline.is_some(),
            options: Options {
                baseline: baseline.unwrap_or_default(),
                min_effect: lab.config.bench.min_effect,
                allow_different_conditions: false,
            },
        }),
        github: github::active().then(|| GitHubActions::from_env(&suites)),
        color: terminal.is_live(),
    };
    let (events, rx) = Events::channel();
    let reporting = tokio::spawn(report::drive(rx, record, terminal, ending));
    let plan = Plan {
        run_id,
        suites,
        vms,
        keep,
        lanes: provider.lanes(),
        description: lab.description.clone(),
        fail_fast: false,
    };
    let status = run::run(
        &lab.config,
        lab.state,
        plan,
        events,
        shutdown,
        provider.as_ref(),
    )
    .await;
    let regressed = reporting.await.is_ok_and(|ended| ended.regressed);
    Ok(if regressed {
        status.worst(Status::Regressed)
    } else {
        status
    })
}
