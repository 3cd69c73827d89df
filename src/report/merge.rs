//! Merging the results of several runs, normally the shards of one CI pipeline
//! (`metalab run --shard I/N` on N machines), into one [`RunRecord`] that the JUnit, HTML and
//! summary renderers take as they take a single run.
//!
//! The merged record keeps every suite, test and benchmark; phases and VMs are scoped by the
//! shard they belong to (`up[shard 1/2]`). What makes the merge incomplete or ambiguous (a
//! missing shard, a shard given twice, a suite run by two shards or by none) is a [`Problem`]
//! with the exit status it warrants, and a notice in the merged record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::exit::Status;
use crate::ids::RunId;
use crate::model::record::RunRecord;

/// Where the files of each merged run go, beside the merged results: everything but its
/// suites' directories, which go to the top so the merged record's logs keep their paths.
pub const SHARDS_DIR: &str = "shards";

/// Something that makes the merged result incomplete or ambiguous.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: Status,
    pub message: String,
}

/// The merged record, whose status is the worst of the runs' and the problems', and what is
/// wrong with the inputs.
#[derive(Debug)]
pub struct Merged {
    pub record: RunRecord,
    pub problems: Vec<Problem>,
    /// For each input (in the order given), the suites whose directories go to the top of the
    /// merged directory; the other suites' logs are under [`shard_dir`].
    pub owned: Vec<Vec<String>>,
}

/// Where the files of `r` go inside the merged directory.
pub fn shard_dir(r: &RunRecord) -> PathBuf {
    Path::new(SHARDS_DIR).join(r.run_id.as_str())
}

/// A run as the merge names it: `shard 1/2 (run <id>)` or `run <id>`.
pub fn describe(r: &RunRecord) -> String {
    match &r.shard {
        Some(s) => format!("shard {} (run {})", s.label(), r.run_id),
        None => format!("run {}", r.run_id),
    }
}

/// Merges `runs`, which must not be empty. Identical copies of a run (the same run id and
/// shard, e.g. through an `artifacts/latest` link) count once; the caller drops them first.
pub fn merge(runs: &[RunRecord]) -> Merged {
    let mut problems = completeness(runs);
    let owned = owners(runs, &mut problems);
    let mut record = combine(runs, &owned, &problems);
    record.status = runs
        .iter()
        .map(|r| r.status)
        .chain(problems.iter().map(|p| p.status))
        .fold(Status::Passed, Status::worst);
    Merged {
        record,
        problems,
        owned,
    }
}

/// Checks that the shards among `runs` form one whole split: one count, every index once,
/// the same selection, and every selected suite in exactly one share.
fn completeness(runs: &[RunRecord]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let shards: Vec<&RunRecord> = runs.iter().filter(|r| r.shard.is_some()).collect();
    if shards.is_empty() {
        return problems;
    }
    let plain: Vec<String> = runs
        .iter()
        .filter(|r| r.shard.is_none())
        .map(describe)
        .collect();
    if !plain.is_empty() {
        problems.push(Problem {
            status: Status::Passed,
            message: format!(
                "merged with the shards, though not a shard: {}",
                plain.join(", ")
            ),
        });
    }
    let counts: BTreeSet<u32> = shards
        .iter()
        .filter_map(|r| r.shard.as_ref().map(|s| s.count))
        .collect();
    if counts.len() > 1 {
        problems.push(bad_input(format!(
            "the shards come from different splits (of {}): merge the shards of one pipeline run",
            join(counts.iter())
        )));
        return problems;
    }
    let count = counts.first().copied().unwrap_or(0);
    let mut by_index: BTreeMap<u32, Vec<&RunRecord>> = BTreeMap::new();
    for r in &shards {
        if let Some(s) = &r.shard {
            by_index.entry(s.index).or_default().push(r);
        }
    }
    for (index, list) in by_index.iter().filter(|(_, l)| l.len() > 1) {
        let ids: Vec<&str> = list.iter().map(|r| r.run_id.as_str()).collect();
        problems.push(bad_input(format!(
            "shard {index}/{count} is there {} times (runs {}): give each shard's results once",
            list.len(),
            ids.join(", ")
        )));
    }
    let selections: BTreeSet<&Vec<String>> = shards
        .iter()
        .filter_map(|r| r.shard.as_ref().map(|s| &s.selected))
        .collect();
    if selections.len() > 1 {
        problems.push(bad_input(
            "the shards split different selections of suites: every shard must be given the same suites"
                .to_string(),
        ));
    }
    let missing: Vec<u32> = (1..=count).filter(|i| !by_index.contains_key(i)).collect();
    let mut shared: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in &shards {
        if let Some(s) = &r.shard {
            for suite in &s.suites {
                shared.entry(suite).or_default().push(s.label());
            }
        }
    }
    if !missing.is_empty() {
        let orphans: Vec<&str> = selections
            .iter()
            .flat_map(|sel| sel.iter())
            .map(String::as_str)
            .filter(|s| !shared.contains_key(s))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        problems.push(Problem {
            status: Status::InfraError,
            message: format!(
                "shard(s) {} of {count} missing: no results for them, so suites {} did not run \
                 or were not collected",
                join(missing.iter()),
                if orphans.is_empty() {
                    "(unknown)".to_string()
                } else {
                    orphans.join(", ")
                }
            ),
        });
    } else {
        problems.extend(split_disagreements(&selections, &shared));
    }
    problems.extend(unfinished_suites(&shards));
    problems
}

/// With every shard there: suites that no shard or two shards were given, which happens when
/// the shards balanced by different durations.
fn split_disagreements(
    selections: &BTreeSet<&Vec<String>>,
    shared: &BTreeMap<&str, Vec<String>>,
) -> Vec<Problem> {
    let advice = "every shard must balance by the same durations (--shard-durations)";
    let mut problems = Vec::new();
    let selected: BTreeSet<&str> = selections
        .iter()
        .flat_map(|s| s.iter())
        .map(String::as_str)
        .collect();
    let unrun: Vec<&str> = selected
        .iter()
        .copied()
        .filter(|s| !shared.contains_key(s))
        .collect();
    if !unrun.is_empty() {
        problems.push(bad_input(format!(
            "suite(s) {} were given to no shard: the shards split differently; {advice}",
            unrun.join(", ")
        )));
    }
    for (suite, labels) in shared.iter().filter(|(_, l)| l.len() > 1) {
        problems.push(bad_input(format!(
            "suite {suite} was given to shards {}: the shards split differently; {advice}",
            labels.join(" and ")
        )));
    }
    problems
}

/// Suites a shard was given but has no results for (it stopped early).
fn unfinished_suites(shards: &[&RunRecord]) -> Vec<Problem> {
    shards
        .iter()
        .filter_map(|r| {
            let s = r.shard.as_ref()?;
            let absent: Vec<&str> = s
                .suites
                .iter()
                .filter(|name| !r.suites.iter().any(|x| &x.name == *name))
                .map(String::as_str)
                .collect();
            (!absent.is_empty()).then(|| Problem {
                status: Status::InfraError,
                message: format!(
                    "{} has no results for its suite(s) {}",
                    describe(r),
                    absent.join(", ")
                ),
            })
        })
        .collect()
}

/// For each run, the suites it is the first to have; a suite found in two runs is a problem.
fn owners(runs: &[RunRecord], problems: &mut Vec<Problem>) -> Vec<Vec<String>> {
    let mut first: BTreeMap<&str, &RunRecord> = BTreeMap::new();
    let mut owned = vec![Vec::new(); runs.len()];
    for (i, r) in runs.iter().enumerate() {
        for s in &r.suites {
            match first.get(s.name.as_str()) {
                None => {
                    first.insert(&s.name, r);
                    owned[i].push(s.name.clone());
                }
                Some(earlier) => {
                    let shards_said_so = r.shard.is_some() && earlier.shard.is_some();
                    if !shards_said_so {
                        problems.push(bad_input(format!(
                            "suite {} has results in {} and in {}: both are kept",
                            s.name,
                            describe(earlier),
                            describe(r)
                        )));
                    }
                }
            }
        }
    }
    owned
}

fn combine(runs: &[RunRecord], owned: &[Vec<String>], problems: &[Problem]) -> RunRecord {
    let started = runs.iter().map(|r| r.started).min().unwrap_or_default();
    let mut merged = RunRecord::new(merged_id(runs), hosts(runs), started);
    merged.finished = runs.iter().filter_map(|r| r.finished).max();
    merged.duration = merged
        .finished
        .and_then(|f| (f - started).to_std().ok())
        .unwrap_or_else(|| runs.iter().map(|r| r.duration).max().unwrap_or_default());
    merged.box_info = same(runs.iter().map(|r| r.box_info.clone()));
    merged.conditions = same(runs.iter().map(|r| r.conditions.clone()));
    merged.notices.push(format!(
        "merged from {}",
        runs.iter().map(describe).collect::<Vec<_>>().join(", ")
    ));
    if runs.iter().any(|r| r.conditions.is_some()) && merged.conditions.is_none() {
        merged.notices.push(
            "the runs were measured under different conditions: the merged run's benchmarks are \
             not compared with the history"
                .to_string(),
        );
    }
    merged
        .notices
        .extend(problems.iter().map(|p| p.message.clone()));
    for (r, owned) in runs.iter().zip(owned) {
        add_run(&mut merged, r, owned);
    }
    merged
}

/// Adds one run's VMs, phases, suites and notices, scoped by the run and with log paths
/// relative to the merged directory.
fn add_run(merged: &mut RunRecord, r: &RunRecord, owned: &[String]) {
    let label = scope_label(r);
    let dir = shard_dir(r);
    let scope = |s: &str| {
        if s.is_empty() {
            label.clone()
        } else {
            format!("{label}, {s}")
        }
    };
    merged.vms.extend(r.vms.iter().cloned().map(|mut v| {
        v.scope = scope(&v.scope);
        v
    }));
    merged.phases.extend(r.phases.iter().cloned().map(|mut p| {
        p.scope = scope(&p.scope);
        p.log = p.log.map(|l| dir.join(l));
        p
    }));
    for s in &r.suites {
        let mut s = s.clone();
        if !owned.contains(&s.name) {
            for t in &mut s.tests {
                t.log = dir.join(&t.log);
            }
            for b in &mut s.benchmarks {
                b.log = dir.join(&b.log);
            }
        }
        merged.suites.push(s);
    }
    merged
        .notices
        .extend(r.notices.iter().map(|n| format!("[{label}] {n}")));
}

/// How a run's phases and VMs are scoped: `shard 1/2`, or its run id.
fn scope_label(r: &RunRecord) -> String {
    match &r.shard {
        Some(s) => format!("shard {}", s.label()),
        None => r.run_id.to_string(),
    }
}

/// The merged run's id: the earliest run's start time and a suffix from every run id, so the
/// same runs always merge into the same id (importing the merge twice replaces it).
fn merged_id(runs: &[RunRecord]) -> RunId {
    let mut ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    ids.sort_unstable();
    let first = ids.first().copied().unwrap_or_default();
    let digest = Sha256::digest(ids.join(",").as_bytes());
    let mut suffix = u16::from_be_bytes([digest[0], digest[1]]);
    if first.ends_with(&format!("{suffix:04x}")) {
        suffix ^= 1;
    }
    let stamp = first.get(..15).unwrap_or_default();
    RunId::parse(&format!("{stamp}-{suffix:04x}")).unwrap_or_else(RunId::generate)
}

fn hosts(runs: &[RunRecord]) -> String {
    let set: BTreeSet<&str> = runs.iter().map(|r| r.host.as_str()).collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

/// The value when every run has the same one.
fn same<T: PartialEq>(mut values: impl Iterator<Item = Option<T>>) -> Option<T> {
    let first = values.next()??;
    values.all(|v| v.as_ref() == Some(&first)).then_some(first)
}

fn bad_input(message: String) -> Problem {
    Problem {
        status: Status::BadInput,
        message,
    }
}

fn join<'a>(items: impl Iterator<Item = &'a u32>) -> String {
    items.map(u32::to_string).collect::<Vec<_>>().join(", ")
}
