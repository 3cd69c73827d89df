//! `metalab report merge`: one result from the shards of a pipeline run. Reads each shard's
//! results.json, merges them (see [`crate::report::merge`]), and writes one results.json, one
//! junit.xml and one HTML report, with every shard's logs beside them. Exits with the worst of
//! the shards' statuses, or worse when a shard is missing or the shards overlap.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;

use super::Failure;
use super::history::{DbArg, read_record, settings};
use crate::exit::Status;
use crate::files::write_atomic;
use crate::gate::{self, GateReport, Options};
use crate::history::{History, Location};
use crate::model::record::RunRecord;
use crate::report::files::{JUNIT_XML, LATEST_LINK, RESULTS_JSON};
use crate::report::html::{self, REPORT_DIR};
use crate::report::merge::{self, Merged};
use crate::report::{github, junit, summary, terminal};

/// How deep below each DIR results are looked for: artifacts dirs inside downloaded CI
/// artifacts inside a download directory.
const SEARCH_DEPTH: usize = 3;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shards' results: artifacts directories, run directories or results.json files (a
    /// directory is searched for run directories, a few levels deep; `latest` links are skipped).
    #[arg(required = true, value_name = "DIR")]
    inputs: Vec<PathBuf>,
    /// Where to write the merged results.json, junit.xml and report/ (must be new or empty).
    #[arg(long, value_name = "DIR", default_value = "merged")]
    out: PathBuf,
}

/// A run found among the inputs: its directory and its record.
struct Found {
    dir: PathBuf,
    record: RunRecord,
}

pub fn merge(config: Option<&Path>, args: MergeArgs, db: &DbArg) -> Result<Status, Failure> {
    let settings = settings(config, db)?;
    check_out(&args.out)?;
    let found = find_all(&args.inputs)?;
    let records: Vec<RunRecord> = found.iter().map(|f| f.record.clone()).collect();
    let merged = merge::merge(&records);
    for f in &found {
        println!(
            "merging  {} from {}",
            merge::describe(&f.record),
            f.dir.display()
        );
    }
    for p in &merged.problems {
        eprintln!("metalab: merge: {}", p.message);
    }
    copy_logs(&found, &merged, &args.out).map_err(infra)?;
    let options = Options {
        min_effect: settings.min_effect,
        ..Options::default()
    };
    let (gate, note) = judge(&merged.record, &settings.db, &options);
    let written =
        write_results(&merged.record, &args.out, &gate, note.as_deref()).map_err(infra)?;
    if github::active()
        && let Some(path) = github::summary_path()
    {
        github::append_summary(&path, &merged.record).map_err(|e| {
            Failure::new(
                Status::InfraError,
                format!("cannot write the step summary {}: {e}", path.display()),
            )
        })?;
    }
    print!(
        "\n{}",
        summary::render(&merged.record, &args.out, !terminal::plain_output())
    );
    for path in written {
        println!("wrote    {}", path.display());
    }
    Ok(merged.record.status)
}

fn infra(e: anyhow::Error) -> Failure {
    Failure::new(Status::InfraError, format!("{e:#}"))
}

/// The output directory must not hold anything yet: a merge never mixes with older files.
fn check_out(out: &Path) -> Result<(), Failure> {
    let busy = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if busy {
        return Err(Failure::new(
            Status::BadInput,
            format!(
                "{} is not empty: remove it or choose another --out",
                out.display()
            ),
        ));
    }
    Ok(())
}

/// Every run among the inputs, each once, shards in order.
fn find_all(inputs: &[PathBuf]) -> Result<Vec<Found>, Failure> {
    let mut found = Vec::new();
    for input in inputs {
        let before = found.len();
        find(input, SEARCH_DEPTH, &mut found)?;
        if found.len() == before {
            return Err(Failure::new(
                Status::BadInput,
                format!("no {RESULTS_JSON} in {}", input.display()),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    found.retain(|f| {
        seen.insert((
            f.record.run_id.clone(),
            f.record.shard.clone().map(|s| s.label()),
        ))
    });
    found.sort_by_key(|f| {
        let shard = f.record.shard.as_ref().map_or(u32::MAX, |s| s.index);
        (shard, f.record.run_id.clone())
    });
    Ok(found)
}

fn find(path: &Path, depth: usize, found: &mut Vec<Found>) -> Result<(), Failure> {
    if path.is_file() {
        let record = read_record(path).map_err(|m| Failure::new(Status::BadInput, m))?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        found.push(Found { dir, record });
        return Ok(());
    }
    let results = path.join(RESULTS_JSON);
    if results.is_file() {
        return find(&results, 0, found);
    }
    if depth == 0 {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Err(Failure::new(
            Status::BadInput,
            format!("cannot read {}", path.display()),
        ));
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != LATEST_LINK)
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        find(&dir, depth - 1, found)?;
    }
    Ok(())
}

/// Copies each run's files into `out`: the suites it owns to the top (their logs keep their
/// paths), the rest under `shards/<run-id>/`. Its own report is left out.
fn copy_logs(found: &[Found], merged: &Merged, out: &Path) -> anyhow::Result<()> {
    for (f, owned) in found.iter().zip(&merged.owned) {
        let shard_dir = out.join(merge::shard_dir(&f.record));
        for entry in std::fs::read_dir(&f.dir)?.flatten() {
            let name = entry.file_name();
            if name == REPORT_DIR || !entry.file_type().is_ok_and(|t| t.is_dir() || t.is_file()) {
                continue;
            }
            let to = if owned.iter().any(|s| *s == *name.to_string_lossy()) {
                out.join(&name)
            } else {
                shard_dir.join(&name)
            };
            copy_tree(&entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Copies a file or a directory; symbolic links are left out.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let kind = std::fs::symlink_metadata(from)?.file_type();
    if kind.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)?.flatten() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if kind.is_file() {
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(from, to)
            .map_err(|e| anyhow::anyhow!("cannot copy {}: {e}", from.display()))?;
    }
    Ok(())
}

/// The benchmarks against the history at `db` when there is one; otherwise unjudged, saying why.
fn judge(record: &RunRecord, db: &Location, options: &Options) -> (GateReport, Option<String>) {
    if db.file().is_some_and(|f| !f.is_file()) {
        let note = format!("The benchmarks are not judged: no history at {db}");
        return (gate::unjudged(record, options), Some(note));
    }
    match History::open(db).and_then(|h| gate::evaluate(&h, record, options)) {
        Ok(report) => (report, None),
        Err(e) => (
            gate::unjudged(record, options),
            Some(format!("The benchmarks are not judged: {e}")),
        ),
    }
}

/// Writes results.json, junit.xml and the HTML report; returns their paths.
fn write_results(
    record: &RunRecord,
    out: &Path,
    gate: &GateReport,
    note: Option<&str>,
) -> anyhow::Result<Vec<PathBuf>> {
    let json = out.join(RESULTS_JSON);
    write_atomic(&json, serde_json::to_string_pretty(record)?.as_bytes())?;
    let xml = out.join(JUNIT_XML);
    write_atomic(&xml, junit::render(record, out)?.as_bytes())?;
    let report = html::write_run(record, out, gate, note)?;
    Ok(vec![json, xml, report])
}
