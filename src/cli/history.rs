//! `metalab history`: list the runs in the benchmark history, show one, export every sample as
//! CSV, and import results files (a run whose own write to the history failed, or runs from
//! another machine).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::Failure;
use crate::config::{Config, ConfigError};
use crate::exit::Status;
use crate::history::{self, History, HistoryError, Location, RunSummary};
use crate::model::record::{RunRecord, TestOutcome};
use crate::report::summary::human;
use crate::state::StateDir;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HistoryArgs {
    #[command(subcommand)]
    command: Option<HistoryCommand>,
    /// Show at most this many runs (newest first).
    #[arg(long, value_name = "N", default_value_t = 20)]
    limit: usize,
    /// Print the runs (or, with `show`, the run's whole record) as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    db: DbArg,
}

/// The history to use, when not the configured one.
#[derive(Args, Debug, Clone)]
pub struct DbArg {
    /// The history: a SQLite file, or a postgres://USER@HOST:PORT/DATABASE URL (default:
    /// `[history]` in metalab.toml, else <state dir>/history.sqlite). Give a server's password
    /// through PGPASSWORD or METALAB_HISTORY, not here, where `ps` shows it.
    #[arg(long, global = true, value_name = "FILE|URL", env = "METALAB_HISTORY",
          value_parser = Location::parse, hide_env_values = true)]
    pub db: Option<Location>,
}

#[derive(Subcommand, Debug)]
enum HistoryCommand {
    /// Show one run: status, conditions, tests and benchmark medians.
    ///
    /// RUN is a run id, a unique prefix of one, or `latest`.
    Show { run: String },
    /// Export every benchmark sample, one row each.
    ///
    /// Columns: time (the run's start, UTC), run_id, commit, host_fingerprint, conditions (runs
    /// with equal values are comparable), suite, benchmark, metric, unit, direction, sample,
    /// value.
    Export {
        /// CSV (RFC 4180, with a header line); the only format.
        #[arg(long, required = true)]
        csv: bool,
        /// Write to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Add runs from their results.json files; a run already there is replaced.
    Import {
        #[arg(required = true, value_name = "RESULTS_JSON")]
        files: Vec<PathBuf>,
    },
    /// Copy every run of this history into another: a host's SQLite file into the fleet's
    /// PostgreSQL server, or a server into a file (a backup).
    ///
    /// Runs already in the target are replaced, so a copy can be repeated; the source is left
    /// as it is. Every run is checked in the target afterwards.
    ///
    /// Examples:
    ///   PGPASSWORD=... metalab history copy --to postgres://ci@db.lab/metalab
    ///   metalab history copy --to backup.sqlite --db postgres://ci@db.lab/metalab
    #[command(verbatim_doc_comment)]
    Copy {
        /// The history to copy into: a file, or a postgres:// URL.
        #[arg(long, value_name = "FILE|URL", value_parser = Location::parse)]
        to: Location,
    },
}

/// Where a history command reads and writes: from metalab.toml when one is found, else the
/// defaults, so the history can be read outside a lab checkout too.
pub(super) struct Settings {
    pub db: Location,
    pub artifacts: PathBuf,
    pub min_effect: f64,
}

pub(super) fn settings(config: Option<&Path>, db: &DbArg) -> Result<Settings, Failure> {
    let loaded = Config::find_optional(config)
        .map_err(|e: ConfigError| Failure::new(Status::BadInput, e.to_string()))?;
    let default_db = || {
        loaded
            .as_ref()
            .and_then(|c| c.history.clone())
            .unwrap_or_else(|| Location::File(history::default_path(&StateDir::from_env())))
    };
    Ok(Settings {
        db: db.db.clone().unwrap_or_else(default_db),
        artifacts: loaded
            .as_ref()
            .map_or_else(|| PathBuf::from("artifacts"), |c| c.artifacts_dir.clone()),
        min_effect: loaded
            .as_ref()
            .map_or(crate::gate::DEFAULT_MIN_EFFECT, |c| c.bench.min_effect),
    })
}

/// A history error as a command failure: an unknown run or refused credentials are bad input,
/// the rest is the host's.
pub(super) fn failure(e: HistoryError) -> Failure {
    let status = if e.is_lookup() || e.is_refused() {
        Status::BadInput
    } else {
        Status::InfraError
    };
    Failure::new(status, e.to_string())
}

pub(super) fn open(db: &Location) -> Result<History, Failure> {
    History::open(db).map_err(failure)
}

pub async fn history(config: Option<&Path>, args: HistoryArgs) -> Result<Status, Failure> {
    let settings = settings(config, &args.db)?;
    match args.command {
        None => list(&settings.db, args.limit, args.json),
        Some(HistoryCommand::Show { run }) => show(&settings.db, &run, args.json),
        Some(HistoryCommand::Export { csv: _, out }) => export(&settings.db, out.as_deref()),
        Some(HistoryCommand::Import { files }) => import(&settings.db, &files),
        Some(HistoryCommand::Copy { to }) => copy(&settings.db, &to),
    }
}

/// A run of the history as `history --json` prints it.
#[derive(serde::Serialize)]
struct ListedRun<'a> {
    run_id: &'a str,
    started: chrono::DateTime<chrono::Utc>,
    duration_secs: f64,
    /// As in results.json: `passed`, `tests_failed`, ...
    status: Status,
    exit_code: u8,
    commit: Option<&'a str>,
    host: &'a str,
    /// Runs with equal keys have comparable numbers.
    conditions_key: Option<&'a str>,
    tests_passed: u32,
    tests_total: u32,
}

fn list(db: &Location, limit: usize, json: bool) -> Result<Status, Failure> {
    let runs = open(db)?.runs(Some(limit)).map_err(failure)?;
    if json {
        let listed: Vec<ListedRun> = runs
            .iter()
            .map(|r| ListedRun {
                run_id: r.run_id.as_str(),
                started: r.started,
                duration_secs: r.duration.as_secs_f64(),
                status: r.status,
                exit_code: r.status.code(),
                commit: r.commit.as_deref(),
                host: &r.host,
                conditions_key: r.conditions_key.as_deref(),
                tests_passed: r.tests_passed,
                tests_total: r.tests_total,
            })
            .collect();
        super::print(&(serde_json::to_string_pretty(&listed).expect("serializes") + "\n"));
        return Ok(Status::Passed);
    }
    if runs.is_empty() {
        println!("no runs in the history {db}");
        return Ok(Status::Passed);
    }
    println!(
        "{:<22} {:<17} {:<12} {:<14} {:<20} {:>7} {:>9}",
        "run", "started (UTC)", "commit", "host", "outcome", "tests", "took"
    );
    for r in &runs {
        println!("{}", list_line(r));
    }
    Ok(Status::Passed)
}

fn list_line(r: &RunSummary) -> String {
    let commit = r
        .commit
        .as_deref()
        .map_or("-", |c| c.get(..12).unwrap_or(c));
    format!(
        "{:<22} {:<17} {:<12} {:<14} {:<20} {:>7} {:>9}",
        r.run_id.as_str(),
        r.started.format("%Y-%m-%d %H:%M"),
        commit,
        r.host,
        outcome(r.status),
        format!("{}/{}", r.tests_passed, r.tests_total),
        human(r.duration)
    )
}

/// A status in the words of results.json (`passed`, `tests_failed`, ...).
fn outcome(s: Status) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn show(db: &Location, query: &str, json: bool) -> Result<Status, Failure> {
    let h = open(db)?;
    let id = h.resolve(query).map_err(failure)?;
    let r = h.record(&id).map_err(failure)?;
    super::print(&match json {
        true => serde_json::to_string_pretty(&r).expect("serializes") + "\n",
        false => describe(&r),
    });
    Ok(Status::Passed)
}

fn describe(r: &RunRecord) -> String {
    let mut out = format!(
        "run       {}\nstarted   {}\nduration  {}\noutcome   {} (exit {})\nhost      {}\n",
        r.run_id,
        r.started.format("%Y-%m-%d %H:%M:%S UTC"),
        human(r.duration),
        outcome(r.status),
        r.status.code(),
        r.host
    );
    if let Some(b) = &r.box_info {
        out.push_str(&format!(
            "box       {} {} (sha256 {})\n",
            b.name, b.version, b.sha256
        ));
    }
    match &r.conditions {
        Some(c) => out.push_str(&format!(
            "commit    {}\nmachine   {} · {} · {} cores · kernel {}\nvms       {} vCPU · {} MiB · {}\n",
            c.lab_commit.as_deref().unwrap_or("unknown"),
            c.host.hostname,
            c.host.cpu_model,
            c.host.cores,
            c.host.kernel,
            c.vm_cpus,
            c.vm_memory_mib,
            c.accel
        )),
        None => out.push_str("conditions not recorded\n"),
    }
    let failed: Vec<String> = r
        .tests()
        .filter(|t| !matches!(t.outcome, TestOutcome::Passed | TestOutcome::Flaky))
        .map(|t| format!("  {:<9} {}/{}", outcome_word(t.outcome), t.suite, t.name))
        .collect();
    out.push_str(&format!(
        "tests     {} passed, {} flaky, {} not passed\n",
        r.count(TestOutcome::Passed),
        r.count(TestOutcome::Flaky),
        failed.len()
    ));
    for f in failed {
        out.push_str(&f);
        out.push('\n');
    }
    for b in r.benchmarks() {
        for m in &b.metrics {
            let median = crate::stats::quantile(&m.samples, 0.5)
                .map_or("no samples".to_string(), |v| {
                    format!("{} {}", crate::gate::format_value(v), m.spec.unit)
                });
            out.push_str(&format!(
                "bench     {}/{} {}: median {median} (n={})\n",
                b.suite,
                b.name,
                m.spec.name,
                m.samples.len()
            ));
        }
    }
    out
}

fn outcome_word(o: TestOutcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn export(db: &Location, out: Option<&Path>) -> Result<Status, Failure> {
    let rows = open(db)?.samples().map_err(failure)?;
    let written = match out {
        Some(path) => std::fs::File::create(path)
            .and_then(|f| history::write_csv(&rows, &mut std::io::BufWriter::new(f))),
        // A reader that stops early (`| head`) is not an error.
        None => history::write_csv(&rows, &mut std::io::stdout().lock()).or_else(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        }),
    };
    written.map_err(|e| {
        let target = out.map_or("standard output".to_string(), |p| p.display().to_string());
        Failure::new(Status::InfraError, format!("cannot write {target}: {e}"))
    })?;
    if let Some(path) = out {
        eprintln!("exported {} samples to {}", rows.len(), path.display());
    }
    Ok(Status::Passed)
}

fn import(db: &Location, files: &[PathBuf]) -> Result<Status, Failure> {
    let mut h = open(db)?;
    let mut status = Status::Passed;
    for file in files {
        match read_record(file) {
            Ok(record) => {
                h.insert(&record).map_err(failure)?;
                let samples: usize = record
                    .benchmarks()
                    .flat_map(|b| &b.metrics)
                    .map(|m| m.samples.len())
                    .sum();
                println!(
                    "imported {} ({} tests, {samples} samples) from {}",
                    record.run_id,
                    record.tests().count(),
                    file.display()
                );
            }
            Err(message) => {
                eprintln!("metalab: error: {message}");
                status = status.worst(Status::BadInput);
            }
        }
    }
    let _ = std::io::stdout().flush();
    Ok(status)
}

/// A results.json file as a [`RunRecord`], or why not, naming the field at fault: a run id that
/// is not one, or a path that leaves the run's directory, is refused here, before anything
/// builds a path from it.
pub(super) fn read_record(file: &Path) -> Result<RunRecord, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut json = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if field == "." || inner.is_syntax() || inner.is_eof() {
            format!("{}: not a metalab results file: {inner}", file.display())
        } else {
            format!("{}: field `{field}`: {inner}", file.display())
        }
    })
}

/// Copies every run of `from` into `to`, then checks that each is there.
fn copy(from: &Location, to: &Location) -> Result<Status, Failure> {
    if from.to_string() == to.to_string() {
        return Err(Failure::new(
            Status::BadInput,
            format!("--to {to} is the history being copied"),
        ));
    }
    let source = open(from)?;
    let mut target = open(to)?;
    let runs = source.runs(None).map_err(failure)?;
    for r in runs.iter().rev() {
        let record = source.record(&r.run_id).map_err(failure)?;
        target.insert(&record).map_err(failure)?;
    }
    let missing: Vec<&str> = runs
        .iter()
        .filter(|r| target.record(&r.run_id).is_err())
        .map(|r| r.run_id.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Failure::new(
            Status::InfraError,
            format!(
                "{} of {} run(s) are not in {to} after the copy: {}",
                missing.len(),
                runs.len(),
                missing.join(", ")
            ),
        ));
    }
    println!(
        "copied {} run(s) from {from} to {to}, and found each of them there; {from} is left as \
         it was",
        runs.len()
    );
    Ok(Status::Passed)
}
