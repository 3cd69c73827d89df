//! `metalab run` and `metalab up`: plan, say how the run's reporting ends, run the engine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::{Failure, lab, plan, shard};
use crate::config::Destination;
use crate::exit::Status;
use crate::gate::{BaselineSpec, Options};
use crate::ids::RunId;
use crate::lab::LabState;
use crate::model::event::Events;
use crate::model::record::{RunRecord, ShardRecord, UntrustedRecord};
use crate::report;
use crate::report::ending::{Ending, HistoryEnd};
use crate::report::github::{self, GitHubActions};
use crate::report::terminal::Terminal;
use crate::run::{self, Keep, OnKept, Plan};
use crate::shard::ShardSpec;
use crate::signal::Shutdown;
use crate::suite::{self, Suite};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// What to run: suites, or single tests and benchmarks as SUITE/NAME (default: every
    /// suite). `metalab list` shows them.
    #[arg(value_name = "SUITE[/TEST]")]
    suites: Vec<String>,
    /// Run on the VMs of a kept lab (`metalab up`, or a run kept with --keep-on-failure)
    /// instead of new ones: they are put back to their pristine snapshot, the suites directory
    /// is copied in afresh, and the VMs stay for the next round.
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["shard", "keep_on_failure"])]
    on: Option<String>,
    /// With --on: run on the VMs as they are, without putting them back to the snapshot.
    #[arg(long, requires = "on")]
    no_revert: bool,
    /// Stop at the first failed test or benchmark; what comes after is reported as not run.
    #[arg(long)]
    fail_fast: bool,
    /// Print what would run (suites, tests, VMs, lanes, hosts) and start nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: print the plan as JSON.
    #[arg(long, requires = "dry_run")]
    json: bool,
    /// Also write the JUnit XML here (it is always in artifacts/<run-id>/junit.xml).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Keep the VMs of a failed run for debugging with `metalab exec`, for DURATION (default
    /// 2h); `metalab reap` removes them afterwards. Never done unless asked, and never after a
    /// signal.
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "2h", value_parser = positive_duration)]
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
    /// Run an unreviewed change (a pull request from a stranger): the lab definition
    /// (Vagrantfile, metalab.toml, box recipe, host setup) comes from --lab-from, and from the
    /// change in the current directory only its suites, copied into the VMs as inert files;
    /// the suites get only the LAB_* variables `[untrusted] lab_env` lists. The run is judged
    /// but never stored in the history. See "Threat model" in the README.
    #[arg(long, requires = "lab_from", conflicts_with = "on")]
    untrusted: bool,
    /// With --untrusted: where the trusted lab definition comes from: a git ref of the
    /// repository (e.g. origin/main; the lab at the same path as the current directory), or a
    /// directory outside the change's tree.
    #[arg(long, value_name = "REF|DIR", requires = "untrusted")]
    lab_from: Option<String>,
    /// The `LAB_*` variables for the suites, instead of the runner's (`metalab reproduce`: the
    /// reproduced run's).
    #[arg(skip)]
    pub(super) lab_env: Option<Vec<(String, String)>>,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Bring up the VMs these suites need (default: all the Vagrantfile defines).
    suites: Vec<String>,
    /// How long the VMs may live before `metalab reap` removes them.
    #[arg(long, value_name = "DURATION", default_value = "8h", value_parser = positive_duration)]
    keep: Duration,
}

pub async fn run(config: Option<&Path>, mut args: RunArgs, quiet: bool) -> Result<Status, Failure> {
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    args.junit = args.junit.as_ref().map(absolute);
    args.shard_durations = args.shard_durations.as_ref().map(absolute);
    let lab = match (&args.lab_from, config) {
        (Some(_), Some(_)) => {
            return Err(Failure::new(
                Status::BadInput,
                "--config cannot go with --untrusted: the config comes from --lab-from",
            ));
        }
        (Some(source), None) => {
            // Before any child starts: every one of them gets only what a process needs.
            crate::child_env::choose(crate::child_env::Policy::AllowListed).map_err(|_| {
                Failure::new(
                    Status::InfraError,
                    "the environment of an untrusted run's processes was decided too late",
                )
            })?;
            let lab = lab::load_untrusted(source).await?;
            // Vagrant evaluates the Vagrantfile of its working directory for any command, one
            // of a project or not (`global-status`, `box add`): the change's tree must never be
            // that directory, for metalab or anything it starts. Paths given on the command
            // line are made absolute first.
            std::env::set_current_dir("/").map_err(|e| {
                Failure::new(
                    Status::InfraError,
                    format!("cannot leave the change's tree: {e}"),
                )
            })?;
            lab
        }
        (None, config) => lab::load(config).await?,
    };
    let mut selected = select(&lab.suites, &args.suites)?;
    let junit: Vec<PathBuf> = args.junit.into_iter().collect();
    super::check_writable(&junit)?;
    let shard = match args.shard {
        Some(spec) => {
            let share = shard::plan(&lab, spec, args.shard_durations.as_deref(), &selected)?;
            selected.retain(|s| share.suites.contains(&s.name));
            Some(share)
        }
        None => None,
    };
    let on = match &args.on {
        Some(id) => Some(kept_lab(&lab, id, &selected)?),
        None => None,
    };
    let vms = needed_vms(&lab.machines, &selected);
    let keep = args.keep_on_failure.map_or(Keep::Never, Keep::OnFailure);
    let lab_variables = match args.lab_env {
        Some(vars) => vars,
        None => crate::suite::lab_variables(
            lab.untrusted
                .as_ref()
                .map(|_| lab.config.untrusted.lab_env.as_slice()),
        ),
    };
    if args.dry_run {
        let mut plan = plan::DryRun::new(&lab, &selected, &vms, keep, shard.as_ref(), on.as_ref());
        plan.lab_env = lab_variables.into_iter().collect();
        super::print(&plan.render(args.json));
        return Ok(Status::Passed);
    }
    if let Some(share) = shard.as_ref().filter(|s| s.suites.is_empty()) {
        return Ok(shard::empty(&lab, share.clone(), junit, quiet).await);
    }
    let reporting = Reporting {
        junit,
        baseline: args.baseline,
        shard,
        quiet,
    };
    let engine = match on {
        Some(kept) => Engine::OnKept(
            Box::new(kept),
            Round {
                suites: selected.clone(),
                revert: !args.no_revert,
                fail_fast: args.fail_fast,
            },
        ),
        None => Engine::New(Run {
            suites: selected.clone(),
            vms,
            keep,
            fail_fast: args.fail_fast,
            lab_variables,
            fence: lab
                .untrusted
                .as_ref()
                .map(|_| lab.config.untrusted.allow.clone()),
        }),
    };
    reporting.around(&lab, &selected, engine).await
}

pub async fn up(config: Option<&Path>, args: UpArgs, quiet: bool) -> Result<Status, Failure> {
    let lab = lab::load(config).await?;
    let selected = select(&lab.suites, &args.suites)?;
    let vms = if args.suites.is_empty() {
        lab.machines.clone()
    } else {
        needed_vms(&lab.machines, &selected)
    };
    // The suites' files are copied into the VMs, but none of them runs.
    let run = Engine::New(Run {
        suites: Vec::new(),
        vms,
        keep: Keep::Always(args.keep),
        fail_fast: false,
        lab_variables: crate::suite::lab_variables(None),
        fence: None,
    });
    let reporting = Reporting {
        junit: Vec::new(),
        baseline: None,
        shard: None,
        quiet,
    };
    reporting.around(&lab, &[], run).await
}

/// A duration like `2h` or `90m`, more than zero: VMs kept for no time would be reaped at once.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("it must be more than zero, e.g. 30m or 2h".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
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

/// The kept lab of run `id` (its lane, when it has several) that has every VM the suites need.
fn kept_lab(lab: &lab::Lab, id: &str, suites: &[Suite]) -> Result<LabState, Failure> {
    let run = super::parse_run(Some(id))?.expect("given");
    let kept = LabState::of_run(&lab.state, &run);
    if kept.is_empty() {
        let running: Vec<String> = LabState::all(&lab.state)
            .iter()
            .map(super::describe_lab)
            .collect();
        return Err(Failure::new(
            Status::BadInput,
            format!(
                "no kept lab of run {run} on this host ({})",
                if running.is_empty() {
                    "none is kept; `metalab up` keeps one".to_string()
                } else {
                    format!("kept: {}", running.join("; "))
                }
            ),
        ));
    }
    let wanted = needed_vms(&lab.machines, suites);
    kept.iter()
        .find(|l| wanted.iter().all(|vm| l.vm(vm).is_some()))
        .cloned()
        .ok_or_else(|| {
            Failure::new(
                Status::BadInput,
                format!(
                    "the kept lab {} lacks a VM the suites need ({})",
                    kept.iter()
                        .map(super::describe_lab)
                        .collect::<Vec<_>>()
                        .join("; "),
                    wanted.join(", ")
                ),
            )
        })
}

/// What a run reports besides its own results: extra JUnit copies, the gate, its shard.
struct Reporting {
    junit: Vec<PathBuf>,
    baseline: Option<BaselineSpec>,
    shard: Option<ShardRecord>,
    /// `-q`: the terminal says only what went wrong.
    quiet: bool,
}

/// How a run goes once its reporting is set up: on new VMs (destroyed at its end, or kept when
/// asked), or as a round on a kept lab's VMs.
enum Engine {
    New(Run),
    OnKept(Box<LabState>, Round),
}

struct Run {
    suites: Vec<Suite>,
    vms: Vec<String>,
    keep: Keep,
    fail_fast: bool,
    lab_variables: Vec<(String, String)>,
    fence: Option<Vec<Destination>>,
}

struct Round {
    suites: Vec<Suite>,
    revert: bool,
    fail_fast: bool,
}

impl Engine {
    fn host(&self, lab: &lab::Lab) -> Result<String, Failure> {
        match self {
            Engine::New(_) => Ok(provider(lab)?.describe()),
            Engine::OnKept(kept, _) => Ok(format!("{}, kept lab {}", kept.host, kept.run_id)),
        }
    }

    async fn go(
        self,
        lab: &lab::Lab,
        run_id: RunId,
        events: Events,
        shutdown: Shutdown,
    ) -> Result<Status, Failure> {
        let state = lab.state.clone();
        Ok(match self {
            Engine::New(r) => {
                let provider = provider(lab)?;
                let plan = Plan {
                    run_id,
                    suites: r.suites,
                    vms: r.vms,
                    keep: r.keep,
                    lanes: provider.lanes(),
                    description: lab.description.clone(),
                    fail_fast: r.fail_fast,
                    lab_variables: r.lab_variables,
                    fence: r.fence,
                };
                run::run(
                    &lab.config,
                    state,
                    plan,
                    events,
                    shutdown,
                    provider.as_ref(),
                )
                .await
            }
            Engine::OnKept(kept, r) => {
                let round = OnKept {
                    run_id,
                    lab: *kept,
                    suites: r.suites,
                    revert: r.revert,
                    fail_fast: r.fail_fast,
                };
                run::on_kept(&lab.config, &state, round, events, shutdown).await
            }
        })
    }
}

fn provider(lab: &lab::Lab) -> Result<Box<dyn crate::provider::Provider>, Failure> {
    crate::provider::from_config(&lab.config, &lab.state).map_err(Failure::from_error)
}

impl Reporting {
    /// Sets up the run's reporting, runs `engine`, and waits for the reporting to end: the
    /// run's status, turned into [`Status::Regressed`] when the gate found a regression.
    async fn around(
        self,
        lab: &lab::Lab,
        suites: &[Suite],
        engine: Engine,
    ) -> Result<Status, Failure> {
        let shutdown = Shutdown::install().map_err(|e| {
            Failure::new(
                Status::InfraError,
                format!("cannot install signal handlers: {e}"),
            )
        })?;
        let run_id = RunId::generate();
        let run_dir = lab.config.artifacts_dir.join(run_id.as_str());
        let mut record = RunRecord::new(run_id.clone(), engine.host(lab)?, chrono::Utc::now());
        if let Some(share) = self.shard {
            record.notices.push(format!(
                "shard {} of the suites {}, balanced by {}",
                share.label(),
                share.selected.join(", "),
                share.balanced_by
            ));
            record.shard = Some(share);
        }
        if let Engine::New(r) = &engine {
            record.lab_env = r.lab_variables.iter().cloned().collect();
        }
        if let Some(untrusted) = &lab.untrusted {
            record.notices.extend(untrusted_notices(untrusted));
            record.untrusted = Some(UntrustedRecord {
                lab_from: untrusted.trusted.source.clone(),
            });
        }
        let terminal = Terminal::new(self.quiet);
        let ending = Ending {
            run_dir,
            junit_copies: self.junit,
            // A lab brought up for debugging (no suites) has nothing for the history.
            history: (!suites.is_empty()).then(|| HistoryEnd {
                db: lab.history.clone(),
                judge: self.baseline.is_some(),
                options: Options {
                    baseline: self.baseline.unwrap_or_default(),
                    min_effect: lab.config.bench.min_effect,
                    allow_different_conditions: false,
                },
            }),
            github: github::active().then(|| GitHubActions::from_env(suites)),
            color: terminal.is_live(),
        };
        let (events, rx) = Events::channel();
        let reporting = tokio::spawn(report::drive(rx, record, terminal, ending));
        let status = engine.go(lab, run_id, events, shutdown).await?;
        let regressed = reporting.await.is_ok_and(|ended| ended.regressed);
        Ok(if regressed {
            status.worst(Status::Regressed)
        } else {
            status
        })
    }
}

/// What the run's report says of an untrusted run: where its lab came from, and what of the
/// change's suites was left out.
fn untrusted_notices(untrusted: &lab::UntrustedLab) -> Vec<String> {
    let mut notices = vec![format!(
        "untrusted change: the lab definition is from {}; from the change, only its suites",
        untrusted.trusted.source
    )];
    if !untrusted.skipped.is_empty() {
        notices.push(format!(
            "left out of the change's suites (only regular files are copied): {}",
            untrusted.skipped.join(", ")
        ));
    }
    notices
}
