//! Shards: `metalab run --shard I/N` runs a stable share of the selected suites, so that N CI
//! machines together run every suite exactly once.
//!
//! The split, the same for the same inputs (suite names, durations, N):
//! 1. each suite weighs its median duration (whole milliseconds) over the recent runs of the
//!    durations source; a suite the source does not know weighs the mean of those it knows;
//!    when it knows none, every suite weighs the same;
//! 2. suites are taken by weight, heaviest first, ties by name;
//! 3. each goes to the shard with the least total weight so far, ties to the lowest index.
//!
//! With equal weights step 3 deals the sorted names out round-robin. Each share keeps the
//! selection's order. Every shard must read the same durations, or the shares of two machines
//! can overlap or leave a suite out; each shard records the whole split in its results, so
//! `metalab report merge` notices.
//!
//! Shards that share a history (a PostgreSQL server, or one host's file) agree without a file
//! passed around: the shards of one pipeline name the same plan ([`plan_id`]), the first of them
//! to start stores the durations it read under that name, and the others take those, however
//! many runs end in between.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::history::{History, Location, StoredPlan};
use crate::model::record::{RunRecord, ShardRecord};

/// How many of the newest runs the durations come from.
pub const RECENT_RUNS: usize = 10;

/// Shard `index` of `count`, both 1-based as people count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

impl FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<ShardSpec, String> {
        let usage = "expected I/N with 1 ≤ I ≤ N, e.g. 1/2";
        let (i, n) = s.split_once('/').ok_or_else(|| format!("`{s}`: {usage}"))?;
        let number = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{s}`: `{t}` is not a whole number; {usage}"))
        };
        let (index, count) = (number(i)?, number(n)?);
        if count == 0 {
            return Err(format!("`{s}`: there must be at least 1 shard; {usage}"));
        }
        if index == 0 || index > count {
            return Err(format!(
                "`{s}`: there is no shard {index} of {count}; {usage}"
            ));
        }
        Ok(ShardSpec { index, count })
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The variable that names a pipeline's shard plan, when the CI system's own do not.
pub const PLAN_ENV: &str = "METALAB_SHARD_PLAN";

/// The shard plan of this pipeline: `METALAB_SHARD_PLAN`, else the CI system's id of the
/// pipeline (GitHub Actions' run, without its attempt, so that a re-run job gets the split of
/// the first attempt; Jenkins' build tag; GitLab's pipeline). `None` outside a pipeline.
pub fn plan_id() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(id) = var(PLAN_ENV) {
        return Some(id);
    }
    if let (Some(repo), Some(run)) = (var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID")) {
        return Some(format!("github:{repo}:{run}"));
    }
    if let Some(tag) = var("BUILD_TAG") {
        return Some(format!("jenkins:{tag}"));
    }
    let (project, pipeline) = (var("CI_PROJECT_PATH"), var("CI_PIPELINE_ID"));
    project
        .zip(pipeline)
        .map(|(p, id)| format!("gitlab:{p}:{id}"))
}

/// Each suite's typical duration, as the split weighs it.
#[derive(Debug, Clone, Default)]
pub struct Durations {
    by_suite: BTreeMap<String, Duration>,
    /// Where they came from, for the run's notice and results.
    pub source: String,
}

impl Durations {
    /// No durations: the split is by name.
    pub fn none(why: &str) -> Durations {
        Durations {
            by_suite: BTreeMap::new(),
            source: why.to_string(),
        }
    }

    /// The median duration of each suite over `records`, counting only suites that ran to their
    /// end (no error) and took some time.
    pub fn from_records(records: &[RunRecord], source: &str) -> Durations {
        let mut seen: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for s in records.iter().flat_map(|r| &r.suites) {
            if s.error.is_none() && !s.duration.is_zero() {
                let list = seen.entry(s.name.clone()).or_default();
                list.push(s.duration.as_secs_f64());
            }
        }
        let by_suite = seen
            .into_iter()
            .filter_map(|(name, secs)| {
                let median = crate::stats::quantile(&secs, 0.5).ok()?;
                Some((name, Duration::try_from_secs_f64(median).ok()?))
            })
            .collect();
        Durations {
            by_suite,
            source: source.to_string(),
        }
    }

    /// The durations over the newest [`RECENT_RUNS`] runs of a history. A run this metalab
    /// cannot read (stored by a newer one) is left out rather than losing them all.
    pub fn from_history(history: &History, source: &str) -> anyhow::Result<Durations> {
        let records: Vec<RunRecord> = history
            .runs(Some(RECENT_RUNS))?
            .iter()
            .filter_map(|r| history.record(&r.run_id).ok())
            .collect();
        Ok(Durations::from_records(&records, source))
    }

    /// The durations in the history at `db`; none when it is a file that does not exist yet.
    pub fn from_history_at(db: &Location) -> anyhow::Result<Durations> {
        if db.file().is_some_and(|f| !f.is_file()) {
            return Ok(Durations::none(&format!("no history at {db}")));
        }
        Durations::from_history(&History::open(db)?, &db.to_string())
    }

    /// The durations every shard of plan `plan_id` agrees on: those the first of them to ask
    /// found in the history, which the history keeps for the others (see
    /// [`History::shard_plan`]), however many runs end in between.
    pub fn agreed(db: &Location, plan_id: &str) -> anyhow::Result<Durations> {
        let history = History::open(db)?;
        let mine = Durations::from_history(&history, &db.to_string())?;
        let proposed = StoredPlan {
            source: mine.source.clone(),
            durations: serde_json::to_string(&mine.millis_by_suite())?,
        };
        let agreed = history.shard_plan(plan_id, &proposed)?;
        let millis: BTreeMap<String, u64> = serde_json::from_str(&agreed.durations)
            .map_err(|e| anyhow::anyhow!("shard plan {plan_id} in {db} is unreadable: {e}"))?;
        Ok(Durations {
            by_suite: millis
                .into_iter()
                .map(|(k, v)| (k, Duration::from_millis(v)))
                .collect(),
            source: format!("{} (shard plan {plan_id})", agreed.source),
        })
    }

    /// Each suite's duration in whole milliseconds, as a plan stores them.
    fn millis_by_suite(&self) -> BTreeMap<String, u64> {
        (self.by_suite.iter())
            .map(|(k, v)| (k.clone(), millis(*v)))
            .collect()
    }

    /// The durations in `path`: a results.json (say, the last merged run's) or a history file.
    pub fn read(path: &Path) -> anyhow::Result<Durations> {
        let source = path.display().to_string();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {source}: {e}"))?;
            let record: RunRecord = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{source}: not a metalab results file: {e}"))?;
            return Ok(Durations::from_records(&[record], &source));
        }
        if !path.is_file() {
            anyhow::bail!("{source}: no such file");
        }
        Durations::from_history_at(&Location::File(path.to_path_buf()))
    }

    pub fn get(&self, suite: &str) -> Option<Duration> {
        self.by_suite.get(suite).copied()
    }

    pub fn insert(&mut self, suite: &str, d: Duration) {
        self.by_suite.insert(suite.to_string(), d);
    }

    /// What a split of `names` by these durations is balanced by, in words.
    pub fn basis(&self, names: &[String]) -> String {
        let known = names.iter().filter(|n| self.get(n).is_some()).count();
        if known == 0 {
            format!("suite names ({})", self.source)
        } else {
            format!(
                "the durations of {known} of {} suite(s) from {}",
                names.len(),
                self.source
            )
        }
    }
}

/// Splits `names` into `count` shares (see the module's doc); share `i` is for shard `i + 1`.
pub fn split(names: &[String], durations: &Durations, count: u32) -> Vec<Vec<String>> {
    let weights = weights(names, durations);
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| weights[b].cmp(&weights[a]).then(names[a].cmp(&names[b])));
    let mut load = vec![0u64; count as usize];
    let mut owner = vec![0usize; names.len()];
    for i in order {
        let lightest = (0..load.len()).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        load[lightest] += weights[i];
        owner[i] = lightest;
    }
    (0..count as usize)
        .map(|s| {
            names
                .iter()
                .zip(&owner)
                .filter(|(_, o)| **o == s)
                .map(|(n, _)| n.clone())
                .collect()
        })
        .collect()
}

/// Milliseconds each suite weighs: its duration, else the mean of the known ones (at least 1).
fn weights(names: &[String], durations: &Durations) -> Vec<u64> {
    let known: Vec<u64> = names
        .iter()
        .filter_map(|n| durations.get(n))
        .map(millis)
        .collect();
    let fallback = match known.len() as u64 {
        0 => 1,
        n => (known.iter().sum::<u64>() / n).max(1),
    };
    names
        .iter()
        .map(|n| durations.get(n).map_or(fallback, millis))
        .collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The split of `names` for shard `spec`, as its results record it.
pub fn assign(spec: ShardSpec, names: &[String], durations: &Durations) -> ShardRecord {
    let shares = split(names, durations, spec.count);
    ShardRecord {
        index: spec.index,
        count: spec.count,
        suites: shares
            .get(spec.index as usize - 1)
            .cloned()
            .unwrap_or_default(),
        selected: names.to_vec(),
        balanced_by: durations.basis(names),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shard_specs_parse_and_refuse_what_is_out_of_range() {
        assert_eq!(
            "2/3".parse::<ShardSpec>(),
            Ok(ShardSpec { index: 2, count: 3 })
        );
        for bad in ["0/2", "3/2", "1/0", "1", "a/2", "1/2/3", "-1/2", ""] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn without_durations_the_sorted_names_are_dealt_round_robin() {
        let shares = split(&names(&["d", "b", "a", "c", "e"]), &Durations::none("-"), 2);
        // a, c, e and b, d; each share in the order the suites were given.
        assert_eq!(shares, vec![names(&["a", "c", "e"]), names(&["d", "b"])]);
    }

    #[test]
    fn unknown_suites_weigh_the_mean_of_the_known_ones() {
        let mut d = Durations::none("-");
        d.insert("a", Duration::from_secs(100));
        d.insert("b", Duration::from_secs(20));
        // c and d weigh 60 s each. Heaviest first: a (100) to shard 1, c (60) and d (120) to
        // shard 2, then b to shard 1, the lighter: 120 s each.
        let shares = split(&names(&["a", "b", "c", "d"]), &d, 2);
        assert_eq!(shares, vec![names(&["a", "b"]), names(&["c", "d"])]);
    }

    #[test]
    fn more_shards_than_suites_leaves_the_last_shards_empty() {
        let shares = split(&names(&["a"]), &Durations::none("-"), 3);
        assert_eq!(shares, vec![names(&["a"]), vec![], vec![]]);
    }
}
