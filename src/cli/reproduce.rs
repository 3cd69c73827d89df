//! `metalab reproduce`: a CI failure, run again here. From a run's results (its `results.json`,
//! its artifacts directory, or its report, as a path or a URL) it checks that this tree is at the
//! run's lab commit (and says what differs when not), says whether the box recipe is the run's,
//! and runs the suites whose tests failed (or those named) with the `LAB_*` variables the run
//! had, keeping the VMs when they fail again, with the lines to get into them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser};

use super::Failure;
use super::history::read_record;
use super::run::RunArgs;
use crate::boxes::Recipe;
use crate::config::Config;
use crate::exit::Status;
use crate::model::record::{RunRecord, TestOutcome};

#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// The run to reproduce: its results.json, its artifacts directory, or its report
    /// (artifacts/<run-id>/report/index.html), as a path, a file:// URL or an http(s) URL.
    #[arg(value_name = "RESULTS|DIR|REPORT")]
    source: String,
    /// Run these suites instead of those with a failed test.
    #[arg(long = "suite", value_name = "SUITE")]
    suites: Vec<String>,
    /// Go on when this tree is not at the run's lab commit (the result may differ).
    #[arg(long)]
    go_on: bool,
    /// How long the VMs stay when the reproduction fails, for `metalab exec` and `login`.
    #[arg(long, value_name = "DURATION", default_value = "8h", value_parser = humantime::parse_duration)]
    keep: Duration,
    /// Print what would run (suites, LAB_* variables, VMs) and start nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: print the plan as JSON.
    #[arg(long, requires = "dry_run")]
    json: bool,
}

/// `metalab run`'s arguments, parsed as the command line would give them.
#[derive(Parser)]
struct AsRun {
    #[command(flatten)]
    args: RunArgs,
}

pub async fn reproduce(
    config: Option<&Path>,
    args: ReproduceArgs,
    quiet: bool,
) -> Result<Status, Failure> {
    let bad = |m: String| Failure::new(Status::BadInput, m);
    let record = fetch(&args.source).await.map_err(bad)?;
    let lab = Config::find(config).map_err(|e| bad(e.to_string()))?;
    let suites = if args.suites.is_empty() {
        failed_suites(&record)
    } else {
        args.suites.clone()
    };
    if suites.is_empty() {
        return Err(bad(format!(
            "run {} has no failed test to reproduce: name suites with --suite",
            record.run_id
        )));
    }
    say(&format!(
        "reproducing run {} ({}): {}",
        record.run_id,
        record.status.word(),
        suites.join(", ")
    ));
    check_commit(&record, &lab.root, args.go_on).map_err(bad)?;
    say(&box_note(&record, lab.box_recipe.as_deref()));
    for note in image_notes(&record, &lab.images_dir) {
        say(&note);
    }
    let lab_env: Vec<(String, String)> = record.lab_env.clone().into_iter().collect();
    if !lab_env.is_empty() {
        let vars: Vec<String> = lab_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        say(&format!("LAB_* as the run had them: {}", vars.join(" ")));
    }
    let mut argv = vec![
        "run".to_string(),
        format!(
            "--keep-on-failure={}",
            humantime::format_duration(args.keep)
        ),
    ];
    if args.dry_run {
        argv.push("--dry-run".into());
    }
    if args.json {
        argv.push("--json".into());
    }
    argv.push("--".into());
    argv.extend(suites);
    let mut run = AsRun::try_parse_from(&argv)
        .map_err(|e| bad(format!("cannot plan the run: {e}")))?
        .args;
    run.lab_env = Some(lab_env);
    super::run::run(config, run, quiet).await
}

/// What reproduce finds out, on stderr: stdout is the run's (or the plan's JSON).
fn say(line: &str) {
    eprintln!("reproduce: {line}");
}

/// The run's record, from a results file, a run directory, or a report (path or URL).
async fn fetch(source: &str) -> Result<RunRecord, String> {
    let source = source.split('#').next().unwrap_or(source);
    if source.starts_with("http://") || source.starts_with("https://") {
        return fetch_url(&results_beside(source)).await;
    }
    let path = PathBuf::from(source.strip_prefix("file://").unwrap_or(source));
    let results = if path.is_dir() {
        path.join("results.json")
    } else if path.extension().is_some_and(|e| e == "json") {
        path
    } else {
        PathBuf::from(results_beside(&path.display().to_string()))
    };
    read_record(&results)
}

/// The results file of the run whose report (or any file in the run's directory) is `page`:
/// `<run>/report/index.html` → `<run>/results.json`.
fn results_beside(page: &str) -> String {
    let dir = page.rsplit_once('/').map_or("", |(d, _)| d);
    let run = dir.strip_suffix("/report").unwrap_or(dir);
    format!("{run}/results.json")
}

async fn fetch_url(url: &str) -> Result<RunRecord, String> {
    const MAX: usize = 64 << 20;
    let answer = reqwest::get(url)
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    let body = answer
        .bytes()
        .await
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    if body.len() > MAX {
        return Err(format!("{url} is over 64 MiB: not a results file"));
    }
    let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(file.path(), &body).map_err(|e| e.to_string())?;
    read_record(file.path()).map_err(|e| e.replace(&file.path().display().to_string(), url))
}

/// The suites with a test that failed (not one that was skipped), or whose setup failed.
fn failed_suites(record: &RunRecord) -> Vec<String> {
    record
        .suites
        .iter()
        .filter(|s| {
            s.error.is_some()
                || s.tests.iter().any(|t| {
                    matches!(
                        t.outcome,
                        TestOutcome::Failed | TestOutcome::TimedOut | TestOutcome::Error
                    )
                })
                || s.benchmarks.iter().any(|b| b.error.is_some())
        })
        .map(|s| s.name.clone())
        .collect()
}

/// Refuses a tree at another commit than the run's (unless `go_on`), saying what differs.
fn check_commit(record: &RunRecord, root: &Path, go_on: bool) -> Result<(), String> {
    let Some(theirs) = record
        .conditions
        .as_ref()
        .and_then(|c| c.lab_commit.clone())
    else {
        say("the run recorded no lab commit: this tree is taken as it is");
        return Ok(());
    };
    let ours = crate::run::lab_commit(root).unwrap_or_else(|| "not a git tree".into());
    if ours == theirs {
        say(&format!("this tree is at the run's lab commit {theirs}"));
        return Ok(());
    }
    let base = theirs.trim_end_matches("-dirty");
    let differs = crate::run::git_in(root, &["diff", "--stat", base, "--", "."])
        .map(|stat| shortened(&stat, 15))
        .unwrap_or_else(|| format!("(commit {base} is not in this repository: git fetch it)"));
    let what = format!(
        "the run was at lab commit {theirs}; this tree is at {ours}. What differs:\n{}",
        differs.trim_end()
    );
    if go_on {
        say(&format!(
            "{what}\ngoing on (--go-on): the result may differ"
        ));
        Ok(())
    } else {
        Err(format!(
            "{what}\n`git checkout {base}` to reproduce at the run's commit, or --go-on to run here anyway"
        ))
    }
}

/// A `git diff --stat` of at most `keep` files, and its summary line.
fn shortened(stat: &str, keep: usize) -> String {
    let lines: Vec<&str> = stat.lines().collect();
    let Some((summary, files)) = lines.split_last() else {
        return String::new();
    };
    if files.len() <= keep {
        return stat.to_string();
    }
    format!(
        "{}\n ... and {} more\n{summary}",
        files[..keep].join("\n"),
        files.len() - keep
    )
}

/// Whether the box will be the run's: the same recipe builds the same box (it is cached by the
/// recipe's hash); another is built from this tree's recipe.
fn box_note(record: &RunRecord, recipe: Option<&Path>) -> String {
    let ours = recipe.map(|r| Recipe::new(r).hash());
    match (&record.box_info, ours) {
        (Some(theirs), Some(Ok(ours))) if theirs.recipe_hash == ours => format!(
            "the box recipe is the run's ({}): its box {} {}",
            short(&ours),
            theirs.name,
            theirs.version
        ),
        (Some(theirs), Some(Ok(ours))) => format!(
            "the box recipe differs from the run's (recipe {} here, {} in the run): the box is \
             built from this tree's recipe",
            short(&ours),
            short(&theirs.recipe_hash)
        ),
        (_, Some(Err(e))) => format!("the box recipe cannot be read: {e:#}"),
        (None, _) => "the run recorded no box".into(),
        (Some(theirs), None) => format!(
            "this lab builds no box; the run used {} {}",
            theirs.name, theirs.version
        ),
    }
}

/// Whether each container image the run loaded will be the run's: built from the same recipe
/// (cached by its hash), or from this tree's other one.
fn image_notes(record: &RunRecord, images_dir: &Path) -> Vec<String> {
    record
        .images
        .iter()
        .map(|theirs| {
            let dir = images_dir.join(&theirs.name);
            if !dir.join("build.sh").is_file() {
                return format!(
                    "image {}: this lab has no recipe for it ({} has no build.sh)",
                    theirs.name,
                    dir.display()
                );
            }
            match crate::boxes::recipe_hash(&dir) {
                Ok(ours) if ours == theirs.recipe_hash => format!(
                    "image {}: the recipe is the run's ({})",
                    theirs.name,
                    short(&ours)
                ),
                Ok(ours) => format!(
                    "image {}: the recipe differs from the run's (recipe {} here, {} in the run): \
                     the image is built from this tree's recipe",
                    theirs.name,
                    short(&ours),
                    short(&theirs.recipe_hash)
                ),
                Err(e) => format!("image {}: the recipe cannot be read: {e:#}", theirs.name),
            }
        })
        .collect()
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_or_a_run_directory_leads_to_its_results() {
        assert_eq!(
            results_beside("artifacts/20261126-0600-ab12/report/index.html"),
            "artifacts/20261126-0600-ab12/results.json"
        );
        assert_eq!(
            results_beside("https://ci.example/job/7/artifact/artifacts/r1/report/index.html"),
            "https://ci.example/job/7/artifact/artifacts/r1/results.json"
        );
    }
}
